//! Push: one worker per gateway delivers the newest compiled table, retrying with exponential
//! backoff until the gateway has it, and re-checking idle gateways now and then. One worker
//! per gateway serialises its pushes, and a worker only ever sends the newest table, so a
//! gateway never sees versions go backwards.
//!
//! A gateway that reports a version at or above the one offered (a 409 on push, or a probe)
//! serves a table this realmctl did not publish — a registry restored from a backup, or a
//! second realmctl. That is never success: the version is reported on [`Pusher::ahead`],
//! and the publisher moves the registry's counter past it and publishes again.

mod delta;
pub mod publish;
mod worker;

use crate::compile::Compiled;
use crate::metrics::Metrics;
use crate::time::{now_ms, rfc3339};
use crate::tls::GatewayTrust;
use crate::views::{DiscoveryView, GatewayView};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Why the pushers could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushStartError {
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("gateway TLS: {0}")]
    Tls(String),
}

/// How pushes are paced.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Longest wait for a gateway to answer one push (it validates and persists the table).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often an in-sync gateway is asked which version it serves, so one that lost its
    /// state (or was replaced) is caught up without waiting for the next change.
    pub resync_interval: Duration,
    /// The least time between two compiles: a change after a quiet spell is compiled at
    /// once, and the changes of a burst (a script minting keys, say) that follow within this
    /// time become one table version and one push per gateway.
    pub debounce: Duration,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            resync_interval: Duration::from_secs(30),
            debounce: Duration::from_millis(100),
        }
    }
}

/// How the last attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The gateway applied our table.
    Applied,
    /// A probe found the gateway serving exactly the table we pushed.
    AlreadyCurrent,
    /// The gateway serves a version at or above ours that we did not publish (409
    /// `version_not_newer`, or a probe): realmctl moves past it and pushes again.
    VersionNotNewer,
    /// The gateway found the table invalid (422): a bug or a version skew; see the log.
    Rejected,
    /// The gateway refused our token (401).
    Unauthorized,
    /// Any other answer.
    Error,
    /// No answer: connection refused, reset or timed out.
    Unreachable,
    /// Not sent: the table carries secrets and the gateway's URL is plain http to a
    /// non-loopback host.
    RefusedInsecure,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Applied,
        Outcome::AlreadyCurrent,
        Outcome::VersionNotNewer,
        Outcome::Rejected,
        Outcome::Unauthorized,
        Outcome::Error,
        Outcome::Unreachable,
        Outcome::RefusedInsecure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AlreadyCurrent => "already_current",
            Outcome::VersionNotNewer => "version_not_newer",
            Outcome::Rejected => "rejected",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Error => "error",
            Outcome::Unreachable => "unreachable",
            Outcome::RefusedInsecure => "refused_insecure",
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Applied | Outcome::AlreadyCurrent)
    }
}

#[derive(Debug, Default)]
struct Status {
    applied: Option<u64>,
    last_result: Option<Outcome>,
    last_error: Option<String>,
    last_attempt_ms: Option<u64>,
    last_success_ms: Option<u64>,
    consecutive_failures: u32,
    /// `applied` is a version this realmctl did not publish: not in sync, whatever it is.
    ahead: bool,
}

/// One gateway and what realmctl knows about it.
pub struct Gateway {
    /// Admin base URL, without a trailing `/`.
    pub url: String,
    status: Mutex<Status>,
}

impl Gateway {
    fn new(url: &str) -> Gateway {
        Gateway {
            url: url.trim_end_matches('/').to_owned(),
            status: Mutex::new(Status::default()),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn applied(&self) -> Option<u64> {
        self.status().applied
    }

    fn record(&self, outcome: Outcome, applied: Option<u64>, error: Option<String>) {
        let now = now_ms();
        let mut s = self.status();
        s.last_result = Some(outcome);
        s.last_attempt_ms = Some(now);
        s.last_error = error;
        if let Some(v) = applied {
            s.applied = Some(v);
        }
        match outcome {
            Outcome::VersionNotNewer => s.ahead = true,
            Outcome::Applied | Outcome::AlreadyCurrent => s.ahead = false,
            _ => {}
        }
        if outcome.is_success() {
            s.last_success_ms = Some(now);
            s.consecutive_failures = 0;
        } else {
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        }
    }

    /// The gateway serves `version` (learnt from a probe): push again if it is behind.
    fn observed(&self, version: Option<u64>) {
        let mut s = self.status();
        s.applied = version;
        s.ahead = false;
    }

    fn view(&self, target: Option<u64>, source: Source) -> GatewayView {
        let s = self.status();
        GatewayView {
            url: self.url.clone(),
            source: source.as_str().to_owned(),
            applied_version: s.applied,
            target_version: target,
            in_sync: !s.ahead && matches!((s.applied, target), (Some(a), Some(t)) if a >= t),
            last_result: s.last_result.map(|o| o.as_str().to_owned()),
            last_error: s.last_error.clone(),
            last_attempt_at: s.last_attempt_ms.map(rfc3339),
            last_success_at: s.last_success_ms.map(rfc3339),
            consecutive_failures: s.consecutive_failures,
        }
    }
}

/// Where realmctl learnt of a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `gateways.urls` / `--gateway`: pushed to until realmctl stops.
    Static,
    /// An EndpointSlice of the gateways' Service: pushed to while it is listed and ready.
    Kubernetes,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Kubernetes => "kubernetes",
        }
    }
}

/// A gateway and the task pushing to it.
struct Entry {
    gateway: Arc<Gateway>,
    source: Source,
    task: tokio::task::AbortHandle,
}

/// What a new worker is given.
struct Spawner {
    client: reqwest::Client,
    token: Option<Arc<str>>,
    settings: PushSettings,
    metrics: Arc<Metrics>,
    ahead: Arc<watch::Sender<u64>>,
    published: watch::Receiver<Option<Arc<Compiled>>>,
}

impl Spawner {
    fn spawn(&self, url: &str, source: Source) -> Entry {
        let gateway = Arc::new(Gateway::new(url));
        let w = worker::Worker {
            gateway: Arc::clone(&gateway),
            full_only_until: Mutex::new(None),
            binary: worker::BinaryPush::default(),
            ahead: Arc::clone(&self.ahead),
            client: self.client.clone(),
            token: self.token.clone(),
            settings: self.settings.clone(),
            metrics: Arc::clone(&self.metrics),
        };
        // Counted until the task ends or is aborted (the guard drops with the future), so the
        // gauge shows workers that really run, not the ones we meant to stop.
        let live = LiveWorker::new(&self.metrics);
        let tables = self.published.clone();
        let task = tokio::spawn(async move {
            let _live = live;
            w.run(tables).await;
        });
        Entry {
            gateway,
            source,
            task: task.abort_handle(),
        }
    }
}

struct LiveWorker(Arc<Metrics>);

impl LiveWorker {
    fn new(metrics: &Arc<Metrics>) -> LiveWorker {
        metrics.push_workers.inc();
        LiveWorker(Arc::clone(metrics))
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        self.0.push_workers.dec();
    }
}

/// The set of gateways and their workers: the static ones from the start, discovered ones
/// added and removed as discovery reports them. One lock guards the set, so one URL never
/// has two workers, whatever order changes arrive in.
pub struct Pusher {
    entries: Mutex<Vec<Entry>>,
    spawner: Spawner,
    published: watch::Receiver<Option<Arc<Compiled>>>,
    ahead: watch::Receiver<u64>,
    discovery: Mutex<Option<watch::Receiver<DiscoveryView>>>,
}

impl Pusher {
    /// Start one worker per gateway. `token` is presented to every gateway as a bearer token.
    /// `trust` verifies `https://` gateways.
    pub fn start(
        urls: &[String],
        trust: &GatewayTrust,
        token: Option<Arc<str>>,
        settings: PushSettings,
        published: watch::Receiver<Option<Arc<Compiled>>>,
        metrics: Arc<Metrics>,
    ) -> Result<Pusher, PushStartError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(tls) = trust.client_config().map_err(PushStartError::Tls)? {
            builder = builder.use_preconfigured_tls(tls);
        }
        let client = builder.build()?;
        let (ahead_tx, ahead) = watch::channel(0);
        let spawner = Spawner {
            client,
            token,
            settings,
            metrics,
            ahead: Arc::new(ahead_tx),
            published: published.clone(),
        };
        let entries = urls
            .iter()
            .map(|u| spawner.spawn(u, Source::Static))
            .collect();
        Ok(Pusher {
            entries: Mutex::new(entries),
            spawner,
            published,
            ahead,
            discovery: Mutex::new(None),
        })
    }

    /// Follow a discovery: every set it reports replaces the discovered gateways (static
    /// ones stay), and its state is shown with the gateways.
    pub fn follow(
        self: &Arc<Self>,
        mut targets: watch::Receiver<BTreeSet<String>>,
        status: watch::Receiver<DiscoveryView>,
    ) {
        *self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(status);
        let pusher = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let set = targets.borrow_and_update().clone();
                match pusher.upgrade() {
                    Some(p) => p.set_discovered(&set),
                    None => return,
                }
                if targets.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Make the discovered gateways exactly `urls`: a worker starts at once for a new one
    /// (it probes, then pushes the newest table); one no longer listed is stopped and
    /// forgotten. A URL that is also static keeps its one (static) worker.
    pub fn set_discovered(&self, urls: &BTreeSet<String>) {
        let metrics = &self.spawner.metrics;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| {
            let keep = e.source == Source::Static || urls.contains(&e.gateway.url);
            if !keep {
                e.task.abort();
                metrics.forget_gateway(&e.gateway.url, Outcome::ALL.map(Outcome::as_str));
                log::info!(
                    "gateway {} is no longer a ready endpoint: stopped pushing to it",
                    e.gateway.url
                );
            }
            keep
        });
        let known: BTreeSet<String> = entries.iter().map(|e| e.gateway.url.clone()).collect();
        for url in urls
            .iter()
            .filter(|u| !known.contains(u.trim_end_matches('/')))
        {
            log::info!("discovered gateway {url}: pushing the current table to it");
            entries.push(self.spawner.spawn(url, Source::Kubernetes));
        }
        let discovered = entries
            .iter()
            .filter(|e| e.source == Source::Kubernetes)
            .count();
        metrics
            .discovered_gateways
            .set(i64::try_from(discovered).unwrap_or(i64::MAX));
    }

    /// The highest version any gateway reported that is at or above what it was offered
    /// (0: none yet). The publisher moves the registry's version past it.
    pub fn ahead(&self) -> watch::Receiver<u64> {
        self.ahead.clone()
    }

    pub fn views(&self) -> Vec<GatewayView> {
        let target = self.published.borrow().as_ref().map(|c| c.version);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .map(|e| e.gateway.view(target, e.source))
            .collect()
    }

    /// The client that reaches the gateways' admin listeners (their TLS trusted as for pushes):
    /// for reads of their own state, e.g. `/metrics`.
    pub fn client(&self) -> &reqwest::Client {
        &self.spawner.client
    }

    /// The discovery's state, when gateways are discovered.
    pub fn discovery(&self) -> Option<DiscoveryView> {
        let d = self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        d.as_ref().map(|rx| rx.borrow().clone())
    }

    pub fn gateways(&self) -> Vec<Arc<Gateway>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().map(|e| Arc::clone(&e.gateway)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tracks_results_and_sync() {
        let g = Gateway::new("http://127.0.0.1:9080/");
        assert_eq!(g.url, "http://127.0.0.1:9080");
        let v = g.view(Some(3), Source::Static);
        assert_eq!(
            (v.applied_version, v.in_sync, v.last_result),
            (None, false, None)
        );

        g.record(Outcome::Unreachable, None, Some("cannot connect".into()));
        g.record(Outcome::Unreachable, None, Some("cannot connect".into()));
        let v = g.view(Some(3), Source::Static);
        assert_eq!(v.consecutive_failures, 2);
        assert_eq!(v.last_result.as_deref(), Some("unreachable"));
        assert_eq!(v.last_error.as_deref(), Some("cannot connect"));
        assert!(v.last_success_at.is_none() && v.last_attempt_at.is_some());

        g.record(Outcome::Applied, Some(3), None);
        let v = g.view(Some(3), Source::Static);
        assert_eq!(
            (v.applied_version, v.in_sync, v.consecutive_failures),
            (Some(3), true, 0)
        );
        assert!(v.last_error.is_none() && v.last_success_at.is_some());
        assert!(
            !g.view(Some(4), Source::Static).in_sync,
            "a newer target puts it behind"
        );

        // A failure does not forget what the gateway serves.
        g.record(Outcome::Rejected, None, Some("1 problem(s)".into()));
        assert_eq!(g.applied(), Some(3));
        g.observed(None);
        assert_eq!(
            g.applied(),
            None,
            "a gateway that lost its table gets pushed again"
        );
    }

    #[test]
    fn a_gateway_ahead_of_realmctl_is_never_in_sync() {
        let g = Gateway::new("http://127.0.0.1:9080");
        g.record(Outcome::Applied, Some(27), None);
        assert!(g.view(Some(27), Source::Static).in_sync);
        // Restored realmctl offers 28; the gateway has 29 (409).
        g.record(Outcome::VersionNotNewer, Some(29), Some("409".into()));
        let v = g.view(Some(28), Source::Static);
        assert_eq!(v.applied_version, Some(29));
        assert!(!v.in_sync, "a 409 is not in sync");
        assert_eq!(v.consecutive_failures, 1, "a 409 is not success");
        assert!(!Outcome::VersionNotNewer.is_success());
        // Other failures do not make it look in sync either.
        g.record(Outcome::Unreachable, None, Some("down".into()));
        assert!(!g.view(Some(28), Source::Static).in_sync);
        // realmctl moved past it: 30 applied.
        g.record(Outcome::Applied, Some(30), None);
        assert!(g.view(Some(30), Source::Static).in_sync);
    }
}

#[cfg(test)]
mod dynamic_tests {
    use super::*;

    fn live(m: &Metrics) -> i64 {
        m.push_workers.get()
    }

    /// Discovered sets replace each other: one worker per URL however often a URL comes and
    /// goes, static gateways untouched, stopped workers really gone.
    #[tokio::test]
    async fn discovered_gateways_come_and_go_with_one_worker_each() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (_tx, tables) = watch::channel(None);
        let statics = ["http://127.0.0.1:1".to_owned()];
        let pusher = Pusher::start(
            &statics,
            &GatewayTrust::default(),
            None,
            PushSettings::default(),
            tables,
            Arc::clone(&metrics),
        )
        .expect("pusher");
        let set = |urls: &[&str]| {
            urls.iter()
                .map(|u| (*u).to_owned())
                .collect::<BTreeSet<_>>()
        };
        let a = "http://10.0.0.1:9080";
        let b = "http://10.0.0.2:9080";
        for round in [
            set(&[a, b]),
            set(&[a]),
            set(&[a, b]),
            set(&[b, a]),
            set(&[b]),
        ] {
            pusher.set_discovered(&round);
        }
        pusher.set_discovered(&set(&[a, b, "http://127.0.0.1:1"]));
        let views = pusher.views();
        let shown: Vec<(&str, &str)> = views
            .iter()
            .map(|v| (v.url.as_str(), v.source.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("http://127.0.0.1:1", "static"),
                (b, "kubernetes"),
                (a, "kubernetes")
            ]
        );
        assert_eq!(metrics.discovered_gateways.get(), 2);
        // Aborted tasks drop their guard when the runtime next polls them.
        for _ in 0..100 {
            if live(&metrics) == 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(live(&metrics), 3);
        pusher.set_discovered(&BTreeSet::new());
        for _ in 0..100 {
            if live(&metrics) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(live(&metrics), 1, "the static worker stays");
        assert_eq!(pusher.views().len(), 1);
    }
}

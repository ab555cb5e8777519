//! One writer across machines: realmctl holds a `coordination.k8s.io/v1` Lease before it
//! writes (the registry, the provisioning journal, hence provisioning and certificates), and
//! opens or closes the [`Fence`](crate::leadership::Fence) every write checks.
//!
//! The protocol is client-go's leader election: read the Lease; create it if absent; renew
//! it while we hold it; take it over only when it is free (no holder) or expired by *local*
//! observation (unchanged for `leaseDurationSeconds` since this process last saw it change),
//! with `replace` at the resourceVersion read, so that of two contenders one gets 409.
//!
//! Losing it: when no renewal succeeded for `renew_deadline` (shorter than the Lease's
//! duration, so before anyone else may take it over), or a renewal finds another holder,
//! the fence closes at once; reads go on. The elector keeps trying. If the Lease comes back
//! to us and nobody else held it meanwhile (still our holderIdentity, the same
//! leaseTransitions), writes resume: nothing was written by anyone else. If somebody else
//! held it, another process may have written the registry and this one's in-memory model
//! (tenants, journal, table version) may be stale; writing from it could undo the other's
//! work. So, at the moment it could take the Lease back (the other holder stopped renewing
//! it, or released it), the process ends non-zero instead ([`Outcome::Lost`]), and its
//! supervisor starts it again as a fresh standby that loads the registry anew. Until then it
//! serves reads, fenced, and `/readyz` names the other holder.
//!
//! At shutdown the fence closes, the write in progress finishes, and the Lease is released
//! (no holder), so a standby takes it over at once instead of waiting for it to expire.

pub mod config;
pub mod observe;

use crate::kube_access::{describe, Call};
use crate::leadership::{FenceControl, Leadership};
use crate::metrics::Metrics;
use config::LeaseConfig;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use observe::{decide, may_resume, Decision, Observer, Seen};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const RESOURCE: &str = "leases.coordination.k8s.io";

/// How the elector ended.
#[derive(Debug)]
pub enum Outcome {
    /// Asked to stop (shutdown).
    Stopped,
    /// Another process held the Lease since this one last did: exit and start afresh.
    Lost(String),
}

/// The running elector.
pub struct LeaseTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<(Elector, Outcome)>>,
}

impl LeaseTask {
    /// Start electing. The fence stays closed until the Lease is ours.
    pub fn spawn(
        cfg: LeaseConfig,
        client: kube::Client,
        fence: FenceControl,
        metrics: Arc<Metrics>,
    ) -> LeaseTask {
        log::info!(
            "lease: holding coordination.k8s.io Lease {} as {:?} before writing (duration {:?}, renew deadline {:?}, retry every {:?})",
            cfg.describe(),
            cfg.identity,
            cfg.duration,
            cfg.renew_deadline,
            cfg.retry
        );
        let elector = Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            fence,
            metrics,
            observer: Observer::default(),
            term: None,
            renewed_at: None,
            told: None,
            last_error: None,
        };
        let (stop, stopped) = oneshot::channel();
        LeaseTask {
            stop: Some(stop),
            task: Some(tokio::spawn(elector.run(stopped))),
        }
    }

    /// Resolves (with the reason) if the Lease is lost to another holder; pending otherwise.
    pub async fn lost(&mut self) -> String {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok((elector, Outcome::Lost(reason))) => {
                elector.fence.set(Leadership::not_leading(reason.clone()));
                reason
            }
            Ok((_, Outcome::Stopped)) => std::future::pending().await,
            Err(e) => format!("the Lease elector failed: {e}"),
        }
    }

    /// Stop electing, close the fence, let `quiesce` finish the write in progress, then
    /// release the Lease if we hold it.
    pub async fn shutdown(mut self, quiesce: impl std::future::Future<Output = ()>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else { return };
        let Ok((mut elector, _)) = task.await else {
            return;
        };
        let held = elector.fence.is_leading();
        elector
            .fence
            .set(Leadership::not_leading("realmctl is shutting down"));
        quiesce.await;
        if held {
            elector.release().await;
        }
    }
}

struct Elector {
    cfg: LeaseConfig,
    api: Api<Lease>,
    fence: FenceControl,
    metrics: Arc<Metrics>,
    observer: Observer,
    /// `leaseTransitions` of the term we hold or last held.
    term: Option<i32>,
    /// When the last successful write of ours was sent (while leading).
    renewed_at: Option<Instant>,
    /// The last state logged, so that a repeated failure is logged once.
    told: Option<String>,
    /// Why the last renewal failed (while leading), for the deadline's message.
    last_error: Option<String>,
}

enum Next {
    Tried(Result<Option<String>, String>),
    TimedOut(Duration),
    Stop,
}

impl Elector {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> (Elector, Outcome) {
        loop {
            let budget = self.budget();
            let next = tokio::select! {
                _ = &mut stop => Next::Stop,
                r = tokio::time::timeout(budget, self.try_once()) => match r {
                    Ok(r) => Next::Tried(r),
                    Err(_) => Next::TimedOut(budget),
                },
            };
            match next {
                Next::Stop => return (self, Outcome::Stopped),
                Next::Tried(Ok(None)) => {}
                Next::Tried(Ok(Some(lost))) => {
                    log::error!("lease: {lost}; exiting so that a fresh start reloads the registry");
                    return (self, Outcome::Lost(lost));
                }
                Next::Tried(Err(e)) => self.failed(e),
                Next::TimedOut(after) => self.failed(format!(
                    "Kubernetes {RESOURCE} in namespace {}: API server unreachable or failing: no answer within {after:?}",
                    self.cfg.namespace
                )),
            }
            self.check_deadline();
            // Leading, never past the renew deadline: the fence closes on time.
            let pause = self.cfg.retry.min(self.budget());
            tokio::select! {
                _ = &mut stop => return (self, Outcome::Stopped),
                () = tokio::time::sleep(pause) => {}
            }
            self.check_deadline();
        }
    }

    /// How long one attempt may take: while leading, until the renew deadline.
    fn budget(&self) -> Duration {
        match self.renewed_at {
            Some(at) if self.fence.is_leading() => (at + self.cfg.renew_deadline)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
            _ => self.cfg.renew_deadline,
        }
    }

    fn call(&self, verb: &'static str) -> Call<'_> {
        Call {
            verb,
            resource: RESOURCE,
            namespace: &self.cfg.namespace,
        }
    }

    /// One read and, when due, one write. `Ok(Some(reason))`: lost to another holder.
    async fn try_once(&mut self) -> Result<Option<String>, String> {
        let name = self.cfg.name.clone();
        let now = Instant::now();
        let lease = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| describe(self.call("get"), &e))?;
        let seen = lease.as_ref().map(|l| self.seen(l));
        let since = seen.as_ref().map_or(now, |s| self.observer.observe(s, now));
        if let Some(s) = &seen {
            self.metrics.lease_transitions.set(i64::from(s.transitions));
        }
        let decision = decide(&self.cfg.identity, seen.as_ref(), since, now);
        if let Some(term) = self.term {
            match &decision {
                Decision::HeldBy(holder) => {
                    self.not_leading(format!(
                        "the Lease {} is held by {holder}",
                        self.cfg.describe()
                    ));
                    return Ok(None);
                }
                _ if may_resume(&self.cfg.identity, term, seen.as_ref()) => {}
                _ => {
                    return Ok(Some(format!(
                        "the Lease {} was held by another process since this one last renewed it (now: {}); this process's view of the registry may be stale",
                        self.cfg.describe(),
                        seen.as_ref().map_or_else(
                            || "deleted".to_owned(),
                            |s| format!(
                                "holder {:?}, leaseTransitions {} (ours was {term})",
                                s.holder, s.transitions
                            )
                        )
                    )))
                }
            }
        }
        let written = match (decision, lease) {
            (Decision::HeldBy(holder), _) => {
                self.not_leading(format!(
                    "the Lease {} is held by {holder}",
                    self.cfg.describe()
                ));
                return Ok(None);
            }
            (Decision::Create, _) => {
                let lease = self.ours(Lease::default(), 0, true);
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(l) => l,
                    Err(e) if is_conflict(&e) => return Ok(None),
                    Err(e) => return Err(describe(self.call("create"), &e)),
                }
            }
            (d, Some(current)) => {
                let transitions = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0);
                let takeover = d == Decision::TakeOver;
                let next = transitions + i32::from(takeover);
                let lease = self.ours(current, next, takeover);
                match self
                    .api
                    .replace(&name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(l) => l,
                    // Someone wrote it since our read: read it again next time.
                    Err(e) if is_conflict(&e) => return Ok(None),
                    Err(e) => return Err(describe(self.call("update"), &e)),
                }
            }
            (_, None) => return Ok(None),
        };
        let seen = self.seen(&written);
        self.observer
            .record(seen.resource_version.clone(), Instant::now());
        self.metrics
            .lease_transitions
            .set(i64::from(seen.transitions));
        let first = self.term.is_none();
        self.term = Some(seen.transitions);
        self.renewed_at = Some(now);
        self.last_error = None;
        if self.fence.set(Leadership::Leading) {
            self.tell(if first {
                format!(
                    "lease: acquired the Lease {} as {} (leaseTransitions {}): writing",
                    self.cfg.describe(),
                    self.cfg.identity,
                    seen.transitions
                )
            } else {
                format!(
                    "lease: renewed the Lease {} again and nobody else held it meanwhile: writing again",
                    self.cfg.describe()
                )
            });
        }
        Ok(None)
    }

    /// `current` made ours: holder, renewTime now, our duration; `takeover`: a new term.
    fn ours(&self, mut current: Lease, transitions: i32, takeover: bool) -> Lease {
        let now = MicroTime(Timestamp::now());
        current.metadata = ObjectMeta {
            name: Some(self.cfg.name.clone()),
            namespace: Some(self.cfg.namespace.clone()),
            ..current.metadata
        };
        let spec = current.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.cfg.identity.clone());
        spec.lease_duration_seconds = Some(self.cfg.duration_seconds());
        spec.lease_transitions = Some(transitions);
        spec.renew_time = Some(now.clone());
        if takeover || spec.acquire_time.is_none() {
            spec.acquire_time = Some(now);
        }
        current
    }

    fn seen(&self, l: &Lease) -> Seen {
        let spec = l.spec.clone().unwrap_or_default();
        Seen {
            holder: spec.holder_identity.unwrap_or_default(),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.cfg.duration, Duration::from_secs),
            resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
        }
    }

    /// A read or write failed: counted; not leading, it is the reason; leading, the renew
    /// deadline decides.
    fn failed(&mut self, error: String) {
        self.metrics.lease_failures.inc();
        if self.fence.is_leading() {
            self.tell(format!(
                "lease: renewal failed (still leading until the renew deadline): {error}"
            ));
            self.last_error = Some(error);
        } else {
            self.not_leading(error);
        }
    }

    fn check_deadline(&mut self) {
        let Some(at) = self.renewed_at else { return };
        if self.fence.is_leading() && at.elapsed() >= self.cfg.renew_deadline {
            let why = self.last_error.take().unwrap_or_else(|| "no answer".into());
            self.not_leading(format!(
                "no renewal of the Lease {} succeeded for {} ms ({why}); writes stop before anyone else may take it over",
                self.cfg.describe(),
                self.cfg.renew_deadline.as_millis()
            ));
        }
    }

    fn not_leading(&mut self, reason: String) {
        let was = self.fence.is_leading();
        self.fence.set(Leadership::not_leading(reason.clone()));
        if was {
            log::error!("lease: stopped writing: {reason}");
            self.told = Some(reason);
        } else {
            self.tell(format!("lease: not leading: {reason}"));
        }
    }

    /// Log `message` unless it was the last one logged.
    fn tell(&mut self, message: String) {
        if self.told.as_deref() != Some(message.as_str()) {
            log::warn!("{message}");
            self.told = Some(message);
        }
    }

    /// Hand the Lease back (no holder) so that a standby takes it at once.
    async fn release(&mut self) {
        let name = self.cfg.name.clone();
        let current = match self.api.get_opt(&name).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                log::warn!("lease: not released: {}", describe(self.call("get"), &e));
                return;
            }
        };
        let seen = self.seen(&current);
        if !may_resume(&self.cfg.identity, self.term.unwrap_or(-1), Some(&seen)) {
            return;
        }
        let mut lease = current;
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => log::info!("lease: released the Lease {}", self.cfg.describe()),
            Err(e) => log::warn!("lease: not released: {}", describe(self.call("update"), &e)),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

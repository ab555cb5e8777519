//! One gateway's push loop: send the newest table, back off on failure, probe when idle.

use super::{Gateway, Outcome, PushSettings};
use crate::compile::Compiled;
use crate::metrics::Metrics;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Longest gateway answer kept for the status and the log.
const MAX_ERROR_TEXT: usize = 512;

pub(super) struct Worker {
    pub gateway: Arc<Gateway>,
    /// Until when this gateway is sent full tables only: it answered a delta as an older
    /// gateway does (404, 405, 415), so it is asked again later, not on every change.
    pub full_only_until: std::sync::Mutex<Option<Instant>>,
    /// Where a version at or above ours, seen at this gateway, is reported.
    pub ahead: Arc<watch::Sender<u64>>,
    pub client: reqwest::Client,
    pub token: Option<Arc<str>>,
    pub settings: PushSettings,
    pub metrics: Arc<Metrics>,
    /// Full tables in the binary encoding, when the gateway offers it.
    pub binary: BinaryPush,
}

/// Whether a gateway takes full tables in the binary encoding (`table_encodings` in its
/// answer to `GET /v1/table` lists it), and the last table encoded for it. JSON otherwise:
/// an older gateway lists nothing and gets what it always got.
#[derive(Default)]
pub(super) struct BinaryPush {
    offered: std::sync::atomic::AtomicBool,
    encoded: tokio::sync::Mutex<Option<(u64, bytes::Bytes)>>,
}

impl BinaryPush {
    fn offered(&self) -> bool {
        self.offered.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_offered(&self, encodings: &[String]) {
        let offered = encodings
            .iter()
            .any(|e| realmgate_table::binary::is_media_type(e));
        self.offered
            .store(offered, std::sync::atomic::Ordering::Relaxed);
    }

    /// Version `version`'s table (`json`) in the binary encoding, encoded once per version;
    /// `None` if the gateway does not offer it or the document does not decode.
    async fn body(&self, version: u64, json: &bytes::Bytes) -> Option<bytes::Bytes> {
        if !self.offered() {
            return None;
        }
        let mut encoded = self.encoded.lock().await;
        if let Some((v, body)) = encoded.as_ref() {
            if *v == version {
                return Some(body.clone());
            }
        }
        let json = json.clone();
        let made = tokio::task::spawn_blocking(move || realmgate_table::binary::from_json(&json))
            .await
            .ok()?;
        match made {
            Ok(body) => {
                let body = bytes::Bytes::from(body);
                *encoded = Some((version, body.clone()));
                Some(body)
            }
            Err(e) => {
                log::error!("table version {version} does not decode for the binary encoding: {e}; sending JSON");
                None
            }
        }
    }
}

/// What a gateway's admin API answers on `PUT`/`GET /v1/table`.
#[derive(Deserialize)]
struct VersionAnswer {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    current: Option<u64>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    state_digest: Option<String>,
    #[serde(default)]
    problems: Vec<String>,
    /// The `Content-Type`s the gateway takes full tables in (absent: JSON only).
    #[serde(default)]
    table_encodings: Vec<String>,
}

impl Worker {
    pub async fn run(self, mut tables: watch::Receiver<Option<Arc<Compiled>>>) {
        let mut backoff = self.settings.initial_backoff;
        let mut probed = false;
        loop {
            let target = tables.borrow_and_update().clone();
            if let (Some(table), false) = (&target, probed) {
                // Ask first what the gateway serves: the same table (a plain restart) needs no
                // push, and a newer version (a restored registry) must be moved past.
                probed = true;
                self.probe(table).await;
            }
            if let Some(table) =
                target.filter(|t| self.gateway.applied().is_none_or(|a| a < t.version))
            {
                if self.push(&table).await.is_success() {
                    backoff = self.settings.initial_backoff;
                    continue;
                }
                // Wait out the backoff even if a newer table arrives: a down gateway is not
                // hammered by a burst of changes, and the next attempt sends the newest.
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(self.settings.max_backoff);
                continue;
            }
            tokio::select! {
                changed = tables.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(self.settings.resync_interval) => {
                    let target = tables.borrow().clone();
                    if let Some(table) = target {
                        self.probe(&table).await;
                    }
                }
            }
        }
    }

    /// Send the newest table: as a delta when the gateway serves a version it was compiled
    /// against, else (or when the gateway does not apply it) in full.
    pub(super) async fn push(&self, table: &Arc<Compiled>) -> Outcome {
        let started = Instant::now();
        if let Some(outcome) = self.refuse_insecure(table, started) {
            return outcome;
        }
        let delta = match self.gateway.applied() {
            Some(a) if self.deltas_allowed() => table.delta_from_async(a).await,
            _ => None,
        };
        if let Some(delta) = delta {
            match self.push_delta(table, &delta).await {
                Ok(outcome) => return outcome,
                Err(fallback) => {
                    log::info!(
                        "gateway {} did not apply the delta {} → {} ({}): sending the full table",
                        self.gateway.url,
                        delta.base,
                        table.version,
                        fallback.detail
                    );
                    self.metrics.delta_fallback(fallback.reason);
                }
            }
        }
        self.push_full(table).await
    }

    /// The table carries secrets and the gateway's URL is plain http to a non-loopback host:
    /// not sent, in full or as a delta.
    fn refuse_insecure(&self, table: &Compiled, started: Instant) -> Option<Outcome> {
        if table.has_secrets && !crate::tls::may_carry_secrets(&self.gateway.url) {
            let error = format!(
                "not sent: table version {} carries secrets (login client secrets or certificate keys) and {} is plain http to a non-loopback host; serve the gateway's admin API over TLS (gateway.admin_tls) and give realmctl its https:// URL (with gateways.ca_file or gateways.cert_sha256)",
                table.version, self.gateway.url
            );
            log::error!("gateway {}: {error}", self.gateway.url);
            self.metrics.observe_push(
                &self.gateway.url,
                Outcome::RefusedInsecure.as_str(),
                started.elapsed(),
            );
            self.gateway
                .record(Outcome::RefusedInsecure, None, Some(error));
            return Some(Outcome::RefusedInsecure);
        }
        None
    }

    async fn push_full(&self, table: &Arc<Compiled>) -> Outcome {
        let url = format!("{}/v1/table", self.gateway.url);
        let started = Instant::now();
        // Written out now if no gateway needed it before (once per version).
        let full = match table.full_table_async().await {
            Ok(f) => f,
            Err(e) => {
                log::error!("{e}");
                let ended = (Outcome::Error, None, Some(e.to_string()));
                return self.finish(table.version, "", started, ended);
            }
        };
        self.metrics.table_pushed(false);
        // The same table in the binary encoding where the gateway offers it: it decodes it
        // several times faster than the JSON (which stays the contract).
        let (body, content_type) = match self.binary.body(table.version, &full.body).await {
            Some(body) => (body, realmgate_table::binary::MEDIA_TYPE),
            None => (full.body, "application/json"),
        };
        let mut req = self
            .client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let (outcome, applied, error) = match req.send().await {
            Err(e) => (Outcome::Unreachable, None, Some(transport_error(&e))),
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let answer: Option<VersionAnswer> = serde_json::from_str(&text).ok();
                match status.as_u16() {
                    200 => {
                        let v = answer.and_then(|a| a.version).unwrap_or(table.version);
                        (Outcome::Applied, Some(v), None)
                    }
                    // Never success: the gateway keeps a table we did not make.
                    409 => match answer.and_then(|a| a.current) {
                        Some(current) => {
                            self.report_ahead(current, table.version);
                            (
                                Outcome::VersionNotNewer,
                                Some(current),
                                Some(format!(
                                    "409: the gateway serves version {current}, not older than the offered {}; realmctl moves past it and publishes again",
                                    table.version
                                )),
                            )
                        }
                        None => (
                            Outcome::Error,
                            None,
                            Some(format!("409: {}", excerpt(&text))),
                        ),
                    },
                    422 => {
                        let problems = answer.map(|a| a.problems).unwrap_or_default();
                        log::error!(
                            "gateway {} rejected table version {}: {}",
                            self.gateway.url,
                            table.version,
                            problems.join("; ")
                        );
                        let first = problems
                            .first()
                            .map_or_else(|| excerpt(&text), |p| excerpt(p));
                        (
                            Outcome::Rejected,
                            None,
                            Some(format!("{} problem(s), first: {first}", problems.len())),
                        )
                    }
                    401 | 403 => (
                        Outcome::Unauthorized,
                        None,
                        Some("the gateway refused realmctl's gateway token".into()),
                    ),
                    415 if content_type != "application/json" => {
                        // It no longer takes the binary encoding: JSON from now on.
                        self.binary.set_offered(&[]);
                        (
                            Outcome::Error,
                            None,
                            Some(format!("415 for {content_type}: sending JSON next")),
                        )
                    }
                    _ => (
                        Outcome::Error,
                        None,
                        Some(format!("{status}: {}", excerpt(&text))),
                    ),
                }
            }
        };
        self.finish(table.version, "", started, (outcome, applied, error))
    }

    /// Count, log and record how a push of `version` ended (`what`: `""` for the full
    /// table, ` (delta from N)` for a delta).
    pub(super) fn finish(
        &self,
        version: u64,
        what: &str,
        started: Instant,
        (outcome, applied, error): (Outcome, Option<u64>, Option<String>),
    ) -> Outcome {
        let took = started.elapsed();
        self.metrics
            .observe_push(&self.gateway.url, outcome.as_str(), took);
        if let Some(v) = applied {
            self.metrics.set_applied(&self.gateway.url, v);
        }
        match (&error, outcome) {
            (None, Outcome::Applied) => log::info!(
                "gateway {} applied table version {version}{what} in {took:?}",
                self.gateway.url,
            ),
            (Some(e), _) => log::warn!(
                "push of table version {version}{what} to gateway {}: {}: {e}",
                self.gateway.url,
                outcome.as_str()
            ),
            _ => {}
        }
        self.gateway.record(outcome, applied, error);
        outcome
    }

    /// A version at or above what this realmctl publishes, which it did not publish.
    pub(super) fn report_ahead(&self, version: u64, ours: u64) {
        log::warn!(
            "gateway {} serves table version {version}, not older than realmctl's {ours}: was the registry restored from a backup? Moving past it",
            self.gateway.url
        );
        self.ahead.send_if_modified(|v| {
            let higher = version > *v;
            if higher {
                *v = version;
            }
            higher
        });
    }

    /// Ask a gateway which table it serves, compared with `ours` (the newest published): an
    /// older one (or none) is pushed again; ours exactly is in sync; any other at or above
    /// our version is a table we did not publish, which we move past.
    async fn probe(&self, ours: &Arc<Compiled>) {
        let mut req = self.client.get(format!("{}/v1/table", self.gateway.url));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let Ok(VersionAnswer {
                    version: Some(v),
                    digest,
                    state_digest,
                    table_encodings,
                    ..
                }) = resp.json().await
                else {
                    return;
                };
                self.binary.set_offered(&table_encodings);
                if v < ours.version {
                    if self.gateway.applied().is_some_and(|a| a > v) {
                        log::info!(
                            "gateway {} serves version {v}, older than pushed: pushing again",
                            self.gateway.url
                        );
                    }
                    self.gateway.observed(Some(v));
                } else if v == ours.version && self.holds(ours, digest, state_digest).await {
                    // Exactly our table: a healthy check, shown as such.
                    self.gateway.record(Outcome::AlreadyCurrent, Some(v), None);
                } else {
                    self.report_ahead(v, ours.version);
                    self.gateway.record(
                        Outcome::VersionNotNewer,
                        Some(v),
                        Some(format!(
                            "the gateway serves version {v}, which this realmctl did not publish; moving past it"
                        )),
                    );
                }
            }
            // No table at all: it lost its state.
            Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                if let Ok(answer) = resp.json::<VersionAnswer>().await {
                    self.binary.set_offered(&answer.table_encodings);
                }
                self.gateway.observed(None)
            }
            Ok(resp) => log::warn!("probe of gateway {}: {}", self.gateway.url, resp.status()),
            Err(e) => {
                log::warn!(
                    "probe of gateway {}: {}",
                    self.gateway.url,
                    transport_error(&e)
                );
                self.gateway
                    .record(Outcome::Unreachable, None, Some(transport_error(&e)));
            }
        }
    }
}

impl Worker {
    /// Whether a gateway at our version holds exactly our table. By the state digest, which
    /// every gateway with deltas reports and which needs no full document; a gateway without
    /// one (older) is compared by the document's digest, written out for it if need be.
    async fn holds(
        &self,
        ours: &Arc<Compiled>,
        digest: Option<String>,
        state_digest: Option<String>,
    ) -> bool {
        if let (Some(theirs), Some(mine)) = (&state_digest, &ours.state_digest) {
            return theirs == mine;
        }
        let Some(digest) = digest else { return false };
        match ours.full_table_async().await {
            Ok(full) => full.digest == digest,
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }
}

pub(super) fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The source chain names the OS error (connection refused, reset, ...).
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

pub(super) fn excerpt(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// ±20% so gateways that failed together do not retry in lock step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + fastrand::f64() * 0.4)
}

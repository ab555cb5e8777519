//! A delta push: `PATCH /v1/table` with the change from the version a gateway serves to the
//! newest. Whatever the gateway cannot apply (another base, a state digest that differs, an
//! older gateway without the endpoint, a delta it finds invalid) is a fallback to the full
//! table, never a failure of its own.

use super::worker::{excerpt, transport_error, Worker};
use super::Outcome;
use crate::compile::delta::DeltaBody;
use crate::compile::Compiled;
use serde::Deserialize;
use std::sync::PoisonError;
use std::time::Instant;

/// Why a delta was not applied: `reason` is a `realmctl_table_delta_fallbacks_total` label.
pub(super) struct Fallback {
    pub reason: &'static str,
    pub detail: String,
}

/// What a gateway answers on `PATCH /v1/table`.
#[derive(Deserialize)]
struct PatchAnswer {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    problems: Vec<String>,
}

/// How a gateway's answer to a delta is taken.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Applied: the version it now serves.
    Applied(u64),
    /// Send the full table instead.
    Fallback(&'static str, String),
    /// Neither: the same would happen to the full table (unauthorised, a server error).
    Failed(Outcome, String),
}

/// Read a gateway's answer to `PATCH /v1/table` of a delta to `version`.
pub(super) fn judge(status: u16, text: &str, version: u64) -> Answer {
    let answer: Option<PatchAnswer> = serde_json::from_str(text).ok();
    match status {
        200 => Answer::Applied(answer.and_then(|a| a.version).unwrap_or(version)),
        409 => {
            let (error, at) = answer.map_or((None, None), |a| (a.error, a.version));
            let at = at.map_or_else(String::new, |v| format!(" (it serves version {v})"));
            match error.as_deref() {
                Some("wrong_base") => Answer::Fallback("wrong_base", format!("409 wrong_base{at}")),
                Some("digest_mismatch") => {
                    Answer::Fallback("digest_mismatch", format!("409 digest_mismatch{at}"))
                }
                _ => Answer::Fallback("conflict", format!("409: {}", excerpt(text))),
            }
        }
        // An older gateway: no such endpoint or method, or no such body type.
        404 | 405 | 415 => Answer::Fallback("unsupported", format!("{status}")),
        422 => {
            let problems = answer.map(|a| a.problems).unwrap_or_default();
            let first = problems
                .first()
                .map_or_else(|| excerpt(text), |p| excerpt(p));
            Answer::Fallback(
                "rejected",
                format!("422: {} problem(s), first: {first}", problems.len()),
            )
        }
        401 | 403 => Answer::Failed(
            Outcome::Unauthorized,
            "the gateway refused realmctl's gateway token".into(),
        ),
        _ => Answer::Failed(Outcome::Error, format!("{status}: {}", excerpt(text))),
    }
}

impl Worker {
    /// Whether deltas may be sent now (not within the pause after an "unsupported" answer).
    pub(super) fn deltas_allowed(&self) -> bool {
        let mut until = self
            .full_only_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *until = None;
                true
            }
            None => true,
        }
    }

    /// Send `delta` (to `table.version`): `Ok` with how the push ended when the gateway
    /// applied it or the full table would fare no better, `Err` to send the full table.
    pub(super) async fn push_delta(
        &self,
        table: &Compiled,
        delta: &DeltaBody,
    ) -> Result<Outcome, Fallback> {
        let started = Instant::now();
        self.metrics.table_pushed(true);
        let mut req = self
            .client
            .patch(format!("{}/v1/table", self.gateway.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delta.body.clone());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let what = format!(" (delta from {}, {} parts)", delta.base, delta.parts);
        let (status, text) = match req.send().await {
            Err(e) => {
                let error = transport_error(&e);
                let ended = (Outcome::Unreachable, None, Some(error));
                return Ok(self.finish(table.version, &what, started, ended));
            }
            Ok(resp) => (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ),
        };
        let ended = match judge(status, &text, table.version) {
            Answer::Applied(v) => (Outcome::Applied, Some(v), None),
            Answer::Failed(outcome, error) => (outcome, None, Some(error)),
            Answer::Fallback(reason, detail) => {
                if reason == "unsupported" {
                    // Asked again after a while: the gateway may be upgraded meanwhile.
                    let pause = self.settings.resync_interval * 10;
                    *self
                        .full_only_until
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + pause);
                }
                return Err(Fallback { reason, detail });
            }
        };
        Ok(self.finish(table.version, &what, started, ended))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::DELTA_FALLBACK_REASONS;

    #[test]
    fn answers_that_fall_back_to_the_full_table() {
        let cases: [(u16, &str, Answer); 9] = [
            (200, r#"{"version": 9}"#, Answer::Applied(9)),
            (200, "", Answer::Applied(8)),
            (
                409,
                r#"{"error": "wrong_base", "version": 5}"#,
                Answer::Fallback("wrong_base", "409 wrong_base (it serves version 5)".into()),
            ),
            (
                409,
                r#"{"error": "digest_mismatch"}"#,
                Answer::Fallback("digest_mismatch", "409 digest_mismatch".into()),
            ),
            (
                409,
                r#"{"error": "version_not_newer"}"#,
                Answer::Fallback("conflict", r#"409: {"error": "version_not_newer"}"#.into()),
            ),
            (404, "", Answer::Fallback("unsupported", "404".into())),
            (405, "", Answer::Fallback("unsupported", "405".into())),
            (
                422,
                r#"{"problems": ["tenants[0]: host a.test is also tenant b's"]}"#,
                Answer::Fallback(
                    "rejected",
                    "422: 1 problem(s), first: tenants[0]: host a.test is also tenant b's".into(),
                ),
            ),
            (
                401,
                "",
                Answer::Failed(
                    Outcome::Unauthorized,
                    "the gateway refused realmctl's gateway token".into(),
                ),
            ),
        ];
        for (status, text, expected) in cases {
            let got = judge(status, text, 8);
            if let Answer::Fallback(reason, _) = &got {
                assert!(
                    DELTA_FALLBACK_REASONS.contains(reason),
                    "{reason} is a label"
                );
            }
            assert_eq!(got, expected, "{status} {text}");
        }
        assert_eq!(
            judge(415, "", 8),
            Answer::Fallback("unsupported", "415".into())
        );
        assert!(matches!(
            judge(503, "busy", 8),
            Answer::Failed(Outcome::Error, _)
        ));
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod worker_tests;

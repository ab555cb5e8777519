//! The status around each issuance: `pending` (first order) or `renewing` (the installed
//! certificate keeps serving) while it runs, `valid` with the next renewal time once
//! installed, `failed` with the CA's problem and a backoff otherwise. One issuance at a time
//! per certificate: the provisioning step and the renewal scheduler both come here.

use super::{AcmeError, CertState, CertStatus, Installed, Issuer};
use crate::time::now_ms;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::sync::Mutex;

/// The CA's problem type for a rate limit (RFC 8555 §6.7).
pub const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

impl Issuer {
    pub(super) fn lock_of(&self, name: &str) -> Arc<Mutex<()>> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        // Drop the locks nobody holds or waits on, so the map stays as large as the work.
        busy.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(busy.entry(name.to_owned()).or_default())
    }

    /// This certificate's status, if the store has one.
    pub async fn status(&self, name: &str) -> Result<Option<CertStatus>, AcmeError> {
        let all = self.store.statuses().await.map_err(AcmeError::Local)?;
        Ok(all.into_iter().find(|s| s.certificate == name))
    }

    /// The statuses of a tenant's certificates.
    pub async fn status_of_tenant(&self, tenant: &str) -> Result<Vec<CertStatus>, AcmeError> {
        let all = self.store.statuses().await.map_err(AcmeError::Local)?;
        Ok(all.into_iter().filter(|s| s.tenant == tenant).collect())
    }

    /// Issue certificate `name` (of `tenant`) for `hosts` if `needed(installed)` still holds
    /// once this certificate's lock is held; returns the table version that carries it, or
    /// `None` when it was no longer needed (another caller just did it).
    pub async fn issue_if(
        &self,
        tenant: &str,
        name: &str,
        hosts: &[String],
        needed: impl Fn(Option<&Installed>) -> bool,
    ) -> Result<Option<u64>, AcmeError> {
        let lock = self.lock_of(name);
        let _held = lock.lock().await;
        let installed = self.store.installed(name);
        let now = now_ms();
        if !needed(installed.as_ref()) {
            // Issued before renewals were kept (or its status lost): adopt it, so the
            // scheduler renews it.
            if let Some(c) = installed.filter(|c| &c.hosts[..] == hosts) {
                if self.status(name).await?.is_none() {
                    let status = CertStatus {
                        certificate: name.to_owned(),
                        tenant: tenant.to_owned(),
                        hosts: hosts.to_vec(),
                        state: CertState::Valid,
                        problem: None,
                        error: None,
                        attempts: 0,
                        next_attempt_at_ms: None,
                        renew_at_ms: Some(renew_at_lifetime(
                            c.not_before,
                            c.not_after,
                            self.settings.renew_before,
                            fastrand::f64(),
                        )),
                        renew_source: Some("lifetime".into()),
                        ari_next_ms: Some(now),
                        ari_window_ms: None,
                        updated_at_ms: now,
                    };
                    self.store
                        .save_status(&status)
                        .await
                        .map_err(AcmeError::Local)?;
                }
            }
            return Ok(None);
        }
        let mut status = self.status(name).await?.unwrap_or_else(|| CertStatus {
            certificate: name.to_owned(),
            tenant: tenant.to_owned(),
            hosts: hosts.to_vec(),
            state: CertState::Pending,
            problem: None,
            error: None,
            attempts: 0,
            next_attempt_at_ms: None,
            renew_at_ms: None,
            renew_source: None,
            ari_next_ms: None,
            ari_window_ms: None,
            updated_at_ms: now,
        });
        status.tenant = tenant.to_owned();
        status.hosts = hosts.to_vec();
        status.state = if installed.is_some() {
            CertState::Renewing
        } else {
            CertState::Pending
        };
        status.updated_at_ms = now;
        self.store
            .save_status(&status)
            .await
            .map_err(AcmeError::Local)?;
        // A Retry-After from an earlier call is not this attempt's.
        let _ = self.retry_after.take();
        let result = self.order_and_install(tenant, name, hosts).await;
        let now = now_ms();
        status.updated_at_ms = now;
        match &result {
            Ok(_) => {
                status.state = CertState::Valid;
                status.problem = None;
                status.error = None;
                status.attempts = 0;
                status.next_attempt_at_ms = None;
                if let Some(c) = self.store.installed(name) {
                    status.renew_at_ms = Some(renew_at_lifetime(
                        c.not_before,
                        c.not_after,
                        self.settings.renew_before,
                        fastrand::f64(),
                    ));
                    status.renew_source = Some("lifetime".into());
                }
                // The CA's window for the new certificate is read at the scheduler's next look.
                status.ari_next_ms = Some(now);
                status.ari_window_ms = None;
            }
            Err(e) => {
                status.state = CertState::Failed;
                status.problem = e.problem().cloned();
                status.error = Some(e.to_string());
                status.attempts = status.attempts.saturating_add(1);
                let pause = backoff(
                    status.attempts,
                    self.settings.retry_initial,
                    self.settings.retry_max,
                    self.retry_after.take(),
                    e.problem().is_some_and(|p| p.kind == RATE_LIMITED),
                );
                status.next_attempt_at_ms = Some(now + pause.as_millis() as u64);
                log::warn!(
                    "certificate {name:?}: attempt {} failed ({e}); next not before {}",
                    status.attempts,
                    crate::time::rfc3339(now + pause.as_millis() as u64)
                );
            }
        }
        if let Err(e) = self.store.save_status(&status).await {
            log::warn!("certificate {name:?}: status not kept: {e}");
        }
        result.map(Some)
    }
}

/// When to renew a certificate valid from `not_before` to `not_after` (seconds), in ms: when
/// `renew_before` of its lifetime is left (two thirds in, by default), less a jitter of up
/// to a tenth of that remainder (`unit` in [0, 1)) so certificates issued together do not
/// all renew in the same minute.
pub fn renew_at_lifetime(not_before: u64, not_after: u64, renew_before: f64, unit: f64) -> u64 {
    let lifetime_ms = not_after.saturating_sub(not_before) as f64 * 1000.0;
    let ideal = not_before as f64 * 1000.0 + lifetime_ms * (1.0 - renew_before);
    let jitter = lifetime_ms * renew_before / 10.0 * unit.clamp(0.0, 1.0);
    (ideal - jitter).max(0.0) as u64
}

/// The pause after `attempts` failures in a row: `initial` doubled per failure up to `max`;
/// at least what the CA asked for (`Retry-After`, bounded by the client), and `max` for a
/// rate limit that named no time.
pub fn backoff(
    attempts: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    rate_limited: bool,
) -> Duration {
    let doubled = initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let mut pause = doubled.min(max);
    if rate_limited && retry_after.is_none() {
        pause = pause.max(max);
    }
    if let Some(asked) = retry_after {
        pause = pause.max(asked);
    }
    pause
}

/// When to renew by the CA's window `[start, end]` (ms), and which schedule decided:
/// a window already over means now (the CA wants it replaced, e.g. before a revocation);
/// otherwise a uniform point (`unit` in [0, 1)) of what is left of it, but never after our
/// own `lifetime_at`, so a CA that suggests renewing late (or a window of days on a
/// certificate of hours) still leaves the time to retry before expiry.
pub fn ari_point(
    start_ms: u64,
    end_ms: u64,
    now_ms: u64,
    lifetime_at: u64,
    unit: f64,
) -> (u64, &'static str) {
    if end_ms <= now_ms {
        return (now_ms, "ari");
    }
    let lo = start_ms.max(now_ms);
    let span = end_ms.saturating_sub(lo) as f64;
    let at = lo + (span * unit.clamp(0.0, 1.0)) as u64;
    if at > lifetime_at {
        (lifetime_at.max(now_ms), "lifetime")
    } else {
        (at, "ari")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_less_a_bounded_jitter() {
        let third = 1.0 / 3.0;
        // 90 days from t=0.
        let nb = 0;
        let na = 90 * 86_400;
        assert_eq!(renew_at_lifetime(nb, na, third, 0.0), 60 * 86_400 * 1000);
        let earliest = renew_at_lifetime(nb, na, third, 1.0);
        assert_eq!(
            earliest,
            57 * 86_400 * 1000,
            "at most a tenth of the last third"
        );
        for u in [0.1, 0.5, 0.99] {
            let at = renew_at_lifetime(nb, na, third, u);
            assert!(at > earliest && at < 60 * 86_400 * 1000, "{u}: {at}");
        }
        // Seconds-long test certificates too.
        assert_eq!(renew_at_lifetime(100, 130, third, 0.0), 120_000);
    }

    #[test]
    fn backoff_doubles_is_bounded_and_honours_the_ca() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(60), s(3600), None, false), s(60));
        assert_eq!(backoff(2, s(60), s(3600), None, false), s(120));
        assert_eq!(backoff(4, s(60), s(3600), None, false), s(480));
        assert_eq!(backoff(30, s(60), s(3600), None, false), s(3600));
        assert_eq!(backoff(u32::MAX, s(60), s(3600), None, false), s(3600));
        // Retry-After wins when longer, never shortens.
        assert_eq!(backoff(1, s(60), s(3600), Some(s(7200)), false), s(7200));
        assert_eq!(backoff(3, s(60), s(3600), Some(s(5)), false), s(240));
        // A rate limit with no time named waits the longest pause.
        assert_eq!(backoff(1, s(60), s(3600), None, true), s(3600));
        assert_eq!(backoff(1, s(60), s(3600), Some(s(30)), true), s(60));
    }

    #[test]
    fn the_cas_window_within_our_own_bounds() {
        // A window over: now.
        assert_eq!(ari_point(1000, 2000, 5000, 9000, 0.5), (5000, "ari"));
        // A future window: a point in it.
        assert_eq!(ari_point(1000, 2000, 0, 9000, 0.5), (1500, "ari"));
        assert_eq!(ari_point(1000, 2000, 0, 9000, 0.0), (1000, "ari"));
        // Begun: a point of what is left.
        assert_eq!(ari_point(1000, 3000, 2000, 9000, 0.5), (2500, "ari"));
        // Never after our own schedule (Pebble's window is the whole lifetime; a CA's
        // two-day window on a certificate of minutes).
        assert_eq!(ari_point(0, 10_000, 100, 6000, 0.9), (6000, "lifetime"));
        assert_eq!(ari_point(0, 10_000, 7000, 6000, 0.5), (7000, "lifetime"));
    }
}

//! The renewal scheduler: a background task that looks at every ACME-managed certificate
//! every `renew_check`, reads the CA's renewal window (ARI, RFC 9773) when it offers one,
//! and renews a certificate once its time has come (a random point of what is left of the
//! CA's window, never later than two thirds of its lifetime less a jitter, which is also
//! the schedule of a CA without ARI) and its backoff has passed. The installed
//! certificate keeps serving until the new one is in the table. A standby (no Lease) looks
//! at nothing: only the writer talks to the CA.

use super::lifecycle::{ari_point, renew_at_lifetime};
use super::{CertStatus, Issuer};
use crate::time::now_ms;
use std::sync::Arc;
use std::time::Duration;

/// The longest the CA's `Retry-After` on a renewal window is followed before asking again.
const MAX_ARI_RECHECK: Duration = Duration::from_secs(6 * 3600);

pub struct Renewals {
    issuer: Arc<Issuer>,
}

impl Renewals {
    pub fn new(issuer: Arc<Issuer>) -> Renewals {
        Renewals { issuer }
    }

    /// Run until the process ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let every = self.issuer.settings.renew_check;
            loop {
                tokio::time::sleep(every).await;
                if !self.issuer.store.leading() {
                    continue;
                }
                self.tick().await;
            }
        })
    }

    /// One look at every certificate: refresh the windows that are due, renew the
    /// certificates whose time has come, one after the other.
    pub async fn tick(&self) {
        let statuses = match self.issuer.store.statuses().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("renewals: cannot read the certificates' status: {e}");
                return;
            }
        };
        for s in statuses {
            self.look_at(s).await;
        }
    }

    async fn look_at(&self, mut s: CertStatus) {
        let issuer = &self.issuer;
        let name = s.certificate.clone();
        // A first order is the provisioning step's (its runner retries); hosts that changed
        // are too (the step orders the new set).
        let Some(installed) = issuer.store.installed(&name) else {
            return;
        };
        if installed.hosts != s.hosts {
            return;
        }
        let now = now_ms();
        if s.ari_next_ms.is_none_or(|at| at <= now) {
            let every = issuer.settings.renew_check;
            match issuer.renewal_window(&installed.cert_pem).await {
                Ok(Some(w)) => {
                    // A new or moved window (earlier: the CA plans a revocation) gets a new
                    // point; the same window keeps the point drawn in it.
                    if s.ari_window_ms != Some((w.start_ms, w.end_ms)) || s.renew_at_ms.is_none() {
                        let lifetime_at = renew_at_lifetime(
                            installed.not_before,
                            installed.not_after,
                            issuer.settings.renew_before,
                            fastrand::f64(),
                        );
                        let (at, source) =
                            ari_point(w.start_ms, w.end_ms, now, lifetime_at, fastrand::f64());
                        s.renew_at_ms = Some(at);
                        s.renew_source = Some(source.into());
                    }
                    s.ari_window_ms = Some((w.start_ms, w.end_ms));
                    let recheck = w.recheck.clamp(every, MAX_ARI_RECHECK.max(every));
                    s.ari_next_ms = Some(now + recheck.as_millis() as u64);
                }
                Ok(None) => {
                    // No ARI at this CA: the lifetime schedule stands; ask again in a while.
                    s.ari_next_ms = Some(now + MAX_ARI_RECHECK.as_millis() as u64);
                }
                Err(e) => {
                    log::debug!("certificate {name:?}: renewal window not read ({e})");
                    s.ari_next_ms = Some(now + issuer.settings.retry_initial.as_millis() as u64);
                }
            }
            if let Err(e) = issuer.store.save_status(&s).await {
                log::warn!("certificate {name:?}: status not kept: {e}");
                return;
            }
        }
        let due = s.renew_at_ms.is_some_and(|at| at <= now)
            && s.next_attempt_at_ms.is_none_or(|at| at <= now);
        if !due {
            return;
        }
        log::info!(
            "certificate {name:?}: renewing (not after {}, {} schedule)",
            realmgate_table::validate::rfc3339(installed.not_after),
            s.renew_source.as_deref().unwrap_or("lifetime")
        );
        let seen = installed.not_after;
        let fingerprint = installed.cert_pem.clone();
        // Renewed by someone else meanwhile (the step): nothing to do.
        let needed = |i: Option<&super::Installed>| {
            i.is_some_and(|i| i.not_after == seen && i.cert_pem == fingerprint)
        };
        match issuer.issue_if(&s.tenant, &name, &s.hosts, needed).await {
            Ok(Some(v)) => log::info!("certificate {name:?}: renewed (table version {v})"),
            Ok(None) => {}
            // Logged with its backoff by issue_if; the old certificate keeps serving.
            Err(_) => {}
        }
    }
}

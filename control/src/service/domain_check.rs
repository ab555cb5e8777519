//! The ownership check of pending custom domains: a TXT question for
//! `_realmgate-challenge.<domain>` to the configured resolver (not the gateways' view), with
//! backoff, until the deadline. Seen: `verified`, and the domain enters the tenant's hosts.
//! Only the writer checks (a standby waits). A verified domain missing from its tenant's
//! hosts (a crash between the two writes) is put back at the next look that sweeps them all
//! (the first, then one per idle period).

use super::Control;
use crate::model::{DomainRecord, DomainState};
use crate::resolver::{txt, TxtAnswer};
use crate::time::now_ms;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The longest sleep between looks (a notification cuts it short).
const MAX_IDLE: Duration = Duration::from_secs(30);

impl Control {
    /// Check pending domains until the process ends.
    pub fn start_domain_checks(self: &Arc<Self>) {
        let c = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let next = c.check_domains_once().await;
                let wait = next
                    .map_or(MAX_IDLE, |at| {
                        Duration::from_millis(at.saturating_sub(now_ms()))
                    })
                    .clamp(Duration::from_millis(100), MAX_IDLE);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = c.domain_checks.notified() => {}
                }
            }
        });
    }

    /// One look: check the domains that are due; returns when the next one is due.
    pub async fn check_domains_once(&self) -> Option<u64> {
        let Ok(settings) = self.domain_settings().cloned() else {
            return None;
        };
        if !self.fence.is_leading() {
            return Some(now_ms() + MAX_IDLE.as_millis() as u64);
        }
        let now = now_ms();
        let (due, missing): (Vec<DomainRecord>, Vec<DomainRecord>) = {
            let m = self.read();
            let due = m.domains.due(now).cloned().collect();
            // The sweep for verified domains missing from their hosts reads every domain:
            // once per MAX_IDLE at most, however often pending checks fall due.
            let sweep = self.domain_sweep_at.load(Ordering::Relaxed) <= now;
            if sweep {
                self.domain_sweep_at
                    .store(now + MAX_IDLE.as_millis() as u64, Ordering::Relaxed);
            }
            let missing = m
                .domains
                .values()
                .take_while(|_| sweep)
                .filter(|d| {
                    d.state == DomainState::Verified
                        && m.tenants.get(&d.tenant).is_some_and(|t| {
                            !t.provision.state.deleting() && !t.wire.hosts.contains(&d.domain)
                        })
                })
                .cloned()
                .collect();
            (due, missing)
        };
        for d in missing {
            if let Err(e) = self.set_domain_host(&d.tenant, &d.domain, true).await {
                log::warn!(
                    "domain {}: verified, not yet among the tenant's hosts: {e}",
                    d.domain
                );
            }
        }
        for d in due {
            let answer = txt(settings.resolver, &d.txt_name(), settings.query_timeout).await;
            let verdict = judge(&answer, &d, &settings);
            let mut next = d.clone();
            let now = now_ms();
            next.updated_at_ms = now;
            match verdict {
                Ok(()) => {
                    next.state = DomainState::Verified;
                    next.reason = None;
                    next.verified_at_ms = Some(now);
                }
                Err(reason) if now >= d.check_until_ms => {
                    next.state = DomainState::Failed;
                    next.reason = Some(format!(
                        "not verified by {}: {reason}; add the domain again to check anew",
                        crate::time::rfc3339(d.check_until_ms)
                    ));
                }
                Err(reason) => {
                    next.attempts = next.attempts.saturating_add(1);
                    let pause = settings
                        .check_initial
                        .saturating_mul(1u32 << next.attempts.saturating_sub(1).min(20))
                        .min(settings.check_max);
                    next.next_check_at_ms = (now + pause.as_millis() as u64).min(d.check_until_ms);
                    next.reason = Some(reason);
                }
            }
            if !self.store_domain_check(&d, &next).await {
                continue;
            }
            if next.state == DomainState::Verified {
                log::info!("domain {}: verified for tenant {}", d.domain, d.tenant);
                if let Err(e) = self.set_domain_host(&d.tenant, &d.domain, true).await {
                    // Retried at the next look (a verified domain missing from the hosts).
                    log::warn!(
                        "domain {}: verified, not yet among the tenant's hosts: {e}",
                        d.domain
                    );
                }
            }
        }
        self.read().domains.next_due()
    }

    /// Keep a check's outcome unless the domain changed meanwhile (removed, added anew).
    async fn store_domain_check(&self, seen: &DomainRecord, next: &DomainRecord) -> bool {
        let registry = self.lock_registry().await;
        let same = self.read().domains.get(&seen.domain) == Some(seen);
        if !same {
            return false;
        }
        if let Err(e) = registry.save_domain(next).await {
            log::warn!("domain {}: check not kept: {e}", seen.domain);
            return false;
        }
        self.write().domains.insert(next.clone());
        true
    }
}

/// Whether the answer holds the domain's value; otherwise what was found, for the operator
/// (never the expected value: the API shows that).
fn judge(
    answer: &Result<TxtAnswer, String>,
    d: &DomainRecord,
    s: &super::domains::DomainSettings,
) -> Result<(), String> {
    let name = d.txt_name();
    match answer {
        Ok(TxtAnswer::Records(values)) if values.iter().any(|v| v.trim() == d.token) => Ok(()),
        Ok(TxtAnswer::Records(values)) => {
            let shown: Vec<String> = values
                .iter()
                .take(3)
                .map(|v| format!("{:?}", v.chars().take(64).collect::<String>()))
                .collect();
            Err(format!(
                "the TXT record at {name} is {}, not the value realmctl gave for this domain",
                shown.join(", ")
            ))
        }
        Ok(TxtAnswer::NoRecords) => Err(format!("{name} has no TXT record yet")),
        Ok(TxtAnswer::NoSuchName) => Err(format!("no TXT record at {name} yet (NXDOMAIN)")),
        Err(e) => Err(format!("cannot ask the resolver {}: {e}", s.resolver)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;

    #[test]
    fn the_verdict_names_what_was_found_never_the_expected_value() {
        let d = DomainRecord {
            domain: "app.acme-corp.com".into(),
            tenant: TenantId::parse("acme").expect("id"),
            state: DomainState::Pending,
            token: "the-right-value".into(),
            reason: None,
            attempts: 0,
            next_check_at_ms: 0,
            check_until_ms: 0,
            verified_at_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let s = super::super::domains::DomainSettings {
            resolver: "127.0.0.1:53".parse().expect("addr"),
            platform_zones: vec![],
            check_for: Duration::from_secs(1),
            check_initial: Duration::from_secs(1),
            check_max: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
        };
        let ok = Ok(TxtAnswer::Records(vec![
            "x".into(),
            "the-right-value".into(),
        ]));
        assert_eq!(judge(&ok, &d, &s), Ok(()));
        let wrong = judge(&Ok(TxtAnswer::Records(vec!["nope".into()])), &d, &s).expect_err("wrong");
        assert!(
            wrong.contains("\"nope\"") && !wrong.contains("the-right-value"),
            "{wrong}"
        );
        let none = judge(&Ok(TxtAnswer::NoSuchName), &d, &s).expect_err("none");
        assert!(
            none.contains("_realmgate-challenge.app.acme-corp.com") && none.contains("NXDOMAIN")
        );
        let down = judge(&Err("timed out".into()), &d, &s).expect_err("down");
        assert!(
            down.contains("cannot ask the resolver 127.0.0.1:53"),
            "{down}"
        );
    }
}

//! dns-01 (RFC 8555 §8.4): which names it proves (every wildcard; every name in one of the
//! DNS provider's zones when `challenge: dns-01`), publishing `_acme-challenge.<name>` TXT
//! records through the provider, waiting (bounded, with backoff) until the zone's
//! authoritative server answers with them, and removing them afterwards, idempotently.

use super::{AcmeError, ChallengeKind, Issuer};
use crate::resolver::{txt, TxtAnswer};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One TXT rrset an order needs: its zone, its name, the values (a wildcard and its base
/// name share one name, with a value each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TxtSet {
    pub zone: String,
    pub name: String,
    pub values: Vec<String>,
}

/// Each question to the authoritative server is bounded by this.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// `_acme-challenge.<name>` of an identifier (a wildcard's is its base name's).
pub(super) fn txt_name(host: &str) -> String {
    format!(
        "_acme-challenge.{}",
        host.trim_start_matches("*.").trim_end_matches('.')
    )
}

/// The TXT names an order for `hosts` may publish (without asking the provider): every
/// wildcard's, and every name's under `challenge: dns-01`. Sorted, each once.
pub(super) fn txt_names(hosts: &[String], challenge: ChallengeKind) -> Vec<String> {
    let mut names: Vec<String> = hosts
        .iter()
        .filter(|h| h.starts_with("*.") || challenge == ChallengeKind::Dns01)
        .map(|h| txt_name(h))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What the server said, for the operator.
fn said(answer: &Result<TxtAnswer, String>) -> String {
    match answer {
        Ok(TxtAnswer::NoSuchName) => "it answered that the name does not exist".into(),
        Ok(TxtAnswer::NoRecords) => "it answered with no TXT record".into(),
        Ok(TxtAnswer::Records(r)) => format!(
            "it answered with {} TXT value(s), not the ones published",
            r.len()
        ),
        Err(e) => format!("no usable answer: {e}"),
    }
}

impl Issuer {
    /// The DNS provider's zone to prove `host` (one of the order's `hosts`) in with dns-01,
    /// or `None` for http-01. A wildcard needs dns-01, and so does a name whose wildcard is
    /// in the same order (`x` with `*.x`: one TXT rrset answers both, and `x` itself may
    /// point nowhere the CA can reach over HTTP, like a zone apex).
    pub(super) async fn dns01_zone(
        &self,
        host: &str,
        hosts: &[String],
    ) -> Result<Option<String>, AcmeError> {
        let wildcard = host.starts_with("*.") || hosts.contains(&format!("*.{host}"));
        if !wildcard && self.settings.challenge == ChallengeKind::Http01 {
            return Ok(None);
        }
        let Some(dns) = &self.settings.dns else {
            if wildcard {
                return Err(AcmeError::Local(format!(
                    "{host} needs dns-01 (a wildcard, or the base of one), and no DNS provider is configured: set provision.dns (provider: powerdns) with the zone that holds it"
                )));
            }
            return Ok(None);
        };
        let name = txt_name(host);
        match dns.records.zone_of(&name).await.map_err(AcmeError::Local)? {
            Some(zone) => Ok(Some(zone)),
            None if wildcard => Err(AcmeError::Local(format!(
                "{host} needs dns-01 (a wildcard, or the base of one), and the DNS provider ({dns:?}) has no zone that holds {name}"
            ))),
            None => {
                // A custom domain: its DNS is its owner's, so the gateways answer for it.
                log::info!("ACME: no zone of the DNS provider holds {name}: {host} is proved with http-01");
                Ok(None)
            }
        }
    }

    /// The server asked whether a record is visible: `certificates.acme.resolver`, or the
    /// DNS provider's own authoritative server.
    async fn dns_server(&self) -> Result<SocketAddr, AcmeError> {
        if let Some(r) = self.settings.resolver {
            return Ok(r);
        }
        let Some(dns) = &self.settings.dns else {
            return Err(AcmeError::Local(
                "dns-01 needs a DNS provider (provision.dns)".into(),
            ));
        };
        dns.records.authoritative_server().await.map_err(|e| {
            AcmeError::Local(format!(
                "cannot tell which DNS server to check dns-01 records on ({e}): set certificates.acme.resolver"
            ))
        })
    }

    pub(super) async fn publish_txt(&self, sets: &[TxtSet]) -> Result<(), AcmeError> {
        let Some(dns) = &self.settings.dns else {
            return Err(AcmeError::Local(
                "dns-01 needs a DNS provider (provision.dns)".into(),
            ));
        };
        for s in sets {
            dns.records
                .publish_txt(&s.zone, &s.name, &s.values)
                .await
                .map_err(|e| AcmeError::Local(format!("dns-01: publishing {}: {e}", s.name)))?;
            log::info!(
                "ACME: dns-01: {} TXT value(s) published at {} (zone {})",
                s.values.len(),
                s.name,
                s.zone
            );
        }
        Ok(())
    }

    /// Until the authoritative server answers every set with all its values, with backoff,
    /// for at most `dns_wait`; the CA is not told before.
    pub(super) async fn await_visible(&self, sets: &[TxtSet]) -> Result<(), AcmeError> {
        let server = self.dns_server().await?;
        let until = Instant::now() + self.settings.dns_wait;
        let mut delay = Duration::from_millis(200);
        let mut waiting: Vec<&TxtSet> = sets.iter().collect();
        loop {
            let mut still = Vec::new();
            let mut last = String::new();
            for s in waiting {
                let answer = txt(server, &s.name, QUERY_TIMEOUT).await;
                let seen = matches!(&answer, Ok(TxtAnswer::Records(r)) if s.values.iter().all(|v| r.contains(v)));
                if !seen {
                    last = format!("{}: {}", s.name, said(&answer));
                    still.push(s);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() + delay > until {
                return Err(AcmeError::Local(format!(
                    "dns-01: the TXT record is not visible on the zone's authoritative server {server} after {:?} ({last}); the CA was not asked to validate",
                    self.settings.dns_wait
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            waiting = still;
        }
    }

    /// Remove a TXT rrset; a failure is logged (the next attempt, or `remove`, tries again).
    pub(super) async fn remove_txt(&self, zone: &str, name: &str) {
        let Some(dns) = &self.settings.dns else {
            return;
        };
        match dns.records.remove_txt(zone, name).await {
            Ok(()) => log::info!("ACME: dns-01: TXT records at {name} removed"),
            Err(e) => log::warn!("ACME: dns-01: TXT records at {name} not removed: {e}"),
        }
    }

    /// Remove every TXT rrset an order for `hosts` may have published (a restarted realmctl
    /// does not know which an earlier process did). Idempotent.
    pub(super) async fn clear_txt(&self, hosts: &[String]) {
        let Some(dns) = &self.settings.dns else {
            return;
        };
        for name in txt_names(hosts, self.settings.challenge) {
            match dns.records.zone_of(&name).await {
                Ok(Some(zone)) => self.remove_txt(&zone, &name).await,
                Ok(None) => {}
                Err(e) => log::warn!("ACME: dns-01: TXT records at {name} not removed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_names() {
        assert_eq!(txt_name("*.example.dev"), "_acme-challenge.example.dev");
        assert_eq!(txt_name("a.example.dev."), "_acme-challenge.a.example.dev");
        let hosts = ["example.dev", "*.example.dev", "a.example.dev"].map(String::from);
        assert_eq!(
            txt_names(&hosts, ChallengeKind::Http01),
            ["_acme-challenge.example.dev"]
        );
        assert_eq!(
            txt_names(&hosts, ChallengeKind::Dns01),
            [
                "_acme-challenge.a.example.dev",
                "_acme-challenge.example.dev"
            ]
        );
    }
}

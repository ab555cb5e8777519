//! Answering an order's pending authorizations: http-01 answers go into the table and wait
//! for the gateways to serve them; dns-01 answers (every wildcard, and every name when
//! `challenge: dns-01`) go into the DNS provider and wait until the zone's authoritative
//! server shows them. Then the CA is told, its verdict awaited, and the answers withdrawn —
//! also when anything on the way failed.

use super::dns01::TxtSet;
use super::issue::nonce_retry;
use super::{AcmeError, Issuer, Problem};
use instant_acme::{AuthorizationStatus, ChallengeType, Order};
use std::time::{Duration, Instant};

impl Issuer {
    /// Publish the answers of every pending authorization, wait until they can be seen where
    /// the CA looks, tell the CA, wait for its verdict; the answers go afterwards.
    pub(super) async fn answer_challenges(
        &self,
        order: &mut Order,
        hosts: &[String],
        deadline: Instant,
    ) -> Result<(), AcmeError> {
        let expires_at = crate::time::now_ms()
            + 2 * self.settings.validation_timeout.as_millis() as u64
            + 600_000;
        let mut answers = Vec::new();
        let mut txt: Vec<TxtSet> = Vec::new();
        let mut ready_urls = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(|e| self.map(e))?;
                match a.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(AcmeError::Ca(Problem {
                            kind: "urn:ietf:params:acme:error:unauthorized".into(),
                            detail: format!("an authorization is {other:?}"),
                        }))
                    }
                }
                let host = a.identifier().to_string();
                if let Some(zone) = self.dns01_zone(&host, hosts).await? {
                    let Some(ch) = a.challenge(ChallengeType::Dns01) else {
                        return Err(AcmeError::Local(format!(
                            "the CA offers no dns-01 challenge for {host}"
                        )));
                    };
                    let value = ch.key_authorization().dns_value();
                    let name = super::dns01::txt_name(&host);
                    match txt.iter_mut().find(|t| t.name == name) {
                        // A wildcard and its base name answer at the same name.
                        Some(t) => t.values.push(value),
                        None => txt.push(TxtSet {
                            zone,
                            name,
                            values: vec![value],
                        }),
                    }
                    ready_urls.push(ch.url.clone());
                    continue;
                }
                let Some(ch) = a.challenge(ChallengeType::Http01) else {
                    return Err(AcmeError::Local(format!(
                        "the CA offers no http-01 challenge for {host}"
                    )));
                };
                let key_authorization = ch.key_authorization().as_str().to_owned();
                answers.push(realmgate_table::AcmeChallenge {
                    token: ch.token.clone(),
                    key_authorization,
                    hosts: vec![host],
                    expires_at: crate::time::rfc3339_seconds(expires_at),
                });
                ready_urls.push(ch.url.clone());
            }
        }
        if ready_urls.is_empty() {
            return self.wait(order, deadline).await;
        }
        let tokens: Vec<String> = answers.iter().map(|a| a.token.clone()).collect();
        let outcome = async {
            if !answers.is_empty() {
                let version = self
                    .store
                    .publish_challenges(answers)
                    .await
                    .map_err(AcmeError::Local)?;
                self.await_gateways(version).await?;
            }
            if !txt.is_empty() {
                self.publish_txt(&txt).await?;
                self.await_visible(&txt).await?;
            }
            // Tell the CA, one challenge at a time (the handles borrow the order).
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(|e| self.map(e))?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                let kind = a
                    .challenges
                    .iter()
                    .find(|c| ready_urls.contains(&c.url))
                    .map(|c| c.r#type.clone());
                if let Some(mut ch) = kind.and_then(|k| a.challenge(k)) {
                    nonce_retry!(ch.set_ready().await).map_err(|e| self.map(e))?;
                }
            }
            self.wait(order, deadline).await
        }
        .await;
        if !tokens.is_empty() {
            if let Err(e) = self.store.withdraw_challenges(&tokens).await {
                log::warn!("ACME: challenge answers stay in the table until they expire: {e}");
            }
        }
        for t in &txt {
            self.remove_txt(&t.zone, &t.name).await;
        }
        outcome
    }

    /// Until every known gateway serves table `version` (bounded); the CA may ask any of them.
    async fn await_gateways(&self, version: u64) -> Result<(), AcmeError> {
        let until = Instant::now() + self.settings.challenge_wait;
        loop {
            let versions = self.store.gateway_versions();
            let behind: Vec<&str> = versions
                .iter()
                .filter(|(_, v)| v.is_none_or(|v| v < version))
                .map(|(u, _)| u.as_str())
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                if behind.len() < versions.len() {
                    log::warn!(
                        "ACME: gateways {} do not serve table version {version} yet; asking the CA anyway",
                        behind.join(", ")
                    );
                    return Ok(());
                }
                return Err(AcmeError::Local(format!(
                    "no gateway serves table version {version} (with the challenge answers) after {:?}: {}",
                    self.settings.challenge_wait,
                    behind.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

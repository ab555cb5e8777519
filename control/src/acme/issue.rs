//! One certificate from order to installation, resumable: the order URL is journaled before
//! anything else is asked of the CA, the key before finalisation, and every later step
//! starts from the order's state at the CA (pending → answer challenges, ready → finalise,
//! processing → wait, valid → download), so a realmctl killed anywhere goes on with the same
//! order and never makes a second one.

use super::http::{ReqwestHttp, RetryAfter};
use super::{AcmeError, AcmeSettings, AcmeStore, Installed, OrderJournal, Problem};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, Order, OrderStatus,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// instant-acme retries a `badNonce` twice; a CA that rejects many nonces (Pebble's
/// `PEBBLE_WFE_NONCEREJECT`) needs more. Each retry is a new request with a new nonce, and a
/// request refused for its nonce was not processed (RFC 8555 §6.5), so retrying is safe for
/// every call, new-order included.
const BAD_NONCE_RETRIES: u32 = 10;
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

/// Run `$call` again while the CA refuses it for a bad nonce.
macro_rules! nonce_retry {
    ($call:expr) => {{
        let mut tries = 0;
        loop {
            match $call {
                Err(instant_acme::Error::Api(p))
                    if p.r#type.as_deref() == Some(BAD_NONCE) && tries < BAD_NONCE_RETRIES =>
                {
                    tries += 1;
                    log::debug!("ACME: badNonce, retrying ({tries})");
                }
                other => break other,
            }
        }
    }};
}

/// The ACME client of one directory.
pub struct Issuer {
    pub(super) settings: AcmeSettings,
    pub(super) store: Arc<dyn AcmeStore>,
    account: Mutex<Option<Account>>,
    /// The `Retry-After` of the CA's last refusal.
    pub(super) retry_after: RetryAfter,
    /// One issuance at a time per certificate (the step and the renewal scheduler).
    pub(super) busy: std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
}

impl Issuer {
    pub fn new(settings: AcmeSettings, store: Arc<dyn AcmeStore>) -> Issuer {
        Issuer {
            settings,
            store,
            account: Mutex::new(None),
            retry_after: RetryAfter::default(),
            busy: Default::default(),
        }
    }

    pub fn settings(&self) -> &AcmeSettings {
        &self.settings
    }

    pub fn installed(&self, certificate: &str) -> Option<Installed> {
        self.store.installed(certificate)
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> AcmeError {
        AcmeError::Unreachable {
            url: self.settings.directory_url.clone(),
            reason: e.to_string(),
        }
    }

    /// An instant-acme error as ours: a problem document stays one.
    pub(super) fn map(&self, e: instant_acme::Error) -> AcmeError {
        match e {
            instant_acme::Error::Api(p) => AcmeError::Ca(Problem {
                kind: p.r#type.unwrap_or_else(|| "about:blank".into()),
                detail: p.detail.unwrap_or_else(|| "(no detail)".into()),
            }),
            instant_acme::Error::Other(e) => {
                self.unreachable(crate::error_text::root_cause(e.as_ref()))
            }
            other => self.unreachable(other),
        }
    }

    fn http(&self) -> Result<Box<ReqwestHttp>, AcmeError> {
        ReqwestHttp::new(
            self.settings.directory_ca_pem.as_deref(),
            self.retry_after.clone(),
        )
        .map(Box::new)
        .map_err(AcmeError::Local)
    }

    /// The account for the directory: restored from the store, or registered once and kept.
    pub(super) async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let url = &self.settings.directory_url;
        let stored = self.store.account(url).await.map_err(AcmeError::Local)?;
        let account = match stored {
            Some(json) => {
                let creds = serde_json::from_str(&json)
                    .map_err(|e| AcmeError::Local(format!("stored ACME account: {e}")))?;
                Account::builder_with_http(self.http()?)
                    .from_credentials(creds)
                    .await
                    .map_err(|e| self.map(e))?
            }
            None => {
                let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let eab = self
                    .settings
                    .eab
                    .as_ref()
                    .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
                let (account, creds) = nonce_retry!(
                    Account::builder_with_http(self.http()?)
                        .create(&new, url.clone(), eab.as_ref())
                        .await
                )
                .map_err(|e| self.map(e))?;
                let json = serde_json::to_string(&creds)
                    .map_err(|e| AcmeError::Local(format!("ACME account: {e}")))?;
                self.store
                    .save_account(url, &json)
                    .await
                    .map_err(AcmeError::Local)?;
                log::info!("ACME: account {} registered at {url}", account.id());
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Certificate `name` (of `tenant`) for `hosts`: resume the journaled order or place one,
    /// answer its challenges, finalise, install. Returns the table version that carries the
    /// certificate. The status and the per-certificate lock are the caller's (`lifecycle`).
    pub(super) async fn order_and_install(
        &self,
        tenant: &str,
        name: &str,
        hosts: &[String],
    ) -> Result<u64, AcmeError> {
        let account = self.account().await?;
        let journal = self.store.order(name).await.map_err(AcmeError::Local)?;
        let journal = match journal {
            Some(j) if j.hosts == hosts && j.directory_url == self.settings.directory_url => {
                Some(j)
            }
            Some(stale) => {
                log::info!(
                    "certificate {name:?}: the journaled order was for other names; ordering anew"
                );
                self.store
                    .delete_order(&stale.certificate)
                    .await
                    .map_err(AcmeError::Local)?;
                None
            }
            None => None,
        };
        let (mut order, mut journal) = match journal {
            Some(j) => {
                log::info!("certificate {name:?}: resuming order {}", j.order_url);
                let order = nonce_retry!(account.order(j.order_url.clone()).await)
                    .map_err(|e| self.map(e))?;
                (order, j)
            }
            None => {
                let ids: Vec<Identifier> =
                    hosts.iter().map(|h| Identifier::Dns(h.clone())).collect();
                let order = nonce_retry!(account.new_order(&NewOrder::new(&ids)).await)
                    .map_err(|e| self.map(e))?;
                let j = OrderJournal {
                    certificate: name.to_owned(),
                    tenant: tenant.to_owned(),
                    directory_url: self.settings.directory_url.clone(),
                    hosts: hosts.to_vec(),
                    order_url: order.url().to_owned(),
                    key_pem: None,
                    last_error: None,
                };
                self.store.save_order(&j).await.map_err(AcmeError::Local)?;
                log::info!("certificate {name:?}: order {} placed", j.order_url);
                super::crash_point("ordered");
                (order, j)
            }
        };
        let result = self.drive(&mut order, &mut journal).await;
        match result {
            Ok((chain, key_pem)) => {
                let version = self
                    .store
                    .install(name, &chain, &key_pem, hosts)
                    .await
                    .map_err(AcmeError::Local)?;
                self.store
                    .delete_order(name)
                    .await
                    .map_err(AcmeError::Local)?;
                log::info!("certificate {name:?}: issued and installed (table version {version})");
                Ok(version)
            }
            Err(e) => {
                if let Some(p) = e.problem() {
                    journal.last_error = Some(p.clone());
                    let _ = self.store.save_order(&journal).await;
                }
                // A dead order cannot be resumed: the next attempt places a new one.
                if matches!(order.state().status, OrderStatus::Invalid) {
                    let _ = self.store.delete_order(name).await;
                }
                Err(e)
            }
        }
    }

    /// From the order's current state to an issued chain and its key.
    async fn drive(
        &self,
        order: &mut Order,
        journal: &mut OrderJournal,
    ) -> Result<(String, String), AcmeError> {
        let deadline = Instant::now() + self.settings.validation_timeout;
        loop {
            let status = order.state().status;
            match status {
                OrderStatus::Pending => self.answer_challenges(order, deadline).await?,
                OrderStatus::Ready => {
                    super::crash_point("ready");
                    let key_pem = match &journal.key_pem {
                        Some(k) => k.clone(),
                        None => {
                            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                                .map_err(|e| AcmeError::Local(format!("certificate key: {e}")))?;
                            journal.key_pem = Some(key.serialize_pem());
                            // Kept before the CA sees the CSR: a restart finalises with the
                            // same key, or downloads a chain it can use.
                            self.store
                                .save_order(journal)
                                .await
                                .map_err(AcmeError::Local)?;
                            key.serialize_pem()
                        }
                    };
                    let csr = csr(&key_pem, &journal.hosts)?;
                    nonce_retry!(order.finalize_csr(&csr).await).map_err(|e| self.map(e))?;
                    super::crash_point("finalized");
                }
                OrderStatus::Processing => self.wait(order, deadline).await?,
                OrderStatus::Valid => {
                    let Some(key_pem) = journal.key_pem.clone() else {
                        return Err(AcmeError::Local(
                            "the order was finalised but its key was not kept; a new order is needed".into(),
                        ));
                    };
                    let chain = nonce_retry!(order.certificate().await)
                        .map_err(|e| self.map(e))?
                        .ok_or_else(|| AcmeError::Local("the CA sent no certificate".into()))?;
                    return Ok((chain, key_pem));
                }
                OrderStatus::Invalid => {
                    return Err(match order.state().error.clone() {
                        Some(p) => self.map(instant_acme::Error::Api(p)),
                        None => AcmeError::Ca(Problem {
                            kind: "urn:ietf:params:acme:error:orderInvalid".into(),
                            detail: "the order is invalid (a challenge failed)".into(),
                        }),
                    });
                }
            }
        }
    }

    /// Publish the answers of every pending http-01 challenge, wait for the gateways to serve
    /// them, tell the CA, wait for its verdict; the answers leave the table afterwards.
    async fn answer_challenges(
        &self,
        order: &mut Order,
        deadline: Instant,
    ) -> Result<(), AcmeError> {
        let expires_at = crate::time::now_ms()
            + 2 * self.settings.validation_timeout.as_millis() as u64
            + 600_000;
        let mut answers = Vec::new();
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
        if answers.is_empty() {
            return self.wait(order, deadline).await;
        }
        let tokens: Vec<String> = answers.iter().map(|a| a.token.clone()).collect();
        let version = self
            .store
            .publish_challenges(answers)
            .await
            .map_err(AcmeError::Local)?;
        let outcome = async {
            self.await_gateways(version).await?;
            // Tell the CA, one challenge at a time (the handles borrow the order).
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(|e| self.map(e))?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut ch) = a.challenge(ChallengeType::Http01) {
                    if ready_urls.contains(&ch.url) {
                        nonce_retry!(ch.set_ready().await).map_err(|e| self.map(e))?;
                    }
                }
            }
            self.wait(order, deadline).await
        }
        .await;
        if let Err(e) = self.store.withdraw_challenges(&tokens).await {
            log::warn!("ACME: challenge answers stay in the table until they expire: {e}");
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

    /// Poll the order while the CA works on it (pending authorizations, processing), honouring
    /// its `Retry-After` between the bounds, until it moves on or the deadline passes.
    async fn wait(&self, order: &mut Order, deadline: Instant) -> Result<(), AcmeError> {
        let start = order.state().status;
        let mut delay = Duration::from_millis(250);
        loop {
            if Instant::now() >= deadline {
                return Err(AcmeError::Local(format!(
                    "the CA did not finish validating or issuing within {:?}; retried later",
                    self.settings.validation_timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            let status =
                nonce_retry!(order.refresh().await.map(|s| s.status)).map_err(|e| self.map(e))?;
            if status != start {
                return Ok(());
            }
        }
    }

    /// Revoke (best effort) and delete certificate `name`, and forget its order and status.
    pub async fn remove(&self, name: &str) -> Result<(), AcmeError> {
        let lock = self.lock_of(name);
        let _held = lock.lock().await;
        if let Some(installed) = self.store.installed(name) {
            if let Err(e) = self.revoke(&installed.cert_pem).await {
                log::warn!("certificate {name:?}: not revoked ({e}); deleting it anyway");
            }
        }
        self.store.uninstall(name).await.map_err(AcmeError::Local)?;
        self.store
            .delete_order(name)
            .await
            .map_err(AcmeError::Local)?;
        self.store
            .delete_status(name)
            .await
            .map_err(AcmeError::Local)
    }

    async fn revoke(&self, chain_pem: &str) -> Result<(), AcmeError> {
        use rustls::pki_types::pem::PemObject;
        let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| AcmeError::Local("the stored chain has no certificate".into()))?;
        let account = self.account().await?;
        nonce_retry!(
            account
                .revoke(&instant_acme::RevocationRequest {
                    certificate: &leaf,
                    reason: Some(instant_acme::RevocationReason::CessationOfOperation),
                })
                .await
        )
        .map_err(|e| self.map(e))
    }
}

/// A CSR for `hosts` signed by `key_pem` (no subject: the names are in the SAN).
fn csr(key_pem: &str, hosts: &[String]) -> Result<Vec<u8>, AcmeError> {
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| AcmeError::Local(format!("certificate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| AcmeError::Local(format!("CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Local(format!("CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

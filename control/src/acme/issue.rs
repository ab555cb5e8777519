//! One certificate from order to installation, resumable: the order URL is journaled before
//! anything else is asked of the CA, the key before finalisation, and every later step
//! starts from the order's state at the CA (pending → answer challenges, ready → finalise,
//! processing → wait, valid → download), so a realmctl killed anywhere goes on with the same
//! order and never makes a second one.

use super::http::{ReqwestHttp, RetryAfter};
use super::{AcmeError, AcmeSettings, AcmeStore, Installed, OrderJournal, Problem};
use instant_acme::{
    Account, ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// instant-acme retries a `badNonce` twice; a CA that rejects many nonces (Pebble's
/// `PEBBLE_WFE_NONCEREJECT`) needs more. Each retry is a new request with a new nonce, and a
/// request refused for its nonce was not processed (RFC 8555 §6.5), so retrying is safe for
/// every call, new-order included.
pub(super) const BAD_NONCE_RETRIES: u32 = 10;
pub(super) const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
/// The CA's answer to a `replaces` naming a certificate another order already replaces.
const ALREADY_REPLACED: &str = "urn:ietf:params:acme:error:alreadyReplaced";

/// Run `$call` again while the CA refuses it for a bad nonce.
macro_rules! nonce_retry {
    ($call:expr) => {{
        let mut tries = 0;
        loop {
            match $call {
                Err(instant_acme::Error::Api(p))
                    if p.r#type.as_deref() == Some($crate::acme::issue::BAD_NONCE)
                        && tries < $crate::acme::issue::BAD_NONCE_RETRIES =>
                {
                    tries += 1;
                    log::debug!("ACME: badNonce, retrying ({tries})");
                }
                other => break other,
            }
        }
    }};
}
pub(super) use nonce_retry;

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
        // Two certificates whose dns-01 answers share a TXT name (`x` and `*.x`) take turns:
        // each replaces the rrset with its own values and removes it afterwards.
        let txt_locks: Vec<_> = super::dns01::txt_names(hosts, self.settings.challenge)
            .iter()
            .map(|n| self.lock_of(&format!("txt:{n}")))
            .collect();
        let mut _txt_held = Vec::with_capacity(txt_locks.len());
        for l in &txt_locks {
            _txt_held.push(l.lock().await);
        }
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
        let resumed = journal.is_some();
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
                let order = self.new_order(&account, name, &ids, hosts).await?;
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
        if resumed {
            // An earlier process may have published dns-01 answers it did not remove.
            self.clear_txt(hosts).await;
        }
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

    /// Place the order; a renewal names the certificate it replaces (ARI `replaces`, RFC 9773
    /// §5), so the CA can tie the two together. A CA without ARI, or one that says another
    /// order already replaces it, gets a plain order.
    async fn new_order(
        &self,
        account: &Account,
        name: &str,
        ids: &[Identifier],
        hosts: &[String],
    ) -> Result<Order, AcmeError> {
        let replaces = self
            .store
            .installed(name)
            .filter(|i| i.hosts.iter().any(|h| hosts.contains(h)))
            .and_then(|i| super::ari::certificate_id(&i.cert_pem).ok());
        if let Some(id) = replaces {
            let placed = nonce_retry!(
                account
                    .new_order(&NewOrder::new(ids).replaces(id.clone()))
                    .await
            );
            match placed {
                Ok(order) => {
                    log::info!("certificate {name:?}: the new order replaces {id}");
                    return Ok(order);
                }
                Err(instant_acme::Error::Unsupported(_)) => {}
                Err(instant_acme::Error::Api(p))
                    if p.r#type.as_deref() == Some(ALREADY_REPLACED) =>
                {
                    log::info!("certificate {name:?}: {id} is already being replaced; ordering without replaces");
                }
                Err(e) => return Err(self.map(e)),
            }
        }
        nonce_retry!(account.new_order(&NewOrder::new(ids)).await).map_err(|e| self.map(e))
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
                OrderStatus::Pending => {
                    self.answer_challenges(order, &journal.hosts, deadline)
                        .await?
                }
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

    /// Poll the order while the CA works on it (pending authorizations, processing), honouring
    /// its `Retry-After` between the bounds, until it moves on or the deadline passes.
    pub(super) async fn wait(&self, order: &mut Order, deadline: Instant) -> Result<(), AcmeError> {
        let start = order.state().status;
        // A CA often finishes within milliseconds (the certificate bench measured a fixed first
        // pause of 250 ms as most of a new tenant's time to HTTPS): look soon, then back off.
        let mut delay = Duration::from_millis(50);
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
            // The CA's own pacing (RFC 8555 §7.5.1), within the same bounds.
            if let Some(asked) = self.retry_after.take() {
                delay = asked.clamp(delay, Duration::from_secs(5));
            }
        }
    }

    /// Revoke (best effort) and delete certificate `name`, and forget its order and status.
    pub async fn remove(&self, name: &str) -> Result<(), AcmeError> {
        let lock = self.lock_of(name);
        let _held = lock.lock().await;
        // An order cut short (a failed step, a crash) may have left dns-01 answers.
        if let Ok(Some(j)) = self.store.order(name).await {
            self.clear_txt(&j.hosts).await;
        }
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

//! The service's side of ACME: the store the ACME client keeps its account, order journal and
//! challenge answers in (sealed with the service's key, in the registry), and installs issued
//! certificates through (the same path as `PUT /v1/certificates/{name}`).

use super::{Control, ServiceError};
use crate::acme::{AcmeStore, CertStatus, Installed, OrderJournal, Problem};
use crate::registry::acme::OrderRow;
use crate::time::now_ms;
use realmgate_table::AcmeChallenge;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Which table version each known gateway serves (the pushers know; the server wires it).
pub type GatewayVersions = Arc<dyn Fn() -> Vec<(String, Option<u64>)> + Send + Sync>;

/// [`AcmeStore`] over the control service.
pub struct ServiceAcmeStore {
    control: Arc<Control>,
    gateways: GatewayVersions,
}

impl ServiceAcmeStore {
    pub fn new(control: Arc<Control>, gateways: GatewayVersions) -> ServiceAcmeStore {
        ServiceAcmeStore { control, gateways }
    }
}

/// Associated data of sealed ACME values: an account's of its directory, a key's of its
/// certificate, so a sealed value cannot be moved to another row.
const ACCOUNT_AAD: &str = "acme-account";

fn order_key_aad(certificate: &str) -> String {
    format!("acme-order:{certificate}")
}

fn msg(e: ServiceError) -> String {
    e.to_string()
}

#[async_trait::async_trait]
impl AcmeStore for ServiceAcmeStore {
    async fn account(&self, directory_url: &str) -> Result<Option<String>, String> {
        let c = &self.control;
        let sealed = {
            let registry = c.lock_registry().await;
            registry
                .acme_account(directory_url)
                .await
                .map_err(|e| e.to_string())?
        };
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let opened = c.secret_box.open(ACCOUNT_AAD, directory_url, &sealed)?;
        opened
            .get("credentials")
            .and_then(Value::as_str)
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| "the stored ACME account is unreadable".to_owned())
    }

    async fn save_account(&self, directory_url: &str, credentials: &str) -> Result<(), String> {
        let c = &self.control;
        let mut m = Map::new();
        m.insert("credentials".into(), json!(credentials));
        let sealed = c
            .secret_box
            .seal(ACCOUNT_AAD, directory_url, &m)
            .ok_or("cannot seal the ACME account")?;
        let registry = c.lock_registry().await;
        registry
            .save_acme_account(directory_url, &sealed, now_ms())
            .await
            .map_err(|e| e.to_string())
    }

    async fn order(&self, certificate: &str) -> Result<Option<OrderJournal>, String> {
        let c = &self.control;
        let row = {
            let registry = c.lock_registry().await;
            registry
                .acme_order(certificate)
                .await
                .map_err(|e| e.to_string())?
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let key_pem = match &row.key_sealed {
            Some(s) => Some(
                c.secret_box
                    .open_certificate_key(&order_key_aad(certificate), s)?,
            ),
            None => None,
        };
        Ok(Some(OrderJournal {
            certificate: row.certificate,
            tenant: row.tenant,
            directory_url: row.directory_url,
            hosts: row.hosts,
            order_url: row.order_url,
            key_pem,
            last_error: row
                .last_error
                .and_then(|e| serde_json::from_str::<Problem>(&e).ok()),
        }))
    }

    async fn save_order(&self, j: &OrderJournal) -> Result<(), String> {
        let c = &self.control;
        let key_sealed = match &j.key_pem {
            Some(k) => Some(
                c.secret_box
                    .seal_certificate_key(&order_key_aad(&j.certificate), k)
                    .ok_or("cannot seal the certificate key")?,
            ),
            None => None,
        };
        let row = OrderRow {
            certificate: j.certificate.clone(),
            tenant: j.tenant.clone(),
            directory_url: j.directory_url.clone(),
            hosts: j.hosts.clone(),
            order_url: j.order_url.clone(),
            key_sealed,
            last_error: j
                .last_error
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok()),
        };
        let registry = c.lock_registry().await;
        registry
            .save_acme_order(&row, now_ms())
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete_order(&self, certificate: &str) -> Result<(), String> {
        let registry = self.control.lock_registry().await;
        registry
            .delete_acme_order(certificate)
            .await
            .map_err(|e| e.to_string())
    }

    async fn publish_challenges(&self, answers: Vec<AcmeChallenge>) -> Result<u64, String> {
        let c = &self.control;
        let with_expiry: Vec<(AcmeChallenge, u64)> = answers
            .into_iter()
            .map(|a| {
                let at = realmgate_table::parse_expiry(&a.expires_at).unwrap_or(0) * 1000;
                (a, at)
            })
            .collect();
        let registry = c.lock_registry().await;
        let version = registry
            .put_acme_challenges(&with_expiry)
            .await
            .map_err(|e| e.to_string())?;
        c.commit(version, |m| {
            for (a, _) in with_expiry {
                m.acme_challenges.insert(a.token.clone(), a);
            }
        });
        Ok(version)
    }

    async fn withdraw_challenges(&self, tokens: &[String]) -> Result<(), String> {
        let c = &self.control;
        let registry = c.lock_registry().await;
        let version = registry
            .delete_acme_challenges(tokens)
            .await
            .map_err(|e| e.to_string())?;
        c.commit(version, |m| {
            for t in tokens {
                m.acme_challenges.remove(t);
            }
        });
        Ok(())
    }

    fn gateway_versions(&self) -> Vec<(String, Option<u64>)> {
        (self.gateways)()
    }

    fn installed(&self, certificate: &str) -> Option<Installed> {
        self.control.with_model(|m| {
            m.certificates.get(certificate).map(|c| Installed {
                hosts: c.hosts.iter().map(ToString::to_string).collect(),
                not_before: c.not_before,
                not_after: c.not_after,
                cert_pem: c.cert_pem.clone(),
            })
        })
    }

    async fn install(
        &self,
        certificate: &str,
        chain_pem: &str,
        key_pem: &str,
        hosts: &[String],
    ) -> Result<u64, String> {
        let body = json!({"cert_pem": chain_pem, "key_pem": key_pem, "hosts": hosts});
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let (view, _) = self
            .control
            .put_certificate(certificate, &bytes)
            .await
            .map_err(|e| match e {
                ServiceError::Invalid(ps) => ps
                    .iter()
                    .map(|p| format!("{}: {}", p.at, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                other => msg(other),
            })?;
        Ok(view.table_version)
    }

    async fn uninstall(&self, certificate: &str) -> Result<bool, String> {
        match self.control.delete_certificate(certificate).await {
            Ok(_) => Ok(true),
            Err(ServiceError::NotFound { .. }) => Ok(false),
            Err(e) => Err(msg(e)),
        }
    }

    async fn statuses(&self) -> Result<Vec<CertStatus>, String> {
        let registry = self.control.lock_registry().await;
        registry.acme_statuses().await.map_err(|e| e.to_string())
    }

    async fn save_status(&self, status: &CertStatus) -> Result<(), String> {
        let registry = self.control.lock_registry().await;
        registry
            .save_acme_status(status)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete_status(&self, certificate: &str) -> Result<(), String> {
        let registry = self.control.lock_registry().await;
        registry
            .delete_acme_status(certificate)
            .await
            .map_err(|e| e.to_string())
    }

    fn leading(&self) -> bool {
        self.control.fence().is_leading()
    }
}

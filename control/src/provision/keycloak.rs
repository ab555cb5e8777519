//! A small Keycloak Admin REST API client for the identity step: a token from the admin
//! realm (client credentials of realmctl's service-account client, or — only to bootstrap
//! that client — the bootstrap admin's password), cached until shortly before it expires.

use super::{root_cause, StepError};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How realmctl gets its admin token.
#[derive(Clone)]
pub enum Credentials {
    /// A confidential client of the admin realm with a service account (production).
    Client { id: String, secret: String },
    /// A user of the admin realm through `admin-cli` (bootstrap only).
    Password { user: String, password: String },
}

pub struct Keycloak {
    base: String,
    admin_realm: String,
    creds: Credentials,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
    /// Time spent waiting on Keycloak, in microseconds (the bench reports it).
    waited_us: AtomicU64,
}

impl std::fmt::Debug for Keycloak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keycloak")
            .field("base", &self.base)
            .field("admin_realm", &self.admin_realm)
            .finish_non_exhaustive()
    }
}

fn unreachable(e: &reqwest::Error) -> StepError {
    StepError::new(format!("Keycloak unreachable: {}", root_cause(e)))
}

impl Keycloak {
    pub fn new(base: &str, admin_realm: &str, creds: Credentials) -> Result<Keycloak, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Keycloak {
            base: base.trim_end_matches('/').to_owned(),
            admin_realm: admin_realm.to_owned(),
            creds,
            http,
            token: Mutex::new(None),
            waited_us: AtomicU64::new(0),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Total time spent in requests to Keycloak.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_us.load(Ordering::Relaxed))
    }

    fn count(&self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.waited_us.fetch_add(us, Ordering::Relaxed);
    }

    async fn token(&self) -> Result<String, StepError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.base, self.admin_realm
        );
        let form: Vec<(&str, &str)> = match &self.creds {
            Credentials::Client { id, secret } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
            Credentials::Password { user, password } => vec![
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", user),
                ("password", password),
            ],
        };
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::percent::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let started = Instant::now();
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        self.count(started);
        if !status.is_success() {
            return Err(StepError::new(format!(
                "Keycloak refused realmctl's credentials for realm {} ({status}: {}); check provision.identity.client_id and client_secret_file",
                self.admin_realm,
                v["error_description"].as_str().or(v["error"].as_str()).unwrap_or("")
            )));
        }
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| StepError::new("Keycloak token answer without access_token"))?
            .to_owned();
        // Renew 10 s early (master tokens live 60 s by default).
        let life = v["expires_in"]
            .as_u64()
            .unwrap_or(60)
            .saturating_sub(10)
            .max(1);
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(life)));
        Ok(token)
    }

    /// Drop the cached token: a token minted before a realm existed carries no roles for
    /// it (Keycloak grants them through the new `<realm>-realm` client), so the next call
    /// must log in again.
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// A request under `/admin/realms`; the status and the JSON body (`Null` if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), StepError> {
        let url = format!("{}/admin/realms{path}", self.base);
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let mut req = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = Instant::now();
            let resp = req.send().await.map_err(|e| unreachable(&e))?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| unreachable(&e))?;
            self.count(started);
            // 401: the token was revoked early; 403: it predates a realm made since (by
            // another realmctl, or before a restart). Log in again, once.
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) && !retried {
                self.forget_token().await;
                retried = true;
                continue;
            }
            let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Ok((status, v));
        }
    }

    /// GET; `None` on 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, StepError> {
        match self.call(Method::GET, path, None).await? {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (s, v) if s.is_success() => Ok(Some(v)),
            (s, v) => Err(api_error("GET", path, s, &v)),
        }
    }

    /// A request that must succeed; 409 (already exists) counts as success when `conflict_ok`.
    pub async fn send_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        conflict_ok: bool,
    ) -> Result<(), StepError> {
        let m = method.to_string();
        match self.call(method, path, body).await? {
            (s, _) if s.is_success() => Ok(()),
            (StatusCode::CONFLICT, _) if conflict_ok => Ok(()),
            (s, v) => Err(api_error(&m, path, s, &v)),
        }
    }

    /// The internal id of a client by its `clientId`.
    pub async fn client_uuid(
        &self,
        realm: &str,
        client_id: &str,
    ) -> Result<Option<(String, Value)>, StepError> {
        let path = format!(
            "/{realm}/clients?clientId={}",
            crate::percent::encode(client_id)
        );
        let list = self.get_opt(&path).await?.unwrap_or(Value::Null);
        Ok(list.as_array().and_then(|a| {
            a.iter()
                .find(|c| c["clientId"] == client_id)
                .and_then(|c| Some((c["id"].as_str()?.to_owned(), c.clone())))
        }))
    }

    /// Make sure `user_id` has `role` of client `client_id` (e.g. realm-management's
    /// realm-admin); `client_id = None` means a realm role.
    pub async fn ensure_role_mapping(
        &self,
        realm: &str,
        user_id: &str,
        client_id: Option<&str>,
        role: &str,
    ) -> Result<(), StepError> {
        let (role_path, mapping_path) = match client_id {
            None => (
                format!("/{realm}/roles/{role}"),
                format!("/{realm}/users/{user_id}/role-mappings/realm"),
            ),
            Some(c) => {
                let (cid, _) = self.client_uuid(realm, c).await?.ok_or_else(|| {
                    StepError::new(format!("Keycloak realm {realm} has no client {c}"))
                })?;
                (
                    format!("/{realm}/clients/{cid}/roles/{role}"),
                    format!("/{realm}/users/{user_id}/role-mappings/clients/{cid}"),
                )
            }
        };
        let current = self.get_opt(&mapping_path).await?.unwrap_or(Value::Null);
        let has = current
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["name"] == role));
        if has {
            return Ok(());
        }
        let rep = self
            .get_opt(&role_path)
            .await?
            .ok_or_else(|| StepError::new(format!("Keycloak realm {realm} has no role {role}")))?;
        self.send_ok(Method::POST, &mapping_path, Some(&json!([rep])), false)
            .await
    }
}

fn api_error(method: &str, path: &str, status: StatusCode, body: &Value) -> StepError {
    let detail = body["errorMessage"]
        .as_str()
        .or(body["error_description"].as_str())
        .or(body["error"].as_str())
        .unwrap_or("");
    // Query strings may name users; the path without them is enough to locate the call.
    let path = path.split('?').next().unwrap_or(path);
    StepError::new(format!("Keycloak {method} {path}: {status} {detail}"))
}

/// Create (or find) realmctl's service-account client in the admin realm with the realm's
/// `admin` role, using the bootstrap admin's password; returns the client's secret. For
/// tests and the local platform: production creates this client once, by hand or IaC.
pub async fn bootstrap(
    base: &str,
    admin_realm: &str,
    admin_user: &str,
    admin_password: &str,
    client_id: &str,
) -> Result<String, StepError> {
    let kc = Keycloak::new(
        base,
        admin_realm,
        Credentials::Password {
            user: admin_user.to_owned(),
            password: admin_password.to_owned(),
        },
    )
    .map_err(StepError::new)?;
    let rep = json!({
        "clientId": client_id, "name": "realmctl provisioner", "enabled": true,
        "protocol": "openid-connect", "publicClient": false,
        "clientAuthenticatorType": "client-secret", "serviceAccountsEnabled": true,
        "standardFlowEnabled": false, "directAccessGrantsEnabled": false,
        "implicitFlowEnabled": false,
    });
    if kc.client_uuid(admin_realm, client_id).await?.is_none() {
        kc.send_ok(
            Method::POST,
            &format!("/{admin_realm}/clients"),
            Some(&rep),
            true,
        )
        .await?;
    }
    let (uuid, _) = kc
        .client_uuid(admin_realm, client_id)
        .await?
        .ok_or_else(|| StepError::new("client missing right after creation"))?;
    let sa = kc
        .get_opt(&format!(
            "/{admin_realm}/clients/{uuid}/service-account-user"
        ))
        .await?
        .ok_or_else(|| StepError::new("the client has no service-account user"))?;
    let sa_id = sa["id"]
        .as_str()
        .ok_or_else(|| StepError::new("service-account user without id"))?;
    kc.ensure_role_mapping(admin_realm, sa_id, None, "admin")
        .await?;
    let secret = kc
        .get_opt(&format!("/{admin_realm}/clients/{uuid}/client-secret"))
        .await?
        .ok_or_else(|| StepError::new("no client secret"))?;
    secret["value"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| StepError::new("client secret answer without value"))
}

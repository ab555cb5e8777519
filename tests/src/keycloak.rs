//! The real Keycloak of the auth tests (started by `tests/setup/keycloak.sh`, URL in
//! `REALMGATE_KEYCLOAK_URL`), driven through its Admin REST API: realms, clients, users, keys.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Where `tests/run` says Keycloak is.
pub const URL_ENV: &str = "REALMGATE_KEYCLOAK_URL";
/// Set by `tests/run`: a missing or unreachable Keycloak is then a failure, not a skip.
pub const REQUIRE_ENV: &str = "REALMGATE_REQUIRE_KEYCLOAK";

/// An admin session on a running Keycloak.
pub struct Keycloak {
    pub url: String,
    http: reqwest::Client,
    user: String,
    password: String,
}

/// One realm the test created.
pub struct KcRealm {
    pub name: String,
    pub issuer: String,
}

impl Keycloak {
    /// The Keycloak of this test run. `None` (the caller skips, saying so) only when no URL
    /// is set and `REALMGATE_REQUIRE_KEYCLOAK` is not `1`; an unreachable one always panics.
    pub async fn from_env() -> Option<Keycloak> {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
        let url = match std::env::var(URL_ENV) {
            Ok(u) if !u.is_empty() => u.trim_end_matches('/').to_owned(),
            _ if required => panic!(
                "{URL_ENV} is not set but {REQUIRE_ENV}=1: tests/run should have started Keycloak (tests/setup/keycloak.sh start)"
            ),
            _ => {
                eprintln!(
                    "SKIPPED: no Keycloak ({URL_ENV} unset). Run ./tests/run, or start one with \
                     tests/setup/keycloak.sh start and export {URL_ENV}=http://127.0.0.1:18180"
                );
                return None;
            }
        };
        let kc = Keycloak {
            url,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            user: std::env::var("KEYCLOAK_ADMIN_USER").unwrap_or_else(|_| "admin".into()),
            password: std::env::var("KEYCLOAK_ADMIN_PASSWORD")
                .unwrap_or_else(|_| "realmgate-e2e-admin".into()),
        };
        let probe = format!("{}/realms/master/.well-known/openid-configuration", kc.url);
        match kc.http.get(&probe).send().await {
            Ok(r) if r.status() == StatusCode::OK => Some(kc),
            other => panic!("Keycloak at {} is not usable ({probe}: {other:?})", kc.url),
        }
    }

    async fn admin_token(&self) -> String {
        let v = self
            .form(
                "master",
                &[
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", &self.user),
                    ("password", &self.password),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("Keycloak admin login: {e}"));
        v["access_token"].as_str().expect("admin token").to_owned()
    }

    /// POST to a realm's token endpoint: the JSON answer, or the error body.
    pub async fn form(&self, realm: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}/realms/{realm}/protocol/openid-connect/token", self.url);
        let r = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if status == StatusCode::OK {
            Ok(body)
        } else {
            Err(format!("{status}: {body}"))
        }
    }

    /// An admin API call; panics unless it succeeds. Returns the body (JSON, or the
    /// `Location` header's last segment for 201 Created).
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let token = self.admin_token().await;
        let url = format!("{}/admin/realms{path}", self.url);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status();
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| l.rsplit('/').next().unwrap_or("").to_owned());
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        match location {
            Some(id) if status == StatusCode::CREATED => Value::String(id),
            _ => serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A fresh realm named `<prefix>-<random>` (tests run in parallel on one Keycloak).
    pub async fn create_realm(&self, prefix: &str) -> KcRealm {
        let name = format!("{prefix}-{:08x}", fastrand::u32(..));
        self.admin(
            reqwest::Method::POST,
            "",
            Some(json!({"realm": name, "enabled": true, "accessTokenLifespan": 300})),
        )
        .await;
        KcRealm {
            issuer: format!("{}/realms/{name}", self.url),
            name,
        }
    }

    /// A client from its representation; returns its internal id.
    pub async fn create_client(&self, realm: &KcRealm, client: Value) -> String {
        let id = self
            .admin(
                reqwest::Method::POST,
                &format!("/{}/clients", realm.name),
                Some(client),
            )
            .await;
        id.as_str().expect("client id").to_owned()
    }

    /// A public client that allows the password grant (for API tests).
    pub async fn create_password_client(&self, realm: &KcRealm, client_id: &str) -> String {
        self.create_client(
            realm,
            json!({"clientId": client_id, "publicClient": true, "directAccessGrantsEnabled": true,
                   "standardFlowEnabled": false}),
        )
        .await
    }

    /// A user with a non-temporary password and a complete profile (no required actions);
    /// returns the user id (the tokens' `sub`).
    pub async fn create_user(&self, realm: &KcRealm, username: &str, password: &str) -> String {
        let id = self
            .admin(
                reqwest::Method::POST,
                &format!("/{}/users", realm.name),
                Some(json!({
                    "username": username, "enabled": true, "emailVerified": true,
                    "email": format!("{username}@example.test"),
                    "firstName": username, "lastName": "Test",
                    "credentials": [{"type": "password", "value": password, "temporary": false}]
                })),
            )
            .await;
        id.as_str().expect("user id").to_owned()
    }

    /// A real access token by the password grant.
    pub async fn password_token(
        &self,
        realm: &KcRealm,
        client_id: &str,
        user: &str,
        password: &str,
    ) -> String {
        let v = self
            .form(
                &realm.name,
                &[
                    ("grant_type", "password"),
                    ("client_id", client_id),
                    ("username", user),
                    ("password", password),
                    ("scope", "openid"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("password grant in {}: {e}", realm.name));
        v["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Rotate the realm's RSA signing key: a new active `rsa-generated` provider with a
    /// higher priority, then the old one removed. Returns nothing; tokens issued from now on
    /// carry the new `kid`.
    pub async fn rotate_rsa_key(&self, realm: &KcRealm) {
        let rep = self
            .admin(reqwest::Method::GET, &format!("/{}", realm.name), None)
            .await;
        let realm_id = rep["id"].as_str().expect("realm id").to_owned();
        let components = self
            .admin(
                reqwest::Method::GET,
                &format!(
                    "/{}/components?type=org.keycloak.keys.KeyProvider",
                    realm.name
                ),
                None,
            )
            .await;
        let old: Vec<String> = components
            .as_array()
            .expect("components")
            .iter()
            .filter(|c| c["providerId"] == "rsa-generated")
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect();
        assert!(!old.is_empty(), "no rsa-generated key in {components}");
        self.admin(
            reqwest::Method::POST,
            &format!("/{}/components", realm.name),
            Some(json!({
                "name": "rsa-rotated", "providerId": "rsa-generated",
                "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
                "config": {"priority": ["500"], "enabled": ["true"], "active": ["true"],
                           "keySize": ["2048"], "algorithm": ["RS256"]}
            })),
        )
        .await;
        for id in old {
            self.admin(
                reqwest::Method::DELETE,
                &format!("/{}/components/{id}", realm.name),
                None,
            )
            .await;
        }
    }

    /// The `kid` in a token's header.
    pub fn kid(token: &str) -> String {
        use base64::Engine;
        let header = token.split('.').next().unwrap_or("");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("header base64");
        let v: Value = serde_json::from_slice(&bytes).expect("header json");
        v["kid"].as_str().unwrap_or("").to_owned()
    }
}

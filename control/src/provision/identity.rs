//! Provisioning step 1, identity (`keycloak`): realm `<id>`, the gateway's login client
//! (standard flow, PKCE S256, redirect URIs per host), an admin service-account client, the
//! realm role `user`, and a first admin user with a temporary password returned once.

use super::keycloak::Keycloak;
use super::secrets::random_password;
use super::{digest_of, Outputs, Step, StepError, StepKind, TenantInput};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What the identity step made that anyone may read (journaled as JSON): the one contract
/// between the step, the table compiler, the credentials claim and the provisioning view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityPublic {
    pub realm: String,
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub login_client_id: String,
    pub admin_client_id: String,
    /// The audiences tokens of the realm carry (the login and admin clients).
    #[serde(default)]
    pub audiences: Vec<String>,
    pub admin_username: String,
    /// The first admin's credentials were handed out: the step forgets them.
    #[serde(default)]
    pub credentials_claimed: bool,
}

/// What the identity step made that is sealed before it is stored.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
}

impl std::fmt::Debug for IdentitySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has = |s: &Option<String>| s.as_ref().map(|_| "<sealed>");
        f.debug_struct("IdentitySecrets")
            .field("login_client_secret", &has(&self.login_client_secret))
            .field("admin_client_secret", &has(&self.admin_client_secret))
            .field("admin_password", &has(&self.admin_password))
            .finish()
    }
}

impl IdentityPublic {
    /// Read a journaled step's public outputs; `None` when they are not the identity
    /// step's (another provider, or an older journal without an issuer).
    pub fn from_outputs(public: &Map<String, Value>) -> Option<IdentityPublic> {
        serde_json::from_value(Value::Object(public.clone())).ok()
    }

    pub fn to_outputs(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

impl IdentitySecrets {
    /// Read opened secrets; unknown or missing fields are simply absent.
    pub fn from_outputs(secrets: &Map<String, Value>) -> IdentitySecrets {
        serde_json::from_value(Value::Object(secrets.clone())).unwrap_or_default()
    }

    pub fn to_outputs(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// The issuer base gateways and browsers use (`{public_url}/realms/<id>`).
    pub public_url: String,
    /// `http` or `https`, and the port browsers use for tenant hosts (none for 80/443).
    pub redirect_scheme: String,
    pub redirect_port: Option<u16>,
    /// The gateway's login callback path on each tenant host.
    pub callback_path: String,
    pub login_client_id: String,
    pub admin_client_id: String,
    pub admin_username: String,
    /// On tenant deletion: delete the realm (`true`) or only disable it.
    pub delete_realm: bool,
}

pub struct Identity {
    kc: std::sync::Arc<Keycloak>,
    s: IdentitySettings,
}

impl Identity {
    pub fn new(kc: std::sync::Arc<Keycloak>, s: IdentitySettings) -> Identity {
        Identity { kc, s }
    }

    /// `scheme://host[:port]` for each exact host; Keycloak cannot match wildcard hosts in
    /// redirect URIs, so `*.` hosts get none.
    fn origins(&self, t: &TenantInput) -> Vec<String> {
        let port = self
            .s
            .redirect_port
            .map_or(String::new(), |p| format!(":{p}"));
        t.hosts
            .iter()
            .filter(|h| !h.starts_with("*."))
            .map(|h| format!("{}://{h}{port}", self.s.redirect_scheme))
            .collect()
    }

    fn login_client(&self, t: &TenantInput) -> Value {
        let origins = self.origins(t);
        let redirects: Vec<String> = origins
            .iter()
            .map(|o| format!("{o}{}", self.s.callback_path))
            .collect();
        let post_logout: Vec<String> = origins.iter().map(|o| format!("{o}/*")).collect();
        json!({
            "clientId": self.s.login_client_id, "name": "Realmgate login", "enabled": true,
            "protocol": "openid-connect", "publicClient": false,
            "clientAuthenticatorType": "client-secret",
            "standardFlowEnabled": true, "implicitFlowEnabled": false,
            "directAccessGrantsEnabled": false, "serviceAccountsEnabled": false,
            "redirectUris": redirects, "webOrigins": origins,
            "attributes": {
                "pkce.code.challenge.method": "S256",
                "post.logout.redirect.uris": post_logout.join("##"),
            },
        })
    }

    fn admin_client(&self) -> Value {
        json!({
            "clientId": self.s.admin_client_id, "name": "Tenant API (service account)",
            "enabled": true, "protocol": "openid-connect", "publicClient": false,
            "clientAuthenticatorType": "client-secret", "serviceAccountsEnabled": true,
            "standardFlowEnabled": false, "implicitFlowEnabled": false,
            "directAccessGrantsEnabled": false,
        })
    }

    /// Create the client, or update it where it differs from `want`; returns its id.
    async fn ensure_client(&self, realm: &str, want: &Value) -> Result<String, StepError> {
        let client_id = want["clientId"].as_str().unwrap_or_default();
        match self.kc.client_uuid(realm, client_id).await? {
            None => {
                self.kc
                    .send_ok(Method::POST, &format!("/{realm}/clients"), Some(want), true)
                    .await?;
            }
            Some((uuid, have)) => {
                if !covers(&have, want) {
                    let mut merged = have.clone();
                    merge(&mut merged, want);
                    self.kc
                        .send_ok(
                            Method::PUT,
                            &format!("/{realm}/clients/{uuid}"),
                            Some(&merged),
                            false,
                        )
                        .await?;
                    log::info!("realm {realm}: client {client_id} updated");
                }
                return Ok(uuid);
            }
        }
        self.kc
            .client_uuid(realm, client_id)
            .await?
            .map(|(u, _)| u)
            .ok_or_else(|| StepError::new(format!("client {client_id} missing after creation")))
    }

    async fn client_secret(&self, realm: &str, uuid: &str) -> Result<String, StepError> {
        let v = self
            .kc
            .get_opt(&format!("/{realm}/clients/{uuid}/client-secret"))
            .await?
            .unwrap_or(Value::Null);
        v["value"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| StepError::new(format!("realm {realm}: client has no secret")))
    }

    /// The first admin: created with a temporary password, or — when realmctl does not hold
    /// its password (it died between creating the user and journaling it) and it was never
    /// handed out — given a new temporary one. Returns the password realmctl now holds.
    async fn ensure_admin(
        &self,
        realm: &str,
        previous: &Outputs,
    ) -> Result<Option<String>, StepError> {
        let user = &self.s.admin_username;
        let query = format!(
            "/{realm}/users?exact=true&username={}",
            crate::percent::encode(user)
        );
        let found = |v: Option<Value>| {
            v.and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|u| u["username"] == user.as_str())
                    .and_then(|u| u["id"].as_str().map(str::to_owned))
            })
        };
        let claimed =
            IdentityPublic::from_outputs(&previous.public).is_some_and(|p| p.credentials_claimed);
        let held = IdentitySecrets::from_outputs(&previous.secrets).admin_password;
        let (id, password) = match found(self.kc.get_opt(&query).await?) {
            None => {
                let password = random_password(20);
                let rep = json!({
                    "username": user, "enabled": true, "emailVerified": false,
                    "firstName": "Admin", "lastName": realm,
                    "credentials": [{"type": "password", "value": password, "temporary": true}],
                });
                self.kc
                    .send_ok(Method::POST, &format!("/{realm}/users"), Some(&rep), true)
                    .await?;
                let id = found(self.kc.get_opt(&query).await?)
                    .ok_or_else(|| StepError::new("admin user missing after creation"))?;
                (id, Some(password))
            }
            Some(id) if held.is_some() || claimed => (id, held),
            Some(id) => {
                let password = random_password(20);
                let cred = json!({"type": "password", "value": password, "temporary": true});
                self.kc
                    .send_ok(
                        Method::PUT,
                        &format!("/{realm}/users/{id}/reset-password"),
                        Some(&cred),
                        false,
                    )
                    .await?;
                (id, Some(password))
            }
        };
        self.kc
            .ensure_role_mapping(realm, &id, None, "user")
            .await?;
        self.kc
            .ensure_role_mapping(realm, &id, Some("realm-management"), "realm-admin")
            .await?;
        Ok(password)
    }
}

/// Whether `have` already carries every field of `want` (arrays as sets, objects as
/// subsets): Keycloak adds defaults of its own, which are not ours to judge.
fn covers(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| covers(hv, wv))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && w.iter().all(|x| h.contains(x)),
        (h, w) => h == w,
    }
}

fn merge(into: &mut Value, want: &Value) {
    match (into, want) {
        (Value::Object(i), Value::Object(w)) => {
            for (k, v) in w {
                match i.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        i.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, w) => *slot = w.clone(),
    }
}

#[async_trait::async_trait]
impl Step for Identity {
    fn kind(&self) -> StepKind {
        StepKind::Identity
    }

    fn provider(&self) -> &'static str {
        "keycloak"
    }

    fn input_digest(&self, t: &TenantInput) -> String {
        let login = self.login_client(t).to_string();
        digest_of([
            self.kc.base(),
            self.s.public_url.as_str(),
            t.display_name.as_str(),
            login.as_str(),
            self.s.admin_client_id.as_str(),
            self.s.admin_username.as_str(),
        ])
    }

    async fn ensure(&self, t: &TenantInput, previous: &Outputs) -> Result<Outputs, StepError> {
        let realm = t.id.as_str();
        let want_realm = json!({
            "realm": realm, "enabled": true, "displayName": t.display_name,
            "registrationAllowed": false, "loginWithEmailAllowed": true,
            "resetPasswordAllowed": false, "bruteForceProtected": true,
        });
        match self.kc.get_opt(&format!("/{realm}")).await? {
            None => {
                self.kc
                    .send_ok(Method::POST, "", Some(&want_realm), true)
                    .await?;
                self.kc.forget_token().await;
                log::info!("realm {realm} created");
            }
            Some(have) => {
                let patch = json!({"enabled": true, "displayName": t.display_name});
                if !covers(&have, &patch) {
                    self.kc
                        .send_ok(Method::PUT, &format!("/{realm}"), Some(&patch), false)
                        .await?;
                }
            }
        }
        if self
            .kc
            .get_opt(&format!("/{realm}/roles/user"))
            .await?
            .is_none()
        {
            let role = json!({"name": "user", "description": "A user of the tenant's apps"});
            self.kc
                .send_ok(Method::POST, &format!("/{realm}/roles"), Some(&role), true)
                .await?;
        }
        let login = self.ensure_client(realm, &self.login_client(t)).await?;
        let login_secret = self.client_secret(realm, &login).await?;
        let api = self.ensure_client(realm, &self.admin_client()).await?;
        let api_secret = self.client_secret(realm, &api).await?;
        let sa = self
            .kc
            .get_opt(&format!("/{realm}/clients/{api}/service-account-user"))
            .await?
            .unwrap_or(Value::Null);
        if let Some(sa_id) = sa["id"].as_str() {
            self.kc
                .ensure_role_mapping(realm, sa_id, Some("realm-management"), "realm-admin")
                .await?;
        }
        let password = self.ensure_admin(realm, previous).await?;
        let issuer = format!("{}/realms/{realm}", self.s.public_url.trim_end_matches('/'));
        let claimed =
            IdentityPublic::from_outputs(&previous.public).is_some_and(|p| p.credentials_claimed);
        let public = IdentityPublic {
            realm: realm.to_owned(),
            jwks_uri: Some(format!("{issuer}/protocol/openid-connect/certs")),
            issuer,
            login_client_id: self.s.login_client_id.clone(),
            admin_client_id: self.s.admin_client_id.clone(),
            audiences: vec![
                self.s.login_client_id.clone(),
                self.s.admin_client_id.clone(),
            ],
            admin_username: self.s.admin_username.clone(),
            credentials_claimed: claimed,
        };
        // Once claimed, the first admin's credentials are forgotten.
        let secrets = IdentitySecrets {
            login_client_secret: Some(login_secret),
            admin_client_secret: (!claimed).then_some(api_secret),
            admin_password: if claimed { None } else { password },
        };
        let (public, secrets) = (public.to_outputs(), secrets.to_outputs());
        Ok(Outputs { public, secrets })
    }

    async fn remove(&self, t: &TenantInput, _previous: &Outputs) -> Result<(), StepError> {
        let realm = t.id.as_str();
        let path = format!("/{realm}");
        if self.s.delete_realm {
            match self.kc.call(Method::DELETE, &path, None).await? {
                (s, _) if s.is_success() || s == reqwest::StatusCode::NOT_FOUND => Ok(()),
                (s, v) => Err(StepError::new(format!(
                    "Keycloak DELETE realm {realm}: {s} {}",
                    v["errorMessage"].as_str().unwrap_or("")
                ))),
            }
        } else {
            match self.kc.get_opt(&path).await? {
                Some(r) if r["enabled"] != false => {
                    self.kc
                        .send_ok(Method::PUT, &path, Some(&json!({"enabled": false})), false)
                        .await
                }
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> IdentityPublic {
        IdentityPublic {
            realm: "acme".into(),
            issuer: "http://kc.test/realms/acme".into(),
            jwks_uri: Some("http://kc.test/realms/acme/protocol/openid-connect/certs".into()),
            login_client_id: "realmgate".into(),
            admin_client_id: "tenant-admin".into(),
            audiences: vec!["realmgate".into(), "tenant-admin".into()],
            admin_username: "admin".into(),
            credentials_claimed: false,
        }
    }

    /// The typed outputs are the journal's JSON, field for field: what older journals hold
    /// reads back, and what is written is what the compiler and the claim read.
    #[test]
    fn outputs_round_trip_through_the_journal_shape() {
        let p = public();
        let map = p.to_outputs();
        assert_eq!(map["issuer"], "http://kc.test/realms/acme");
        assert_eq!(map["audiences"], json!(["realmgate", "tenant-admin"]));
        assert_eq!(IdentityPublic::from_outputs(&map), Some(p.clone()));
        // A journal written before the types (no credentials_claimed yet) still reads.
        let mut old = map.clone();
        old.remove("credentials_claimed");
        assert_eq!(IdentityPublic::from_outputs(&old), Some(p));
        // Not the identity step's outputs: none.
        assert_eq!(IdentityPublic::from_outputs(&Map::new()), None);
        let s = IdentitySecrets {
            login_client_secret: Some("l".into()),
            admin_client_secret: None,
            admin_password: Some("p".into()),
        };
        let m = s.to_outputs();
        assert_eq!(m.len(), 2, "absent secrets are not stored: {:?}", m.keys());
        assert_eq!(IdentitySecrets::from_outputs(&m), s);
        let shown = format!("{s:?}");
        assert!(shown.contains("<sealed>"), "{shown}");
        assert!(
            !shown.contains("\"l\"") && !shown.contains("\"p\""),
            "secrets never in Debug: {shown}"
        );
    }

    #[test]
    fn covers_is_a_subset_check() {
        let have = json!({"a": 1, "b": [1, 2], "c": {"x": "1", "y": "2"}, "d": true});
        assert!(covers(
            &have,
            &json!({"a": 1, "b": [2, 1], "c": {"x": "1"}})
        ));
        assert!(!covers(&have, &json!({"b": [1]})));
        assert!(!covers(&have, &json!({"c": {"x": "2"}})));
        assert!(!covers(&have, &json!({"e": 1})));
        let mut m = have.clone();
        merge(&mut m, &json!({"c": {"x": "9"}, "e": 1}));
        assert_eq!(m["c"], json!({"x": "9", "y": "2"}));
        assert_eq!(m["e"], 1);
    }
}

//! The console's OIDC client against the operators' realm: discovery (its `issuer` must be
//! the configured one), the authorization URL (code flow, PKCE S256, state, nonce), the code
//! exchange, and the ID token's verification (signature by the realm's JWKS, iss, aud, exp,
//! nonce). Built on jsonwebtoken (rust_crypto backend) and reqwest, like the gateway's login.

use super::config::OidcSettings;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// A discovery document and keys are used this long before they are fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Unknown `kid`: the keys are fetched again at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// Signature algorithms accepted (asymmetric only: `none` and HMAC never).
const ALLOWED: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];
const MAX_NAME_CHARS: usize = 128;

/// The realm's endpoints and signing keys.
pub struct Provider {
    pub authorization: Url,
    pub token: Url,
    pub end_session: Option<Url>,
    jwks_uri: Url,
    keys: JwkSet,
    fetched: Instant,
}

/// Who signed in, from a verified ID token.
#[derive(Debug)]
pub struct Identity {
    pub subject: String,
    pub name: String,
    pub roles: Vec<String>,
}

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    provider: tokio::sync::Mutex<Option<Arc<Provider>>>,
}

#[derive(Deserialize)]
struct DiscoveryDoc {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
}

fn endpoint(key: &str, raw: &str) -> Result<Url, String> {
    Url::parse(raw).map_err(|e| format!("the realm's {key} {raw:?} is not a URL: {e}"))
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Oidc {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Oidc {
            settings,
            http,
            provider: tokio::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The realm's endpoints and keys: fetched on first use, again after an hour, or (keys
    /// only) when `refetch_keys` and the last fetch is older than [`REFETCH_EVERY`].
    pub async fn provider(&self, refetch_keys: bool) -> Result<Arc<Provider>, String> {
        let mut slot = self.provider.lock().await;
        if let Some(p) = slot.as_ref() {
            let age = p.fetched.elapsed();
            if age < DISCOVERY_TTL && !(refetch_keys && age >= REFETCH_EVERY) {
                return Ok(Arc::clone(p));
            }
        }
        let p = Arc::new(self.fetch().await?);
        *slot = Some(Arc::clone(&p));
        Ok(p)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", crate::error_text::root_cause(&e)))?;
        if !r.status().is_success() {
            return Err(format!("{url}: {}", r.status()));
        }
        r.json().await.map_err(|e| format!("{url}: {e}"))
    }

    async fn fetch(&self) -> Result<Provider, String> {
        let issuer = &self.settings.issuer;
        let doc: DiscoveryDoc = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        if doc.issuer != *issuer {
            return Err(format!(
                "the realm calls itself {:?}, not the configured operators.oidc.issuer_url {issuer:?}",
                doc.issuer
            ));
        }
        let jwks_uri = endpoint("jwks_uri", &doc.jwks_uri)?;
        let keys: JwkSet = self.get_json(jwks_uri.as_str()).await?;
        Ok(Provider {
            authorization: endpoint("authorization_endpoint", &doc.authorization_endpoint)?,
            token: endpoint("token_endpoint", &doc.token_endpoint)?,
            end_session: match doc.end_session_endpoint {
                Some(e) => Some(endpoint("end_session_endpoint", &e)?),
                None => None,
            },
            jwks_uri,
            keys,
            fetched: Instant::now(),
        })
    }

    /// Where the browser is sent to sign in.
    pub fn authorization_url(&self, p: &Provider, state: &str, nonce: &str, verifier: &str) -> Url {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = p.authorization.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", self.settings.redirect_url.as_str())
            .append_pair("scope", "openid profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// RP-initiated logout at the realm, back to the console afterwards.
    pub fn end_session_url(&self, p: &Provider, id_token: &str) -> Option<Url> {
        let mut url = p.end_session.clone()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &self.settings.client_id)
            .append_pair(
                "post_logout_redirect_uri",
                &format!("{}/", self.settings.origin),
            );
        Some(url)
    }

    /// Exchange the code (with the PKCE verifier) for tokens; returns the ID token.
    pub async fn exchange(
        &self,
        p: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<String, String> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_url.as_str()),
            ("client_id", self.settings.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret));
        }
        let r = self
            .http
            .post(p.token.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("token endpoint: {}", crate::error_text::root_cause(&e)))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            // The realm's error code and description: never the code or secrets sent.
            return Err(format!(
                "token endpoint answered {status}: {} {}",
                body["error"].as_str().unwrap_or(""),
                body["error_description"].as_str().unwrap_or("")
            ));
        }
        body["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "the token endpoint returned no id_token".into())
    }

    /// Verify an ID token: signature by a key of the realm's JWKS (fetched again once on an
    /// unknown `kid`), `iss`, `aud` (and `azp`), `exp`, and the sign-in's `nonce`.
    pub async fn verify(
        &self,
        p: Arc<Provider>,
        token: &str,
        nonce: &str,
    ) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("ID token: {e}"))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(format!(
                "ID token signed with {:?}, not allowed",
                header.alg
            ));
        }
        let mut provider = p;
        let key = match find_key(&provider, header.kid.as_deref()) {
            Some(k) => k,
            None => {
                provider = self.provider(true).await?;
                find_key(&provider, header.kid.as_deref())
                    .ok_or("ID token signed by a key the realm does not publish")?
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| format!("ID token refused: {e}"))?
            .claims;
        check_claims(&claims, nonce, &self.settings)
    }

    /// Where keys come from (for the log).
    pub fn describe(p: &Provider) -> &str {
        p.jwks_uri.as_str()
    }
}

fn find_key(p: &Provider, kid: Option<&str>) -> Option<DecodingKey> {
    let signing = |j: &&jsonwebtoken::jwk::Jwk| {
        !matches!(j.common.public_key_use, Some(PublicKeyUse::Encryption))
    };
    let jwk = match kid {
        Some(kid) => p.keys.find(kid).filter(signing)?,
        None => {
            let mut sig = p.keys.keys.iter().filter(signing);
            let only = sig.next()?;
            if sig.next().is_some() {
                return None;
            }
            only
        }
    };
    DecodingKey::from_jwk(jwk).ok()
}

/// The claims jsonwebtoken does not check: nonce, azp, and the identity.
fn check_claims(c: &Value, nonce: &str, s: &OidcSettings) -> Result<Identity, String> {
    if c["nonce"].as_str() != Some(nonce) {
        return Err("ID token refused: its nonce is not this sign-in's".into());
    }
    if let Some(azp) = c.get("azp") {
        if azp.as_str() != Some(s.client_id.as_str()) {
            return Err("ID token refused: issued to another client (azp)".into());
        }
    }
    let subject = c["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("ID token without sub")?
        .to_owned();
    let name: String = ["preferred_username", "name", "email"]
        .iter()
        .find_map(|k| c[*k].as_str().filter(|v| !v.trim().is_empty()))
        .unwrap_or(&subject)
        .chars()
        .filter(|ch| !ch.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let mut at = c;
    for part in &s.roles_claim {
        at = &at[part.as_str()];
    }
    let roles = at
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Identity {
        subject,
        name,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(claim: &str) -> OidcSettings {
        OidcSettings {
            issuer: "https://sso.example.com/realms/ops".into(),
            client_id: "console".into(),
            client_secret: None,
            redirect_url: Url::parse("https://rc.example.com/auth/callback").expect("url"),
            origin: "https://rc.example.com".into(),
            roles_claim: claim.split('.').map(str::to_owned).collect(),
            sessions: Default::default(),
        }
    }

    #[test]
    fn nonce_azp_name_and_roles() {
        let s = settings("realm_access.roles");
        let c = json!({"sub": "u1", "nonce": "n", "azp": "console", "preferred_username": "alice\u{7}",
                       "realm_access": {"roles": ["admin", 3, "x"]}});
        let id = check_claims(&c, "n", &s).expect("valid");
        assert_eq!((id.subject.as_str(), id.name.as_str()), ("u1", "alice"));
        assert_eq!(id.roles, ["admin", "x"]);
        assert!(check_claims(&c, "other", &s)
            .expect_err("nonce")
            .contains("nonce"));
        let c2 = json!({"sub": "u1", "nonce": "n", "azp": "evil"});
        assert!(check_claims(&c2, "n", &s).expect_err("azp").contains("azp"));
        let c3 = json!({"nonce": "n"});
        assert!(check_claims(&c3, "n", &s).is_err());
        let c4 = json!({"sub": "u1", "nonce": "n"});
        let id = check_claims(&c4, "n", &settings("roles")).expect("valid");
        assert_eq!(id.name, "u1");
        assert!(id.roles.is_empty());
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_nonce() {
        let o = Oidc::new(settings("roles"));
        let p = Provider {
            authorization: Url::parse("https://sso.example.com/auth").expect("url"),
            token: Url::parse("https://sso.example.com/token").expect("url"),
            end_session: None,
            jwks_uri: Url::parse("https://sso.example.com/certs").expect("url"),
            keys: JwkSet { keys: vec![] },
            fetched: Instant::now(),
        };
        let url = o.authorization_url(&p, "st", "no", "verifier");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(
            q["code_challenge"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"verifier"))
        );
        assert_eq!((q["state"].as_str(), q["nonce"].as_str()), ("st", "no"));
        assert_eq!(q["redirect_uri"], "https://rc.example.com/auth/callback");
        assert!(o.end_session_url(&p, "t").is_none());
        assert!(find_key(&p, Some("k")).is_none() && find_key(&p, None).is_none());
    }
}

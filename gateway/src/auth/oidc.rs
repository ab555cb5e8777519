//! The gateway's browser login against a tenant's realm: OIDC discovery, the
//! authorization-code flow with PKCE (S256), state and nonce, the token endpoint (code
//! exchange and refresh) and RP-initiated logout.

use super::error::AuthError;
use super::jwks::{read_bounded, unix_ms};
use super::AuthConfig;
use arc_swap::ArcSwapOption;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const MAX_DOC_BYTES: usize = 256 << 10;

/// The endpoints of a realm, from `<issuer>/.well-known/openid-configuration`.
#[derive(Debug)]
pub struct Endpoints {
    pub authorization: Url,
    pub token: Url,
    pub end_session: Option<Url>,
}

/// A realm's discovery state: fetched on first use, single-flight, refreshed hourly; the last
/// good document stays in use while the realm is unreachable.
#[derive(Default)]
pub struct Discovery {
    endpoints: ArcSwapOption<Endpoints>,
    fresh_until: AtomicU64,
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Discovery {
    /// Discovery already done (tests of the login flow without a realm to ask).
    #[cfg(test)]
    pub fn preset(&self, endpoints: Endpoints) {
        self.endpoints.store(Some(Arc::new(endpoints)));
        self.fresh_until.store(u64::MAX, Ordering::Relaxed);
    }

    pub async fn get(
        &self,
        issuer: &str,
        http: &reqwest::Client,
        config: &AuthConfig,
    ) -> Result<Arc<Endpoints>, AuthError> {
        let current = self.endpoints.load_full();
        if let Some(e) = &current {
            if unix_ms() < self.fresh_until.load(Ordering::Relaxed) {
                return Ok(Arc::clone(e));
            }
        }
        let mut last = self.fetch.lock().await;
        if let Some(e) = self.endpoints.load_full() {
            if unix_ms() < self.fresh_until.load(Ordering::Relaxed) {
                return Ok(e);
            }
        }
        let retry = if current.is_some() {
            config.jwks_refetch_interval
        } else {
            Duration::from_secs(1)
        };
        if !last.is_some_and(|t| t.elapsed() < retry) {
            *last = Some(Instant::now());
            match fetch_discovery(issuer, http, config).await {
                Ok(e) => {
                    self.endpoints.store(Some(Arc::new(e)));
                    self.fresh_until.store(
                        unix_ms() + DISCOVERY_TTL.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                }
                Err(e) => log::warn!("discovery for {issuer}: {e}"),
            }
        }
        self.endpoints
            .load_full()
            .ok_or(AuthError::RealmUnavailable)
    }
}

async fn fetch_discovery(
    issuer: &str,
    http: &reqwest::Client,
    config: &AuthConfig,
) -> Result<Endpoints, String> {
    #[derive(Deserialize)]
    struct Doc {
        issuer: String,
        authorization_endpoint: String,
        token_endpoint: String,
        #[serde(default)]
        end_session_endpoint: Option<String>,
    }
    let url = format!("{issuer}/.well-known/openid-configuration");
    let resp = http
        .get(&url)
        .timeout(config.realm_timeout)
        .send()
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let body = read_bounded(resp, MAX_DOC_BYTES).await?;
    let doc: Doc = serde_json::from_slice(&body).map_err(|e| format!("document: {e}"))?;
    if doc.issuer != issuer {
        return Err(format!(
            "document names issuer {:?}, the table says {issuer:?}",
            doc.issuer
        ));
    }
    let parse = |s: &str| Url::parse(s).map_err(|e| format!("{s:?}: {e}"));
    Ok(Endpoints {
        authorization: parse(&doc.authorization_endpoint)?,
        token: parse(&doc.token_endpoint)?,
        end_session: doc.end_session_endpoint.as_deref().map(parse).transpose()?,
    })
}

/// The authorization URL for a new login (PKCE S256 challenge of `verifier`).
pub fn authorization_url(
    endpoints: &Endpoints,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    verifier: &str,
) -> Url {
    use sha2::{Digest, Sha256};
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        Sha256::digest(verifier.as_bytes()),
    );
    let mut url = endpoints.authorization.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid")
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    url
}

/// The end-session URL: back to `post_logout` afterwards, with the ID token as hint when the
/// session still has it.
pub fn end_session_url(
    endpoints: &Endpoints,
    client_id: &str,
    id_token: Option<&str>,
    post_logout: &str,
) -> Option<Url> {
    let mut url = endpoints.end_session.clone()?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(hint) = id_token {
            q.append_pair("id_token_hint", hint);
        }
        q.append_pair("client_id", client_id)
            .append_pair("post_logout_redirect_uri", post_logout);
    }
    Some(url)
}

/// A token endpoint answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_expires_in: Option<u64>,
}

/// The realm's login client, as the token endpoint needs it.
#[derive(Clone, Copy)]
pub struct LoginClient<'a> {
    pub id: Option<&'a str>,
    pub secret: Option<&'a str>,
}

/// Exchange an authorization code (with the PKCE verifier) for tokens.
pub async fn exchange_code(
    client: LoginClient<'_>,
    endpoints: &Endpoints,
    http: &reqwest::Client,
    config: &AuthConfig,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<TokenResponse, String> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    token_request(client, endpoints, http, config, &form).await
}

/// Use a refresh token.
pub async fn refresh(
    client: LoginClient<'_>,
    endpoints: &Endpoints,
    http: &reqwest::Client,
    config: &AuthConfig,
    refresh_token: &str,
) -> Result<TokenResponse, String> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    token_request(client, endpoints, http, config, &form).await
}

async fn token_request(
    client: LoginClient<'_>,
    endpoints: &Endpoints,
    http: &reqwest::Client,
    config: &AuthConfig,
    form: &[(&str, &str)],
) -> Result<TokenResponse, String> {
    let client_id = client.id.ok_or("no login client")?;
    // The serializer is not Send: build the body before any await.
    let body = {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(form.iter().copied());
        body.append_pair("client_id", client_id);
        // client_secret_post: Keycloak accepts it for confidential clients, and it avoids
        // the encoding pitfalls of HTTP Basic for secrets.
        if let Some(secret) = client.secret {
            body.append_pair("client_secret", secret);
        }
        body.finish()
    };
    let resp = http
        .post(endpoints.token.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .timeout(config.realm_timeout)
        .send()
        .await
        .map_err(|e| format!("token endpoint: {e}"))?;
    let status = resp.status();
    let body = read_bounded(resp, MAX_DOC_BYTES).await?;
    if status != reqwest::StatusCode::OK {
        // The error code is safe to log; the body never echoes our credentials back.
        #[derive(Deserialize)]
        struct Err {
            error: Option<String>,
        }
        let code = serde_json::from_slice::<Err>(&body)
            .ok()
            .and_then(|e| e.error)
            .unwrap_or_default();
        return Err(format!("token endpoint answered {status} {code}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("token response: {e}"))
}

/// `scheme://host[:port]` of the request as the browser addressed it: the request's scheme
/// (`https`: see `crate::request::scheme::Scheme`), the normalised host, and the port the
/// Host header names — omitted when it is the scheme's default (80 for http, 443 for https),
/// as a browser serialises the origin.
pub fn origin(raw_host: &[u8], host: &str, https: bool) -> String {
    let (scheme, default_port) = if https {
        ("https", "443")
    } else {
        ("http", "80")
    };
    let port = match raw_host.iter().rposition(|&b| b == b':') {
        Some(i) if !raw_host[i..].contains(&b']') => std::str::from_utf8(&raw_host[i + 1..])
            .ok()
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        _ => None,
    }
    .filter(|p| p.trim_start_matches('0') != default_port);
    match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

/// Where to go after login: the request's own path and query, if it is a plain local path.
pub fn safe_return_to(target: &str) -> &str {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.len() <= 2048
        && target.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        target
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_keep_the_port_the_browser_used() {
        assert_eq!(
            origin(b"ACME.test:8080", "acme.test", false),
            "http://acme.test:8080"
        );
        assert_eq!(origin(b"acme.test", "acme.test", true), "https://acme.test");
        assert_eq!(origin(b"[::1]", "[::1]", false), "http://[::1]");
        assert_eq!(origin(b"[::1]:8443", "[::1]", true), "https://[::1]:8443");
    }

    /// The login redirect URI a realm registers is `https://host/.realmgate/callback`: the
    /// scheme's default port never appears, another port the client used always does.
    #[test]
    fn origins_omit_the_default_port_of_the_scheme() {
        // (Host as sent, https, origin)
        let cases = [
            ("acme.test:443", true, "https://acme.test"),
            ("acme.test:0443", true, "https://acme.test"),
            ("acme.test:80", false, "http://acme.test"),
            ("acme.test:80", true, "https://acme.test:80"),
            ("acme.test:443", false, "http://acme.test:443"),
            ("acme.test:8443", true, "https://acme.test:8443"),
            ("acme.test", true, "https://acme.test"),
            ("acme.test", false, "http://acme.test"),
            ("acme.test:", true, "https://acme.test"),
        ];
        for (raw, https, want) in cases {
            assert_eq!(
                origin(raw.as_bytes(), "acme.test", https),
                want,
                "{raw} {https}"
            );
        }
    }

    #[test]
    fn return_to_is_local() {
        assert_eq!(safe_return_to("/app/x?y=1"), "/app/x?y=1");
        for bad in ["//evil.test/", "https://evil.test/", "/\\evil", "/a b", ""] {
            assert_eq!(safe_return_to(bad), "/", "{bad}");
        }
    }

    #[test]
    fn authorization_url_carries_pkce_state_and_nonce() {
        let e = Endpoints {
            authorization: Url::parse("http://kc/realms/a/protocol/openid-connect/auth")
                .expect("url"),
            token: Url::parse("http://kc/t").expect("url"),
            end_session: None,
        };
        let url = authorization_url(
            &e,
            "rg",
            "http://acme.test/.realmgate/callback",
            "s",
            "n",
            "v",
        );
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        // RFC 7636 appendix B test vector shape: base64url(sha256(verifier)), 43 chars.
        assert_eq!(q["code_challenge"].len(), 43);
        assert_eq!(q["state"], "s");
        assert_eq!(q["nonce"], "n");
        assert_eq!(q["redirect_uri"], "http://acme.test/.realmgate/callback");
        assert!(end_session_url(&e, "rg", None, "http://acme.test/").is_none());
    }
}

//! Access to tenant databases on a remote libsql server (sqld): the server's fleet-wide token
//! (realmctl's own, and operators'), and per-tenant tokens minted for apps — an EdDSA JWT
//! that sqld accepts for exactly one namespace, read-write, for a few minutes.
//!
//! sqld (libsql-server, `src/auth/`) verifies a bearer JWT with the Ed25519 public keys it
//! was started with (`--auth-jwt-key-file`, or a namespace's own `jwt_key`), algorithm EdDSA,
//! `exp` checked when present (jsonwebtoken's default 60 s leeway). Its claims: `p` (the
//! permissions: `rw`/`ro`/`roa`/`rwa`/`ddl` each `{ns: [..], tags: [..]}`) — when `p` is
//! present only `p` counts; else the legacy `id` (one namespace) and `a` (`ro`/`rw`); a token
//! with neither is **full access**. So every token here carries `p` with one namespace under
//! `rw` (DDL on a plain namespace needs `rw` only) and nothing else, and also `id`/`a` for the
//! same namespace, so a server that predates `p` still scopes it. No `aud`: sqld's validator
//! has no audience and would refuse a token that names one.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Shortest and longest app token lifetime (`app_token_ttl_s`).
pub const TTL_RANGE_S: std::ops::RangeInclusive<u64> = 30..=3600;
/// Default app token lifetime: an app asks realmctl again well within it.
pub const DEFAULT_TTL_S: u64 = 300;

/// How realmctl reaches remote tenant databases, and what apps may be given.
#[derive(Clone)]
pub struct RemoteAccess {
    /// `remote.url_template` (checked: `{tenant}` in the host's first label). A recorded URL
    /// that is not this template's for its tenant gets no app token.
    pub url_template: String,
    /// The server's token (`remote.auth_token_file`): realmctl's replicas and operators only,
    /// never an app — it opens every tenant's database.
    pub fleet_token: String,
    /// Per-tenant tokens for apps (`remote.app_token_key_file`); without it an app credential
    /// is refused remote locations.
    pub app_tokens: Option<std::sync::Arc<AppTokens>>,
}

impl std::fmt::Debug for RemoteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAccess")
            .field("url_template", &self.url_template)
            .field("fleet_token", &"<hidden>")
            .field("app_tokens", &self.app_tokens)
            .finish()
    }
}

/// Mints namespace-scoped sqld tokens with the operator's Ed25519 key.
pub struct AppTokens {
    key: EncodingKey,
    ttl_s: u64,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("key", &"<hidden>")
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

/// A minted token and how long it lives (from the moment realmctl minted it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub token: String,
    pub expires_in_s: u64,
}

/// sqld's permission claim: read-write on these namespaces (`p.rw.ns`).
#[derive(Serialize)]
struct Permissions<'a> {
    rw: Namespaces<'a>,
}

#[derive(Serialize)]
struct Namespaces<'a> {
    ns: [&'a str; 1],
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    /// Legacy scope (servers before `p`): this namespace, read-write.
    id: &'a str,
    a: &'static str,
    p: Permissions<'a>,
}

impl AppTokens {
    /// From a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`); tried
    /// once here, so a wrong key is a start-up error and not a failed app request.
    pub fn from_pem(pem: &str, ttl_s: u64) -> Result<AppTokens, String> {
        if !TTL_RANGE_S.contains(&ttl_s) {
            return Err(format!(
                "app_token_ttl_s: {ttl_s} is outside {}..={} seconds",
                TTL_RANGE_S.start(),
                TTL_RANGE_S.end()
            ));
        }
        let der = pkcs8_der(pem)?;
        let tokens = AppTokens {
            key: EncodingKey::from_ed_der(&der),
            ttl_s,
        };
        tokens
            .mint("probe", 0)
            .map_err(|e| format!("not an Ed25519 private key (PKCS#8 PEM): {e}"))?;
        Ok(tokens)
    }

    /// A token for `namespace` alone, read-write, valid from `now_s` (unix seconds) for the
    /// configured lifetime.
    pub fn mint(&self, namespace: &str, now_s: u64) -> Result<AppToken, String> {
        if !valid_namespace(namespace) {
            return Err(format!("{namespace:?} is not a namespace name"));
        }
        let claims = Claims {
            iat: now_s,
            exp: now_s + self.ttl_s,
            id: namespace,
            a: "rw",
            p: Permissions {
                rw: Namespaces { ns: [namespace] },
            },
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)
            .map_err(|e| e.to_string())?;
        Ok(AppToken {
            token,
            expires_in_s: self.ttl_s,
        })
    }
}

/// The DER inside a `-----BEGIN PRIVATE KEY-----` block.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let pem = pem.trim();
    let body = pem
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or("expected one PEM block -----BEGIN PRIVATE KEY----- (PKCS#8, Ed25519)")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("the PEM block is not base64: {e}"))
}

/// sqld's namespace names: what a host label may hold (and never empty).
fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The namespace sqld serves `url` from: the host's first label (sqld's
/// `namespace_from_headers`, which realmctl's own replica relies on, as it sends no
/// `x-namespace`). `None` when the host has no dot (sqld would use its default namespace).
pub fn namespace_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let (first, rest) = host.split_once('.')?;
    (!rest.is_empty() && valid_namespace(first)).then(|| first.to_owned())
}

/// The namespace an app's token for `tenant` may open: the one `template` gives the tenant,
/// and only when `url` is that tenant's URL (a URL recorded under another template, or
/// another tenant's, gets none).
pub fn app_namespace(template: &str, tenant: &str, url: &str) -> Option<String> {
    if check_template(template).is_err() || template.replace("{tenant}", tenant) != url {
        return None;
    }
    namespace_of(url)
}

/// Why `template` cannot hold tenant databases apart, if it cannot: `{tenant}` must land in
/// the host's first label, so each tenant has its own namespace (and its own app tokens).
pub fn check_template(template: &str) -> Result<(), String> {
    let a = namespace_of(&template.replace("{tenant}", "tenant-a"));
    let b = namespace_of(&template.replace("{tenant}", "tenant-b"));
    match (a, b) {
        (Some(a), Some(b)) if a != b && a.contains("tenant-a") => Ok(()),
        _ => Err(format!(
            "{template:?}: {{tenant}} must be in the host's first label (sqld takes the namespace from it), e.g. libsql://{{tenant}}.db.example.com"
        )),
    }
}

/// A throwaway Ed25519 key (`openssl genpkey -algorithm ed25519`) for tests.
#[cfg(test)]
pub(crate) const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIEiIhmYKUSUopX2PkUAUjF5TndB+YNK8IYl3DAuiTbNq
-----END PRIVATE KEY-----
";

#[cfg(test)]
#[path = "database_token_tests.rs"]
mod tests;

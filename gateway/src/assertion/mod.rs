//! The signed identity assertion, on the upstream request after auth: `x-realmgate-assertion`,
//! an ES256 JWT saying which tenant, pool and principal the gateway admitted the request for,
//! and the fleet's public keys at `/.realmgate/jwks.json`.
//!
//! Signing stays off the hot path: an assertion is minted once per (signing key, tenant,
//! pool, policy, principal) and reused while at least [`MIN_REMAINING_S`] of its life
//! remain, from a bounded cache; a request costs one keyed hash of those fields, a lookup
//! and their comparison.
//! A reused assertion keeps its `jti`: it names the minted token, not the request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use realmgate_table::assertion::{self as wire, Assertion, MAX_LIFETIME_S};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub use realmgate_table::assertion::{HEADER, JWKS_PATH};

/// An assertion is reused while at least this much of its life remains.
pub const MIN_REMAINING_S: u64 = 20;
/// How long a minted assertion is reused: its life less the margin apps get.
const REUSE_S: u64 = MAX_LIFETIME_S - MIN_REMAINING_S;
/// `Cache-Control` of the JWKS.
pub const JWKS_CACHE_CONTROL: &str = "max-age=300";

/// The table's assertion section, compiled: the active key ready to sign and the JWKS body.
pub struct Signer {
    issuer: Box<str>,
    key: SigningKey,
    /// `base64url({"alg":"ES256","typ":"JWT","kid":…})`, the same for every token.
    header_b64: Box<str>,
    /// SHA-256 of the issuer and kid: what keeps another key's or issuer's cached
    /// assertions from matching.
    pub(crate) id: [u8; 32],
    /// `{"keys":[…]}` of every key of the section, served as is.
    pub jwks: Bytes,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The section as the table gives it (validated: one active key that parses); `None`
    /// without a section, or, defensively, without a usable active key.
    pub fn compile(a: Option<&Assertion>) -> Option<Arc<Signer>> {
        let a = a?;
        let active = a.active()?;
        let key = wire::signing_key(&active.private_key_pem).ok()?;
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: wire::ALG,
            typ: "JWT",
            kid: &active.kid,
        })
        .ok()?;
        let mut id = Sha256::new();
        push_field(&mut id, a.issuer.as_bytes());
        push_field(&mut id, active.kid.as_bytes());
        let jwks = serde_json::to_vec(&wire::jwks(Some(a))).ok()?;
        Some(Arc::new(Signer {
            issuer: a.issuer.as_str().into(),
            key,
            header_b64: URL_SAFE_NO_PAD.encode(header).into(),
            id: id.finalize().into(),
            jwks: Bytes::from(jwks),
        }))
    }

    /// A fresh token for `s`, issued at `now` (unix seconds).
    pub fn sign(&self, s: &Subject<'_>, now: u64) -> Option<String> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).ok()?;
        let (sub, roles, key_id, namespace) = match &s.principal {
            Principal::Public => (None, None, None, None),
            Principal::Realm { sub, roles, .. } => (Some(*sub), Some(*roles), None, None),
            Principal::ApiKey { key_id, namespace } => (None, None, Some(*key_id), *namespace),
        };
        let claims = Claims {
            iss: &self.issuer,
            aud: s.pool,
            tenant: s.tenant,
            auth: s.principal.auth(),
            sub,
            roles,
            key_id,
            namespace,
            iat: now,
            exp: now + MAX_LIFETIME_S,
            jti: &hex::encode(jti),
        };
        let payload = serde_json::to_vec(&claims).ok()?;
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let sig: Signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), &mut token);
        Some(token)
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    tenant: &'a str,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [Box<str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    iat: u64,
    exp: u64,
    jti: &'a str,
}

/// Which realm policy admitted a realm identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    #[default]
    Jwt,
    Session,
}

/// Who the request was admitted as.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// A `public` route (or one whose credential was absent and that allows `public`).
    Public,
    /// A realm identity, from a bearer token or a session.
    Realm {
        via: Via,
        sub: &'a str,
        roles: &'a [Box<str>],
    },
    /// An API key, for this namespace when the path or route names one.
    ApiKey {
        key_id: &'a str,
        namespace: Option<&'a str>,
    },
}

impl Principal<'_> {
    /// The `auth` claim.
    pub fn auth(&self) -> &'static str {
        match self {
            Principal::Public => "public",
            Principal::Realm { via: Via::Jwt, .. } => "jwt",
            Principal::Realm {
                via: Via::Session, ..
            } => "session",
            Principal::ApiKey { .. } => "api_key",
        }
    }
}

/// What one assertion says.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub tenant: &'a str,
    /// The pool the request is forwarded to: the `aud`.
    pub pool: &'a str,
    pub principal: Principal<'a>,
}

/// A length-prefixed field, so that no two field lists hash alike.
fn push_field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

mod cache;

pub use cache::Assertions;

#[cfg(test)]
mod tests;

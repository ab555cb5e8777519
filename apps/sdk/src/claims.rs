//! What a verified assertion says, as the app reads it.

use serde::Deserialize;
use std::fmt;

/// The tenant the gateway admitted the request for (its id, a DNS label).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(pub String);

impl Tenant {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The policy that admitted a realm user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// A bearer access token of the tenant's realm.
    Jwt,
    /// The gateway's own browser login.
    Session,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in user of the tenant's realm.
    User {
        subject: String,
        roles: Vec<String>,
        via: Auth,
    },
    /// An API key (its id, never its secret), for this namespace when the request named one.
    ApiKey {
        key_id: String,
        namespace: Option<String>,
    },
    /// Nobody: a public route.
    Anonymous,
}

impl Principal {
    /// The user's subject, for a signed-in user.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Principal::User { subject, .. } => Some(subject),
            _ => None,
        }
    }

    /// Whether a signed-in user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        matches!(self, Principal::User { roles, .. } if roles.iter().any(|r| r == role))
    }
}

/// A verified request: tenant, principal, and the pool the gateway forwarded it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: Tenant,
    pub principal: Principal,
    /// The assertion's `aud`: one of the app's configured pool names.
    pub pool: String,
    /// The assertion's `jti` (one per minted assertion: the gateway reuses an assertion for
    /// the same caller for up to 40 s, so it is no per-request nonce).
    pub assertion_id: String,
}

/// The claims as signed.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    pub aud: String,
    pub tenant: String,
    pub auth: String,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub iat: u64,
    pub exp: u64,
    #[serde(default)]
    pub jti: String,
}

impl Claims {
    /// The principal the `auth` claim names, with the fields it needs; `None` for an
    /// assertion that does not hang together.
    pub fn principal(&self) -> Option<Principal> {
        let user = |via| {
            Some(Principal::User {
                subject: self.sub.clone().filter(|s| !s.is_empty())?,
                roles: self.roles.clone().unwrap_or_default(),
                via,
            })
        };
        match self.auth.as_str() {
            "jwt" => user(Auth::Jwt),
            "session" => user(Auth::Session),
            "api_key" if self.sub.is_none() => Some(Principal::ApiKey {
                key_id: self.key_id.clone().filter(|k| !k.is_empty())?,
                namespace: self.namespace.clone(),
            }),
            "public" if self.sub.is_none() && self.key_id.is_none() => Some(Principal::Anonymous),
            _ => None,
        }
    }
}

//! The `api_key` policy: read the key from `X-API-Key` or `Authorization: Bearer rgk_…`,
//! find it by the SHA-256 digest of what was presented, and check expiry, tenant and
//! namespace. Keys are compiled with the table; a request only hashes and looks up.

use crate::errors::GatewayError;
use crate::headers;
use crate::persistent::{ShardMap, Slots};
use crate::route::Namespace;
use crate::tenant::TenantIdx;
use http::{header, HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use realmgate_table::{is_namespace, ApiKey};
use sha2::{Digest, Sha256};
use smol_str::SmolStr;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Every key starts with this; a bearer token without it is someone else's (a JWT).
pub const KEY_PREFIX: &[u8] = b"rgk_";
/// `rgk_` and base64url (no padding) of 32 bytes.
pub const KEY_LEN: usize = 4 + 43;

/// Index into the snapshot's key list.
pub type KeyIdx = u32;

/// Which tenant a key serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An operator key: every tenant.
    AnyTenant,
    Tenant(TenantIdx),
}

/// The namespaces a key covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// `*`: every namespace of the key's tenant (of every tenant, for an operator key).
    All,
    List(Box<[Box<str>]>),
}

/// One compiled key.
pub struct KeyRt {
    /// `x-realmgate-key-id`, built once.
    pub id: HeaderValue,
    pub scope: Scope,
    pub namespaces: Namespaces,
    /// Seconds since the Unix epoch from which the key is refused.
    pub expires_at: Option<u64>,
    /// SHA-256 of the secret, as indexed.
    digest: [u8; 32],
}

/// Every key of a table, by digest, each at a [`KeyIdx`] that stays its own while other keys
/// come and go. Persistent: a key added, replaced or removed for the next table copies one
/// shard of each index, and a request holding this table keeps reading it unchanged.
#[derive(Clone, Default)]
pub struct Keys {
    by_digest: ShardMap<[u8; 32], KeyIdx>,
    /// By the table's key id (the identity a change names).
    by_id: ShardMap<SmolStr, KeyIdx>,
    keys: Slots<Arc<KeyRt>>,
    /// How many keys name each tenant: a tenant with keys cannot leave the table.
    per_tenant: ShardMap<TenantIdx, u32>,
}

/// Why a key did not go in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefused {
    /// Its digest is not `sha256:<64 hex>`.
    BadDigest,
    /// It names a tenant the table does not have.
    UnknownTenant(String),
    /// Another key has the same digest.
    DigestTaken,
}

impl std::fmt::Display for KeyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRefused::BadDigest => f.write_str("digest is not sha256:<64 hex digits>"),
            KeyRefused::UnknownTenant(t) => write!(f, "names unknown tenant {t:?}"),
            KeyRefused::DigestTaken => f.write_str("digest already used by another key"),
        }
    }
}

/// A request admitted by a key: which key, and the namespace it was admitted for (if the
/// path or route names one), as `x-realmgate-namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub key: KeyIdx,
    pub namespace: Option<HeaderValue>,
}

/// The namespace a request is about: from its route, from the first path segment, or none.
pub enum PathNamespace<'a> {
    None,
    Route(&'a Namespace),
    Path(Cow<'a, str>),
}

impl PathNamespace<'_> {
    fn name(&self) -> Option<&str> {
        match self {
            PathNamespace::None => None,
            PathNamespace::Route(ns) => Some(&ns.name),
            PathNamespace::Path(name) => Some(name),
        }
    }

    /// The `x-realmgate-namespace` value: shared from the table for a route's namespace,
    /// built only when the namespace comes from the path of a namespace-less route.
    pub fn header(&self) -> Option<HeaderValue> {
        match self {
            PathNamespace::None => None,
            PathNamespace::Route(ns) => Some(ns.header.clone()),
            // Validated to [@a-z0-9._-]: always a valid header value.
            PathNamespace::Path(name) => HeaderValue::from_str(name).ok(),
        }
    }
}

/// The key the client presented, if any. `X-API-Key` (once), or `Authorization: Bearer
/// rgk_…`; both present and different, or either repeated, is 400.
pub fn presented(req: &RequestHeader) -> Result<Option<&[u8]>, GatewayError> {
    let mut x = req.headers.get_all(&X_API_KEY).iter();
    let from_header = match (x.next(), x.next()) {
        (Some(v), None) => Some(v.as_bytes().trim_ascii()),
        (None, _) => None,
        (Some(_), Some(_)) => return Err(GatewayError::ConflictingApiKeys),
    };
    let mut bearer = None;
    for v in headers::authorizations(req) {
        let Some(token) = headers::bearer(v) else {
            continue;
        };
        if !token.starts_with(KEY_PREFIX) {
            continue;
        }
        if bearer.replace(token).is_some() {
            return Err(GatewayError::ConflictingApiKeys);
        }
    }
    match (from_header, bearer) {
        (Some(a), Some(b)) if a != b => Err(GatewayError::ConflictingApiKeys),
        (Some(k), _) | (None, Some(k)) => Ok(Some(k)),
        (None, None) => Ok(None),
    }
}

/// Does this header value carry an API key, in any form an upstream might read one from: a
/// credential (after any scheme, of any case, and spaces or tabs) or a comma-separated item
/// starting with `rgk_` in any case. Wider than [`presented`] on purpose: a key the gateway did
/// not accept in that form is still a secret.
pub fn carries_key(value: &[u8]) -> bool {
    let is_key = |s: &[u8]| {
        s.get(..KEY_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(KEY_PREFIX))
    };
    value.split(|&b| b == b',').any(|item| {
        let item = item.trim_ascii();
        let credential = match item.iter().position(|&b| b == b' ' || b == b'\t') {
            Some(i) => item[i..].trim_ascii(),
            None => item,
        };
        is_key(item) || is_key(credential)
    })
}

/// Remove every `Authorization` and `X-API-Key` value that [`carries_key`], keeping the others
/// in order: on every upstream request, whatever the route's policy.
pub fn strip_secrets(up: &mut RequestHeader) {
    for name in [header::AUTHORIZATION, X_API_KEY] {
        let values = up.headers.get_all(&name);
        if !values.iter().any(|v| carries_key(v.as_bytes())) {
            continue;
        }
        let kept: Vec<HeaderValue> = values
            .iter()
            .filter(|v| !carries_key(v.as_bytes()))
            .cloned()
            .collect();
        up.remove_header(&name);
        for v in kept {
            // Re-appending a value that was there cannot fail; if it did, it stays out.
            let _ = up.append_header(name.clone(), v);
        }
    }
}

/// The namespace a path names: its first segment when that starts with `@` (or with `%40`,
/// which an upstream may decode to `@`). A first segment that starts so but is not a valid
/// namespace (`@OTHER`, `@other;x`, `@`) is refused: the gateway will not guess what an
/// upstream makes of it.
pub fn path_namespace(path: &str) -> Result<PathNamespace<'_>, GatewayError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let seg = &rest[..end];
    let name: Cow<'_, str> = if seg.starts_with('@') {
        Cow::Borrowed(seg)
    } else if let Some(tail) = seg.strip_prefix("%40") {
        Cow::Owned(format!("@{tail}"))
    } else {
        return Ok(PathNamespace::None);
    };
    if is_namespace(&name) {
        Ok(PathNamespace::Path(name))
    } else {
        Err(GatewayError::BadNamespace)
    }
}

/// The `api_key` policy of a route: `Ok(None)` when no key was presented (other policies
/// decide), `Ok(Some(grant))` for a valid key allowed here, an error otherwise. A key presented
/// on an `api_key` route is always checked, even when the route is also `public`, so a bad or
/// revoked key is refused rather than silently ignored. `path` is the normalised path the
/// route was matched on.
pub fn check(
    keys: &Keys,
    tenant: TenantIdx,
    route_namespace: Option<&Namespace>,
    req: &RequestHeader,
    path: &str,
) -> Result<Option<KeyGrant>, GatewayError> {
    let Some(secret) = presented(req)? else {
        return Ok(None);
    };
    let key = keys
        .authenticate(secret, now_secs())
        .ok_or(GatewayError::InvalidApiKey)?;
    let namespace = match route_namespace {
        Some(ns) => PathNamespace::Route(ns),
        None => path_namespace(path)?,
    };
    keys.authorize(key, tenant, &namespace)?;
    Ok(Some(KeyGrant {
        key,
        namespace: namespace.header(),
    }))
}

/// Now, in seconds since the Unix epoch (a vDSO clock read, no syscall).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keys {
    /// Compile the table's keys, key `i` with `expiry[i]`, in order. `tenant_of` maps a
    /// tenant id to its index (validation guarantees every key's tenant exists); a key that
    /// cannot go in is left out ([`Keys::upsert`]).
    pub fn build(
        keys: Vec<ApiKey>,
        expiry: &[Option<u64>],
        tenant_of: impl Fn(&str) -> Option<TenantIdx>,
    ) -> Keys {
        let mut out = Keys::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let _ = out.upsert(key, expiry.get(i).copied().flatten(), &tenant_of);
        }
        out
    }

    /// Empty, sized for `n` keys.
    pub fn with_capacity(n: usize) -> Keys {
        Keys {
            by_digest: ShardMap::with_capacity(n),
            by_id: ShardMap::with_capacity(n),
            keys: Slots::default(),
            per_tenant: ShardMap::default(),
        }
    }

    /// Add `key`, or replace the key with its id (which keeps its [`KeyIdx`]); its index.
    /// Refused — and nothing changed — for a malformed digest, an unknown tenant (never
    /// widened into an operator key) or a digest another key has.
    pub fn upsert(
        &mut self,
        key: &ApiKey,
        expires_at: Option<u64>,
        tenant_of: impl Fn(&str) -> Option<TenantIdx>,
    ) -> Result<KeyIdx, KeyRefused> {
        let digest = parse_digest(&key.digest).ok_or(KeyRefused::BadDigest)?;
        let scope = match key.tenant.as_deref() {
            None => Scope::AnyTenant,
            Some(t) => {
                Scope::Tenant(tenant_of(t).ok_or_else(|| KeyRefused::UnknownTenant(t.to_owned()))?)
            }
        };
        let existing = self.by_id.get(key.id.as_str()).copied();
        if let Some(&holder) = self.by_digest.get(&digest) {
            if Some(holder) != existing {
                return Err(KeyRefused::DigestTaken);
            }
        }
        let namespaces = if key.namespaces.iter().any(|n| n == "*") {
            Namespaces::All
        } else {
            Namespaces::List(key.namespaces.iter().map(|n| n.as_str().into()).collect())
        };
        let rt = Arc::new(KeyRt {
            // Key ids are validated to [a-z0-9._-].
            id: HeaderValue::from_str(&key.id).unwrap_or(HeaderValue::from_static("")),
            scope,
            namespaces,
            expires_at,
            digest,
        });
        let idx = match existing {
            Some(idx) => {
                self.unlink(idx);
                self.keys.set(idx, rt);
                idx
            }
            None => {
                let idx = self.keys.insert(rt);
                self.by_id.insert(SmolStr::new(key.id.as_str()), idx);
                idx
            }
        };
        self.by_digest.insert(digest, idx);
        if let Scope::Tenant(t) = scope {
            let n = self.per_tenant.get(&t).copied().unwrap_or(0);
            self.per_tenant.insert(t, n + 1);
        }
        Ok(idx)
    }

    /// Let the key with table id `id` (if any) go of its digest; the key itself stays until
    /// its [`Keys::upsert`] gives it the new one. A change that moves digests between its
    /// keys (or swaps two keys' digests) lets every changed key go of its old one first.
    pub fn release_digest(&mut self, id: &str) {
        let Some(&idx) = self.by_id.get(id) else {
            return;
        };
        let Some(old) = self.keys.get(idx).map(|k| k.digest) else {
            return;
        };
        if self.by_digest.get(&old) == Some(&idx) {
            self.by_digest.remove(&old);
        }
    }

    /// Remove the key with table id `id`; its former index (free for reuse).
    pub fn remove(&mut self, id: &str) -> Option<KeyIdx> {
        let idx = self.by_id.remove(id)?;
        self.unlink(idx);
        self.keys.remove(idx);
        Some(idx)
    }

    /// Drop key `idx` from the digest and tenant indexes (its slot stays).
    fn unlink(&mut self, idx: KeyIdx) {
        let Some(old) = self.keys.get(idx).cloned() else {
            return;
        };
        if self.by_digest.get(&old.digest) == Some(&idx) {
            self.by_digest.remove(&old.digest);
        }
        if let Scope::Tenant(t) = old.scope {
            match self.per_tenant.get(&t).copied() {
                Some(n) if n > 1 => {
                    self.per_tenant.insert(t, n - 1);
                }
                _ => {
                    self.per_tenant.remove(&t);
                }
            }
        }
    }

    /// Keys that name tenant `t`.
    pub fn of_tenant(&self, t: TenantIdx) -> u32 {
        self.per_tenant.get(&t).copied().unwrap_or(0)
    }

    /// The index of the key with table id `id`.
    pub fn by_id(&self, id: &str) -> Option<KeyIdx> {
        self.by_id.get(id).copied()
    }

    /// Every key with its index.
    pub fn iter(&self) -> impl Iterator<Item = (KeyIdx, &KeyRt)> + '_ {
        self.keys.indexed().map(|(i, k)| (i, &**k))
    }

    /// Every index in use is below this.
    pub fn end(&self) -> KeyIdx {
        self.keys.end()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `idx` comes from this table ([`Keys::authenticate`]).
    pub fn get(&self, idx: KeyIdx) -> &KeyRt {
        match self.keys.get(idx) {
            Some(k) => k,
            None => panic!("key index {idx} is not in this table"),
        }
    }

    /// The key whose digest matches what was presented, if it is known and not expired at
    /// `now`.
    ///
    /// Timing: the secret is hashed first and only its SHA-256 digest meets the map. Hashing
    /// and probing the map take time that depends on the digest, never on how many leading
    /// bytes of the secret are right, and learning digest bits does not help find a secret
    /// (preimage resistance). So this lookup is constant-time in the secret, unlike comparing
    /// presented keys byte by byte against stored ones.
    pub fn authenticate(&self, secret: &[u8], now: u64) -> Option<KeyIdx> {
        if secret.len() != KEY_LEN || !secret.starts_with(KEY_PREFIX) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(secret).into();
        let idx = *self.by_digest.get(&digest)?;
        match self.keys.get(idx)?.expires_at {
            Some(at) if now >= at => None,
            _ => Some(idx),
        }
    }

    /// May `key` reach `namespace` at `tenant`? 403 `namespace_denied` otherwise.
    pub fn authorize(
        &self,
        key: KeyIdx,
        tenant: TenantIdx,
        namespace: &PathNamespace<'_>,
    ) -> Result<(), GatewayError> {
        let k = self.get(key);
        let tenant_ok = match k.scope {
            Scope::AnyTenant => true,
            Scope::Tenant(t) => t == tenant,
        };
        let ns_ok = match (&k.namespaces, namespace.name()) {
            (Namespaces::All, _) | (_, None) => true,
            (Namespaces::List(list), Some(ns)) => list.iter().any(|n| **n == *ns),
        };
        if tenant_ok && ns_ok {
            Ok(())
        } else {
            Err(GatewayError::NamespaceDenied)
        }
    }
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;

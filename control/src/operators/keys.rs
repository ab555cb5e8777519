//! Operator API keys (`rgo_…`): machine access to the whole API with a role, besides the one
//! operator token. The secret is shown once; only its SHA-256 is stored (registry) and kept
//! in memory here, where every API call's `Bearer rgo_…` is looked up (`api::access`).

use super::Role;
use crate::body::Fields;
use crate::service::operator_keys::OperatorKeyRecord;
use crate::service::{Control, ServiceError};
use crate::time::{now_ms, rfc3339, rfc3339_seconds};
use base64::Engine;
use realmgate_table::Problem;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::{PoisonError, RwLock};
use subtle::ConstantTimeEq;

/// What every operator key's text starts with.
pub const PREFIX: &str = "rgo_";
/// Live (not revoked, not expired) keys at most: each call is compared with every one.
pub const MAX_LIVE: usize = 100;
/// A key's name, in characters.
const MAX_NAME: usize = 64;

/// An operator key as the API shows it: never the secret, never its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    /// `live`, `expired` or `revoked`.
    pub state: String,
    pub created_at: String,
    /// `operator_token`, or `session:<name>` (an admin signed in to the console).
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// `POST /v1/operator-keys`: the secret, once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedOperatorKey {
    pub key: String,
    #[serde(flatten)]
    pub view: OperatorKeyView,
}

/// `GET /v1/operator-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorKeyList {
    pub operator_keys: Vec<OperatorKeyView>,
}

/// The live key a call presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCaller {
    pub id: String,
    pub name: String,
    pub role: Role,
}

struct Entry {
    record: OperatorKeyRecord,
    role: Role,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.record.revoked_at_ms.is_none() && self.record.expires_at_ms.is_none_or(|e| e > now)
    }

    fn view(&self, now: u64) -> OperatorKeyView {
        let r = &self.record;
        let state = match (r.revoked_at_ms, self.live(now)) {
            (Some(_), _) => "revoked",
            (None, true) => "live",
            (None, false) => "expired",
        };
        OperatorKeyView {
            id: r.id.clone(),
            name: r.name.clone(),
            role: self.role,
            prefix: r.prefix.clone(),
            state: state.into(),
            created_at: rfc3339(r.created_at_ms),
            created_by: r.created_by.clone(),
            expires_at: r.expires_at_ms.map(rfc3339_seconds),
            revoked_at: r.revoked_at_ms.map(rfc3339),
        }
    }
}

fn role_of(name: &str) -> Option<Role> {
    match name {
        "viewer" => Some(Role::Viewer),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

fn random<const N: usize>() -> Result<[u8; N], ServiceError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Internal(format!("OS random source: {e}")))?;
    Ok(bytes)
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// The operator keys, all of them in memory (a few dozen at most), written through to the
/// registry. Changes are serialised so the live-key bound holds.
pub struct OperatorKeys {
    keys: RwLock<Vec<Entry>>,
    writes: tokio::sync::Mutex<()>,
}

impl OperatorKeys {
    /// The keys in the registry.
    pub async fn load(control: &Control) -> Result<OperatorKeys, ServiceError> {
        let mut keys = Vec::new();
        for record in control.operator_keys().await? {
            let role = role_of(&record.role).ok_or_else(|| {
                ServiceError::Internal(format!(
                    "operator key {}: unknown role {:?} in the registry",
                    record.id, record.role
                ))
            })?;
            keys.push(Entry { record, role });
        }
        Ok(OperatorKeys {
            keys: RwLock::new(keys),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The live key whose text was presented. Its digest is compared with every key's in
    /// constant time, so neither the secret nor how much of it matched shows in the timing.
    pub fn caller(&self, presented: &[u8]) -> Option<KeyCaller> {
        let d = digest(presented);
        let now = now_ms();
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        for e in keys.iter() {
            if bool::from(e.record.digest.ct_eq(&d)) {
                found = Some(e);
            }
        }
        found.filter(|e| e.live(now)).map(|e| KeyCaller {
            id: e.record.id.clone(),
            name: e.record.name.clone(),
            role: e.role,
        })
    }

    /// Every key, oldest first (revoked and expired ones too).
    pub fn list(&self) -> Vec<OperatorKeyView> {
        let now = now_ms();
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.iter().map(|e| e.view(now)).collect()
    }

    /// Mint a key from `{"name", "role", "expires_at"?}`; the secret is in the answer only.
    pub async fn mint(
        &self,
        control: &Control,
        body: &[u8],
        created_by: String,
    ) -> Result<CreatedOperatorKey, ServiceError> {
        let mut f = Fields::parse(body).map_err(ServiceError::Invalid)?;
        let name: Option<String> = f.require("name");
        let role: Option<String> = f.require("role");
        let expires_at: Option<String> = f.take("expires_at");
        let mut problems = f.finish();
        if let Some(n) = &name {
            let len = n.chars().count();
            if len == 0 || len > MAX_NAME || n.chars().any(char::is_control) || n.trim() != n {
                problems.push(Problem::new(
                    "name",
                    format!(
                        "1-{MAX_NAME} characters, no control characters, no surrounding spaces"
                    ),
                ));
            }
        }
        let role = role.and_then(|r| {
            let found = role_of(&r);
            if found.is_none() {
                problems.push(Problem::new(
                    "role",
                    format!("{r:?} is not a role: viewer or admin"),
                ));
            }
            found
        });
        let now = now_ms();
        let mut expires_at_ms = None;
        if let Some(at) = &expires_at {
            match realmgate_table::validate::parse_expiry(at) {
                Some(s) if s.saturating_mul(1000) > now => expires_at_ms = Some(s * 1000),
                Some(_) => problems.push(Problem::new("expires_at", "must be in the future")),
                None => problems.push(Problem::new(
                    "expires_at",
                    format!("{at:?} is not an RFC 3339 UTC time like 2027-01-01T00:00:00Z"),
                )),
            }
        }
        let (Some(name), Some(role), true) = (name, role, problems.is_empty()) else {
            return Err(ServiceError::Invalid(problems));
        };
        let _write = self.writes.lock().await;
        let live = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.iter().filter(|e| e.live(now)).count()
        };
        if live >= MAX_LIVE {
            return Err(ServiceError::Conflict {
                code: "too_many_operator_keys",
                message: format!(
                    "{live} operator keys are live, the most there may be: revoke one first"
                ),
                details: json!({"live": live, "max": MAX_LIVE}),
            });
        }
        let secret = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?)
        );
        let record = OperatorKeyRecord {
            id: format!("o{}", hex::encode(random::<8>()?)),
            name,
            role: role.name().to_owned(),
            digest: digest(secret.as_bytes()),
            prefix: secret[..8].to_owned(),
            created_at_ms: now,
            created_by,
            expires_at_ms,
            revoked_at_ms: None,
        };
        control.save_operator_key(&record).await?;
        let entry = Entry { record, role };
        let view = entry.view(now);
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
        Ok(CreatedOperatorKey { key: secret, view })
    }

    /// Revoke a key: refused from the next call on. Revoking a revoked key changes nothing.
    pub async fn revoke(
        &self,
        control: &Control,
        id: &str,
    ) -> Result<OperatorKeyView, ServiceError> {
        let _write = self.writes.lock().await;
        let now = now_ms();
        let record = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let e =
                keys.iter()
                    .find(|e| e.record.id == id)
                    .ok_or_else(|| ServiceError::NotFound {
                        kind: "operator key",
                        name: id.to_owned(),
                    })?;
            if e.record.revoked_at_ms.is_some() {
                return Ok(e.view(now));
            }
            OperatorKeyRecord {
                revoked_at_ms: Some(now),
                ..e.record.clone()
            }
        };
        control.save_operator_key(&record).await?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let e = keys
            .iter_mut()
            .find(|e| e.record.id == id)
            .ok_or_else(|| ServiceError::Internal("an operator key just revoked is gone".into()))?;
        e.record = record;
        Ok(e.view(now))
    }
}

#[cfg(test)]
mod tests;

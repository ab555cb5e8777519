//! API keys: mint (the secret is returned once, only its digest is kept), list and revoke,
//! with the minting rule that a key can only create keys within its own tenant, namespaces,
//! lifetime and rate limit (and its tenant's `per_key` limit). Every change is a new table version, so revocation reaches every gateway
//! with the next push.

use super::batch::{Op, Plan, View};
use super::{not_found, Control, ServiceError};
use crate::body::Fields;
use crate::ids::TenantId;
use crate::model::KeyRecord;
use crate::time::{now_ms, rfc3339_seconds};
use crate::views::{CreatedKey, KeyView};
use base64::Engine;
use realmgate_table::{ApiKey, Problem, RateLimit};
use sha2::{Digest, Sha256};

/// Who is calling the keys API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator token: may do anything.
    Operator,
    /// An API key (`Authorization: Bearer rgk_…`), live when the request arrived.
    Key(Box<KeyRecord>),
}

impl Caller {
    /// `operator` or `key:<id>`: who minted a key, and whose mint quota a request uses.
    pub fn name(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Key(k) => format!("key:{}", k.id),
        }
    }

    /// Could this caller have minted `k`? It then may see and revoke it.
    pub fn covers(&self, k: &KeyRecord) -> bool {
        let Caller::Key(parent) = self else {
            return true;
        };
        let tenant_ok = parent.tenant.is_none() || parent.tenant == k.tenant;
        let ns_ok = parent.all_namespaces()
            || (!k.all_namespaces() && k.namespaces.iter().all(|n| parent.namespaces.contains(n)));
        tenant_ok && ns_ok
    }
}

/// A fresh key: `rgk_` and base64url (no padding) of 32 bytes from the OS CSPRNG.
pub fn new_secret() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Internal(format!("OS random source: {e}")))?;
    Ok(format!(
        "rgk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn new_id() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Internal(format!("OS random source: {e}")))?;
    Ok(format!("k{}", hex::encode(bytes)))
}

/// SHA-256 of a presented key's text: how keys are found, here and at the gateways.
pub fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// What a `POST /v1/keys` body asks for.
struct KeyInput {
    tenant: Option<String>,
    namespaces: Option<Vec<String>>,
    expires_at: Option<String>,
    rate_limit: Option<RateLimit>,
}

impl Control {
    /// The live key with this digest, for authenticating API calls.
    pub fn key_caller(&self, digest: &[u8; 32]) -> Option<KeyRecord> {
        let model = self.read();
        let k = model.key_by_digest(digest)?;
        k.is_live(now_ms()).then(|| k.clone())
    }

    pub async fn create_key(
        &self,
        caller: &Caller,
        body: &[u8],
    ) -> Result<CreatedKey, ServiceError> {
        let mut f = Fields::parse(body).map_err(ServiceError::Invalid)?;
        let mut input = KeyInput {
            tenant: f.take("tenant"),
            namespaces: f.require_list("namespaces"),
            expires_at: f.take("expires_at"),
            rate_limit: f.take("rate_limit"),
        };
        let problems = f.finish();
        if let Caller::Key(parent) = caller {
            // A key's children live in its tenant and no longer than it does.
            if input.tenant.is_none() {
                input.tenant = parent.tenant.as_ref().map(ToString::to_string);
            }
            if input.expires_at.is_none() {
                input.expires_at = parent.expires_at_ms.map(rfc3339_seconds);
            }
        }
        self.join(|v| self.plan_mint(v, caller, input, problems))
            .await
    }

    fn plan_mint(
        &self,
        v: &View<'_>,
        caller: &Caller,
        input: KeyInput,
        mut problems: Vec<Problem>,
    ) -> Result<Plan<CreatedKey>, ServiceError> {
        let (tenant, expires_at_ms) = check_key(v, &input, &mut problems);
        let (Some(namespaces), true) = (input.namespaces, problems.is_empty()) else {
            return Err(ServiceError::Invalid(problems));
        };
        let rate_limit = mint_limit(v, caller, tenant.as_ref(), input.rate_limit)?;
        let secret = new_secret()?;
        let record = KeyRecord {
            id: new_id()?,
            digest: digest(secret.as_bytes()),
            prefix: secret[..8].to_owned(),
            tenant,
            namespaces,
            expires_at_ms,
            rate_limit,
            created_at_ms: now_ms(),
            created_by: caller.name(),
            revoked_at_ms: None,
            table_version: 0,
        };
        check_mint(caller, &record)?;
        Ok(write_key(v, record, move |r| CreatedKey {
            key: secret,
            view: KeyView::from(r),
        }))
    }

    /// The keys the caller may see: all for the operator, else those it could have minted.
    pub fn list_keys(&self, caller: &Caller) -> Vec<KeyView> {
        self.read()
            .keys
            .values()
            .filter(|k| caller.covers(k))
            .map(KeyView::from)
            .collect()
    }

    /// A page of [`Control::list_keys`] after `after`, in id order: a tenant's key looks
    /// through its tenant's keys only.
    pub fn list_keys_page(
        &self,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<KeyView>, Option<String>) {
        let model = self.read();
        let view = |k: &KeyRecord| caller.covers(k).then(|| KeyView::from(k));
        let tenant = match caller {
            Caller::Key(parent) => parent.tenant.as_ref(),
            Caller::Operator => None,
        };
        let bound = crate::model::after_bound(after);
        match tenant {
            Some(t) => {
                let ids = model.key_ids_of(t).map(|ids| ids.range::<str, _>(bound));
                let entries = ids
                    .into_iter()
                    .flatten()
                    .filter_map(|id| Some((id.as_str(), model.keys.get(id)?)));
                crate::model::page_of(entries, limit, view)
            }
            None => {
                let entries = model.keys.range::<str, _>(bound);
                crate::model::page_of(entries.map(|(id, k)| (id.as_str(), k)), limit, view)
            }
        }
    }

    pub fn key(&self, caller: &Caller, id: &str) -> Result<KeyView, ServiceError> {
        self.read()
            .keys
            .get(id)
            .filter(|k| caller.covers(k))
            .map(KeyView::from)
            .ok_or_else(|| not_found("key", id))
    }

    /// Revoke a key the caller may see (404 otherwise, so ids are not probed). Revoking a
    /// revoked key changes nothing.
    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<KeyView, ServiceError> {
        self.join(|v| {
            let Some(k) = v.key(id).filter(|k| caller.covers(k)) else {
                return Err(not_found("key", id));
            };
            if k.revoked_at_ms.is_some() {
                let id = id.to_owned();
                return Ok(Plan::Answer(Box::new(move |m| {
                    m.keys
                        .get(&id)
                        .map(KeyView::from)
                        .ok_or_else(|| not_found("key", &id))
                })));
            }
            let record = KeyRecord {
                revoked_at_ms: Some(now_ms()),
                ..k.into_owned()
            };
            Ok(write_key(v, record, |r: &KeyRecord| KeyView::from(r)))
        })
        .await
    }
}

/// 403 unless a key caller stays within its own tenant, namespaces and lifetime.
fn check_mint(caller: &Caller, new: &KeyRecord) -> Result<(), ServiceError> {
    let Caller::Key(parent) = caller else {
        return Ok(());
    };
    if parent.tenant.is_some() && parent.tenant != new.tenant {
        return Err(ServiceError::Forbidden(format!(
            "key {} belongs to tenant {}: it can only mint keys for that tenant",
            parent.id,
            parent.tenant.as_ref().map_or("-", TenantId::as_str)
        )));
    }
    if !parent.all_namespaces() {
        if let Some(n) = new
            .namespaces
            .iter()
            .find(|n| !parent.namespaces.contains(n))
        {
            return Err(ServiceError::Forbidden(format!(
                "key {} covers {}: it cannot mint a key for {n}",
                parent.id,
                parent.namespaces.join(", ")
            )));
        }
    }
    if let Some(limit) = parent.expires_at_ms {
        if new.expires_at_ms.is_none_or(|at| at > limit) {
            return Err(ServiceError::Forbidden(format!(
                "key {} expires at {}: a key it mints cannot outlive it",
                parent.id,
                rfc3339_seconds(limit)
            )));
        }
    }
    Ok(())
}

/// Write a key record (minted or revoked); once committed it is in the model under its
/// version, and `answer` makes the call's answer from it.
fn write_key<T: Send + 'static>(
    v: &View<'_>,
    record: KeyRecord,
    answer: impl FnOnce(&KeyRecord) -> T + Send + 'static,
) -> Plan<T> {
    Plan::Write {
        stage: v.put_key(&record),
        op: Op::SaveKey(record.clone()),
        apply: Box::new(move |m, version| {
            let record = KeyRecord {
                table_version: version,
                ..record
            };
            let view = answer(&record);
            m.put_key(record);
            (Ok(view), None)
        }),
    }
}

/// The rate limit a new key gets. The operator's choice stands (a key's own limit is how
/// the operator overrides the tenant's `per_key`). A key caller's child is held to the
/// parent's effective limit (its own, else its tenant's `per_key`) and to the child's tenant's
/// `per_key`: a limit given must be within both (403 otherwise); none given inherits the
/// tighter one, or keeps following `per_key` when that is what holds the parent too.
fn mint_limit(
    model: &View<'_>,
    caller: &Caller,
    tenant: Option<&TenantId>,
    given: Option<RateLimit>,
) -> Result<Option<RateLimit>, ServiceError> {
    let Caller::Key(parent) = caller else {
        return Ok(given);
    };
    let limits_of = |t: Option<&TenantId>| {
        t.and_then(|t| model.tenant(t))
            .map(|r| r.wire.rate_limits)
            .unwrap_or_default()
    };
    let parent_limit = limits_of(parent.tenant.as_ref()).for_key(parent.rate_limit);
    let tenant_limit = limits_of(tenant).per_key;
    let bounds = [
        parent_limit.map(|l| (l, format!("key {} is limited to", parent.id))),
        tenant_limit.map(|l| (l, "the tenant's per_key limit is".to_owned())),
    ];
    let bounds: Vec<_> = bounds.into_iter().flatten().collect();
    if let Some(limit) = given {
        if let Some((bound, whose)) = bounds.iter().find(|(b, _)| !limit.within(b)) {
            return Err(ServiceError::Forbidden(format!(
                "{whose} {}: a key it mints cannot be allowed more (rate_limit {}); give a rate_limit within it, or leave it out to inherit it",
                per(bound),
                per(&limit)
            )));
        }
        return Ok(Some(limit));
    }
    if parent.rate_limit.is_none() && parent_limit == tenant_limit {
        // Both follow the tenant's per_key, now and after it changes.
        return Ok(None);
    }
    let tightest = bounds
        .iter()
        .find(|(b, _)| bounds.iter().all(|(o, _)| b.within(o)));
    match (bounds.is_empty(), tightest) {
        (true, _) => Ok(None),
        (false, Some((b, _))) => Ok(Some(*b)),
        (false, None) => Err(ServiceError::Forbidden(format!(
            "key {} and the tenant's per_key limit ({} and {}) leave no single limit to inherit: give a rate_limit within both",
            parent.id,
            per(&bounds[0].0),
            per(&bounds[1].0)
        ))),
    }
}

/// `2 per 60 s`.
fn per(l: &RateLimit) -> String {
    format!("{} per {} s", l.requests, l.window_s)
}

/// Check the key as a gateway would (`realmgate_table::validate::api_key`), plus what only
/// realmctl knows: the tenant exists, the expiry is in the future.
fn check_key(
    model: &View<'_>,
    input: &KeyInput,
    problems: &mut Vec<Problem>,
) -> (Option<TenantId>, Option<u64>) {
    let tenant = input.tenant.as_deref().and_then(|raw| {
        match TenantId::parse(raw).filter(|t| model.tenant(t).is_some()) {
            Some(t) => Some(t),
            None => {
                problems.push(Problem::new("tenant", format!("no tenant {raw:?}")));
                None
            }
        }
    });
    let key = ApiKey {
        // Minted once the request is known good; these stand for them and always pass.
        id: "k".into(),
        digest: format!("sha256:{}", "0".repeat(64)),
        tenant: tenant.as_ref().map(ToString::to_string),
        // Missing namespaces are already reported.
        namespaces: input.namespaces.clone().unwrap_or_else(|| vec!["*".into()]),
        expires_at: input.expires_at.clone(),
        rate_limit: input.rate_limit,
    };
    let mut expires_at_ms = None;
    match realmgate_table::validate::api_key(&key) {
        Ok(expiry) => {
            if let Some(at) = expiry {
                let at_ms = at.saturating_mul(1000);
                if at_ms <= now_ms() {
                    problems.push(Problem::new("expires_at", "must be in the future"));
                }
                expires_at_ms = Some(at_ms);
            }
        }
        Err(found) => problems.extend(found),
    }
    (tenant, expires_at_ms)
}

#[cfg(test)]
mod tests;

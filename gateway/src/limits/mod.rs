//! Rate limits, the step after auth: per tenant, per API key and per client address on
//! public routes, counted with pingora-limits' `Rate` estimator. Everything a request needs
//! is compiled with the table; under the limit a check is a few hashes and atomic adds, with
//! no allocation or formatting. Counters outlive table swaps and are kept apart per tenant
//! (see [`Limiters`]); an IPv6 client counts as its /64.

pub mod client;

use client::client_network;
use pingora_http::ResponseHeader;
use pingora_limits::rate::Rate;
use realmgate_table::RateLimit;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Count-min sketch size of each estimator: 4 rows of 1024 counters (two estimators per
/// scope and window length, 64 KiB). A scope's keys and clients share its counters; past about
/// a thousand busy ones in one window, that scope (never another) may be limited early.
const HASHES: usize = 4;
const SLOTS: usize = 1024;

/// The counter scope of limits that belong to no tenant (operator API keys).
const OPERATOR_SCOPE: u64 = 0x6f70_6572_6174_6f72;

/// Prunes a released scope waits through before it is let go while still in use (by the
/// table in force, or a request holding an older one).
const PENDING_PRUNES: u8 = 3;

/// One `Rate` per scope (a tenant, or the operator keys) and window length: a tenant's
/// counters never share an estimator with another tenant's, so one tenant's traffic cannot
/// cause another's 429s. Kept across tables, so a push (a revocation, a new tenant) does not
/// reset anyone's count; dropped once no table uses it ([`Limiters::prune`] after a full
/// table, [`Limiters::prune_released`] after a change, which looks only at the scopes the
/// change touched).
#[derive(Default)]
pub struct Limiters {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each scope's estimators, by window length (a scope has one to four).
    by_scope: HashMap<u64, Vec<(u32, Arc<Rate>)>>,
    /// Scopes a change may have left unused, with the prunes each has waited through.
    pending: Vec<(u64, u8)>,
}

impl Inner {
    /// Drop the scope's estimators nothing else holds; whether the scope is gone.
    fn prune_scope(&mut self, scope: u64) -> bool {
        let Some(rates) = self.by_scope.get_mut(&scope) else {
            return true;
        };
        rates.retain(|(_, rate)| Arc::strong_count(rate) > 1);
        if rates.is_empty() {
            self.by_scope.remove(&scope);
            return true;
        }
        false
    }
}

impl Limiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A compiled limit counted in `scope` (a tenant's [`stable_key`], or [`scope_of`]); called
    /// while a table is built, never per request.
    pub fn compile(&self, scope: u64, limit: &RateLimit) -> LimitRt {
        let window = limit.window_s.max(1);
        let rate = {
            let mut inner = self.lock();
            let rates = inner.by_scope.entry(scope).or_default();
            match rates.iter().find(|(w, _)| *w == window) {
                Some((_, rate)) => Arc::clone(rate),
                None => {
                    let rate = Arc::new(Rate::new_with_estimator_config(
                        std::time::Duration::from_secs(u64::from(window)),
                        HASHES,
                        SLOTS,
                    ));
                    rates.push((window, Arc::clone(&rate)));
                    rate
                }
            }
        };
        LimitRt {
            rate,
            requests: isize::try_from(limit.requests).unwrap_or(isize::MAX),
        }
    }

    /// Forget the estimators no table holds any more (deleted tenants, changed windows), so
    /// churn does not grow memory. Called after each full build: the table being replaced
    /// still holds its own, so counts carry over to the next table. O(scopes).
    pub fn prune(&self) {
        let mut inner = self.lock();
        inner.by_scope.retain(|_, rates| {
            rates.retain(|(_, rate)| Arc::strong_count(rate) > 1);
            !rates.is_empty()
        });
        inner.pending.clear();
    }

    /// Scopes a change replaced or removed limits of (a deleted tenant's, a revoked key's):
    /// [`Limiters::prune_released`] looks at them, and only them, at the next prunes.
    pub fn release(&self, scopes: impl IntoIterator<Item = u64>) {
        let mut inner = self.lock();
        inner.pending.extend(scopes.into_iter().map(|s| (s, 0)));
    }

    /// Prune the released scopes: O(size of the recent changes), not of the table. A scope
    /// still in use after [`PENDING_PRUNES`] prunes is left to the next full table's prune.
    pub fn prune_released(&self) {
        let mut inner = self.lock();
        let pending = std::mem::take(&mut inner.pending);
        let mut kept = Vec::with_capacity(pending.len());
        for (scope, waited) in pending {
            if !inner.prune_scope(scope) && waited + 1 < PENDING_PRUNES {
                kept.push((scope, waited + 1));
            }
        }
        inner.pending = kept;
    }

    /// Estimators alive (tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().by_scope.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The counter scope of a tenant id, or of the operator keys (`None`).
pub fn scope_of(tenant: Option<&str>) -> u64 {
    tenant.map_or(OPERATOR_SCOPE, stable_key)
}

/// One limit as requests check it: 16 bytes, as every tenant of a large table may hold
/// three (`RateLimit-Limit` is written from `requests` on the refusal path alone).
pub struct LimitRt {
    rate: Arc<Rate>,
    requests: isize,
}

/// Which counter a request is counted in: the scopes never share a key.
#[derive(Hash)]
enum Counter {
    Tenant(u64),
    Key(u64),
    Client(u64, IpAddr),
}

impl LimitRt {
    /// Requests allowed per window.
    pub fn requests(&self) -> isize {
        self.requests
    }

    /// Count one request; `Err` once the window holds more than the limit.
    #[inline]
    fn admit<K: Hash>(&self, key: &K) -> Result<(), Over> {
        if self.rate.observe(key, 1) <= self.requests {
            return Ok(());
        }
        // Over the limit: only now work out when the window ends.
        let reset = self.rate.rate_with(key, |c| {
            let left = c.interval.as_secs_f64() * (1.0 - c.current_interval_fraction);
            left.ceil().max(1.0) as u64
        });
        Err(Over {
            limit: self.requests,
            reset_s: reset,
        })
    }
}

/// A refused request: what the 429's headers say.
#[derive(Debug, Clone)]
pub struct Over {
    limit: isize,
    reset_s: u64,
}

impl Over {
    /// `Retry-After` and the `RateLimit-*` fields (draft-ietf-httpapi-ratelimit-headers).
    pub fn write_headers(&self, resp: &mut ResponseHeader) {
        let _ = resp.insert_header("retry-after", self.reset_s);
        let _ = resp.insert_header("ratelimit-limit", self.limit);
        let _ = resp.insert_header("ratelimit-remaining", 0u64);
        let _ = resp.insert_header("ratelimit-reset", self.reset_s);
    }

    pub fn reset_s(&self) -> u64 {
        self.reset_s
    }
}

/// A tenant's compiled limits, read through [`Deref`](std::ops::Deref) as [`SetLimits`]. Every
/// tenant of a table holds one inline and most set no limit: those hold 8 bytes, not the 56
/// of [`SetLimits`] (a full table allocates one `TenantRt` a tenant; fresh memory is most of
/// a large apply's cost).
#[derive(Default)]
pub struct TenantLimits(Option<Box<SetLimits>>);

/// The limits of a tenant that sets some.
pub struct SetLimits {
    pub tenant: Option<LimitRt>,
    pub per_key: Option<LimitRt>,
    pub per_client: Option<LimitRt>,
    /// The tenant's counter key, stable across tables (0 for a tenant without limits: no
    /// counter is kept for it).
    pub key: u64,
}

/// What a tenant without limits reads.
static NO_LIMITS: SetLimits = SetLimits {
    tenant: None,
    per_key: None,
    per_client: None,
    key: 0,
};

impl std::ops::Deref for TenantLimits {
    type Target = SetLimits;

    fn deref(&self) -> &SetLimits {
        self.0.as_deref().unwrap_or(&NO_LIMITS)
    }
}

impl TenantLimits {
    pub fn compile(limiters: &Limiters, id: &str, l: &realmgate_table::RateLimits) -> Self {
        if l.tenant.is_none() && l.per_key.is_none() && l.per_client.is_none() {
            return TenantLimits(None);
        }
        let scope = scope_of(Some(id));
        TenantLimits(Some(Box::new(SetLimits {
            tenant: l.tenant.as_ref().map(|l| limiters.compile(scope, l)),
            per_key: l.per_key.as_ref().map(|l| limiters.compile(scope, l)),
            per_client: l.per_client.as_ref().map(|l| limiters.compile(scope, l)),
            key: stable_key(id),
        })))
    }

    pub fn is_empty(&self) -> bool {
        self.tenant.is_none() && self.per_key.is_none() && self.per_client.is_none()
    }
}

/// An API key's limit: its own (else its tenant's `per_key` applies), and its counter's key.
#[derive(Default)]
pub struct KeyLimit {
    pub limit: Option<LimitRt>,
    pub key: u64,
    /// The counter scope its limit lives in (its tenant's, or the operator keys').
    pub scope: u64,
}

impl KeyLimit {
    /// Called while a table is built, never per request. A key's counter lives in its
    /// tenant's scope (the operator's for a key without a tenant).
    pub fn compile(
        limiters: &Limiters,
        tenant: Option<&str>,
        key_id: &str,
        limit: Option<&RateLimit>,
    ) -> KeyLimit {
        let scope = scope_of(tenant);
        KeyLimit {
            limit: limit.map(|l| limiters.compile(scope, l)),
            key: stable_key(key_id),
            scope,
        }
    }
}

/// Count an admitted request against its key's limit (when an API key admitted it, `key`) or
/// its client's, then its tenant's. `client` is called only when a per-client limit applies
/// and no key was used; it answers `None` when the request has no client to count (a realm
/// identity: per-user limits are not configurable yet, only the tenant limit applies).
pub fn check(
    limits: &TenantLimits,
    key: Option<&KeyLimit>,
    client: impl FnOnce() -> Option<IpAddr>,
) -> Result<(), Over> {
    match key {
        Some(k) => {
            if let Some(limit) = k.limit.as_ref().or(limits.per_key.as_ref()) {
                limit.admit(&Counter::Key(k.key))?;
            }
        }
        None => {
            if let Some(limit) = &limits.per_client {
                if let Some(ip) = client() {
                    limit.admit(&Counter::Client(limits.key, client_network(ip)))?;
                }
            }
        }
    }
    if let Some(limit) = &limits.tenant {
        limit.admit(&Counter::Tenant(limits.key))?;
    }
    Ok(())
}

/// A hash of an id that is the same in every table this process loads, so counters keep
/// their identity across swaps.
pub fn stable_key(id: &str) -> u64 {
    // Fixed seeds: stable within the process; nothing secret rides on them (the estimator
    // hashes this value again with its own random seeds).
    ahash::RandomState::with_seeds(0x5265_616c, 0x6d67_6174, 0x6520_6c69, 0x6d69_7473).hash_one(id)
}

#[cfg(test)]
mod tests;

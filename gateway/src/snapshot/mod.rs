//! The live routing table as data: a compiled, pre-indexed snapshot. [`build`] makes one from
//! a checked wire table, [`delta`] makes the next one from the previous one and a checked
//! change (sharing everything the change does not touch), [`store`] holds the current one
//! behind an `ArcSwap` and applies new tables, [`persist`] writes them to disk. A request
//! holds one snapshot from its first filter to its last; each step reads only its slice of it.

pub mod build;
mod compact;
pub mod cpus;
pub mod delta;
#[cfg(test)]
mod delta_tests;
mod error;
pub mod journal;
pub mod pace;
pub mod persist;
mod retire;
pub mod store;
#[cfg(test)]
pub mod test_util;

pub use build::Encoding;
pub use journal::Compaction;
pub use store::{describe, ApplyError, Store, BINARY_STATE_FILE, STATE_FILE};

use crate::acme::Challenges;
use crate::auth::api_key::{KeyIdx, Keys};
use crate::auth::RealmRt;
use crate::limits::{KeyLimit, TenantLimits};
use crate::metrics::TenantCounters;
use crate::persistent::{ShardMap, Slots};
use crate::route::{PoolIdx, Routes};
use crate::shell::ShellRt;
use crate::tenant::{HostIndex, HostList, TenantIdx};
use crate::tls::CertIndex;
use crate::upstream::Pool;
use bytes::Bytes;
use http::HeaderValue;
use smol_str::SmolStr;
use std::sync::Arc;

/// One compiled table. Every index is persistent ([`crate::persistent`]): the next
/// snapshot shares all that a change does not touch, and this one stays as it is for the
/// requests that hold it.
pub struct Snapshot {
    pub version: u64,
    /// `sha256:` of the document as received; after a delta, the state digest.
    pub digest: String,
    /// The table's state digest (`realmgate_table::model`), whichever way it came.
    pub state_digest: String,
    /// The document as received, served by `GET /v1/table?full=1`: `None` once a change
    /// ([`delta::build_delta`]) was applied, as no document holds the result.
    pub raw: Option<Bytes>,
    pub hosts: HostIndex,
    /// Tenants at stable indices: a tenant keeps its [`TenantIdx`] while others change; a
    /// removed tenant's slot may be reused by a later one.
    pub tenants: Slots<Arc<TenantRt>>,
    /// Tenant index by id.
    pub tenant_ids: ShardMap<SmolStr, TenantIdx>,
    /// Pools at stable indices (a route keeps pointing at its pool while others come and go).
    pub pools: Slots<Arc<Pool>>,
    /// Pool index by name, and how many tenants use each pool.
    pub pool_ids: ShardMap<Box<str>, PoolIdx>,
    pub pool_users: ShardMap<PoolIdx, u32>,
    /// API keys by digest.
    pub keys: Keys,
    /// Each key's rate limit, by [`KeyIdx`].
    pub key_limits: Slots<Arc<KeyLimit>>,
    /// The table's certificates by the names they serve (the TLS listeners' SNI index).
    pub certs: CertIndex,
    /// The table's ACME http-01 answers by token.
    pub acme: Challenges,
    /// The identity assertion's signer and JWKS; `None` without an `assertion` section.
    pub assertion: Option<Arc<crate::assertion::Signer>>,
}

/// A tenant as the request path needs it.
pub struct TenantRt {
    pub id: Arc<str>,
    /// Its host patterns, normalised: what a change releases from the host index.
    pub hosts: HostList,
    /// The pools its routes and shell use, each once.
    pub pools: Box<[PoolIdx]>,
    /// `x-realmgate-tenant` value, built once.
    pub header: HeaderValue,
    /// Shared with the other tenants whose routes compile the same ([`crate::route::RouteSets`]).
    pub routes: Arc<Routes>,
    pub suspended: bool,
    pub counters: Arc<TenantCounters>,
    pub limits: TenantLimits,
    /// The tenant's identity realm, shared with other table versions of the same settings.
    pub realm: Option<Arc<RealmRt>>,
    /// The app shell, when enabled: the only shell state a request of another tenant touches
    /// is this `None`.
    pub shell: Option<Box<ShellRt>>,
    /// What plain HTTP gets on the tenant's hosts (served, redirected, refused).
    pub https: realmgate_table::HttpsMode,
    /// The tenant's `Strict-Transport-Security` value, sent on its https responses. Boxed:
    /// most tenants leave it unset, and inline it made every tenant 32 bytes larger (a full
    /// table allocates one `TenantRt` a tenant; 192 bytes fit a smaller allocator class).
    pub hsts: Option<Box<HeaderValue>>,
}

impl Snapshot {
    /// `idx` comes from this snapshot (its host index).
    pub fn tenant(&self, idx: TenantIdx) -> &TenantRt {
        match self.tenants.get(idx) {
            Some(t) => t,
            None => panic!("tenant index {idx} is not in this table"),
        }
    }

    /// `idx` comes from this snapshot (a route or shell of one of its tenants).
    pub fn pool(&self, idx: PoolIdx) -> &Arc<Pool> {
        match self.pools.get(idx) {
            Some(p) => p,
            None => panic!("pool index {idx} is not in this table"),
        }
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    pub fn key_limit(&self, idx: KeyIdx) -> Option<&KeyLimit> {
        self.key_limits.get(idx).map(|l| &**l)
    }

    /// The tenant with this id.
    pub fn tenant_by_id(&self, id: &str) -> Option<(TenantIdx, &TenantRt)> {
        let idx = *self.tenant_ids.get(id)?;
        Some((idx, self.tenants.get(idx)?))
    }
}

//! The live routing table as data: a compiled, pre-indexed snapshot. [`build`] makes one from
//! a checked wire table, [`store`] holds the current one behind an `ArcSwap` and applies new
//! tables, [`persist`] writes them to disk. A request holds one snapshot from its first filter
//! to its last; each step reads only its slice of it.

pub mod build;
mod compact;
pub mod journal;
pub mod persist;
pub mod store;
#[cfg(test)]
pub mod test_util;

pub use compact::Compaction;
pub use store::{describe, ApplyError, Store, STATE_FILE};

use crate::acme::Challenges;
use crate::auth::api_key::{KeyIdx, Keys};
use crate::auth::RealmRt;
use crate::limits::{KeyLimit, TenantLimits};
use crate::metrics::TenantCounters;
use crate::route::{PoolIdx, Routes};
use crate::shell::ShellRt;
use crate::tenant::{HostIndex, TenantIdx};
use crate::tls::CertIndex;
use crate::upstream::Pool;
use bytes::Bytes;
use http::HeaderValue;
use std::sync::Arc;

/// One compiled table.
pub struct Snapshot {
    pub version: u64,
    pub digest: String,
    /// The document as received, served by `GET /v1/table?full=1`.
    pub raw: Bytes,
    pub hosts: HostIndex,
    pub tenants: Box<[TenantRt]>,
    pub pools: Box<[Arc<Pool>]>,
    /// API keys by digest.
    pub keys: Keys,
    /// Each key's rate limit, by [`KeyIdx`].
    pub key_limits: Box<[KeyLimit]>,
    /// The table's certificates by the names they serve (the TLS listeners' SNI index).
    pub certs: CertIndex,
    /// The table's ACME http-01 answers by token.
    pub acme: Challenges,
    /// The identity assertion's signer and JWKS; `None` without an `assertion` section.
    pub assertion: Option<Arc<crate::assertion::Signer>>,
}

/// A tenant as the request path needs it.
pub struct TenantRt {
    pub id: Box<str>,
    /// `x-realmgate-tenant` value, built once.
    pub header: HeaderValue,
    pub routes: Routes,
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
    /// The tenant's `Strict-Transport-Security` value, sent on its https responses.
    pub hsts: Option<HeaderValue>,
}

impl Snapshot {
    pub fn tenant(&self, idx: TenantIdx) -> &TenantRt {
        &self.tenants[idx as usize]
    }

    pub fn pool(&self, idx: PoolIdx) -> &Arc<Pool> {
        &self.pools[idx as usize]
    }

    pub fn key_limit(&self, idx: KeyIdx) -> Option<&KeyLimit> {
        self.key_limits.get(idx as usize)
    }
}

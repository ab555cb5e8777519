//! The registry's state in memory: tenants, upstream pools and the host index. It mirrors the
//! database row for row, is rebuilt from it at start, and is what the API reads and the
//! compiler serialises. The maps the table is compiled from are [`Tracked`]: each remembers
//! what was written, so the compiler can emit a delta in the size of the change.

mod cover;
mod domains;
mod tracked;

pub use domains::Domains;
pub use tracked::Tracked;

use crate::ids::{TenantId, UpstreamName};
use realmgate_table::host::HostPattern;
use realmgate_table::{RateLimit, Tenant, Upstream};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// An entry of a tenant's app catalog, shown by the app shell (the table's `catalog` carries
/// the title, the path and the icon; the name is realmctl's id for the entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// App name, unique within the tenant (`a-z`, `0-9`, `.`, `_`, `-`).
    pub name: String,
    /// Title shown to users.
    pub title: String,
    /// Normalised absolute path the app lives under, e.g. `/crm/`.
    pub path: String,
    /// Icon name, e.g. `lucide:check-square`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

impl CatalogEntry {
    /// The entry as the routing table carries it.
    pub fn table_app(&self) -> realmgate_table::CatalogApp {
        realmgate_table::CatalogApp {
            title: self.title.clone(),
            path: self.path.clone(),
            icon: self.icon.clone(),
        }
    }
}

/// A tenant as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// Exactly what enters the routing table (id, normalised hosts, routes, status).
    pub wire: Tenant,
    pub display_name: String,
    pub catalog: Vec<CatalogEntry>,
    /// Bumped on every change of this tenant; the `If-Match` precondition compares it.
    pub revision: u64,
    /// The table version that carried this tenant's last change.
    pub table_version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Provisioning state and the journal of its steps.
    pub provision: crate::provision::Provision,
}

impl TenantRecord {
    /// Same content, ignoring bookkeeping (revision, versions, times).
    /// Bring the table's copies of the display name and catalog in line with the record's.
    pub fn sync_wire(&mut self) {
        self.wire.display_name = Some(self.display_name.clone());
        self.wire.catalog = self.catalog.iter().map(CatalogEntry::table_app).collect();
    }

    pub fn same_content(&self, other: &TenantRecord) -> bool {
        self.wire == other.wire
            && self.display_name == other.display_name
            && self.catalog == other.catalog
    }
}

/// An upstream pool as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRecord {
    pub spec: Upstream,
    pub table_version: u64,
    pub updated_at_ms: u64,
}

/// An API key as the registry keeps it: never the secret, only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    /// SHA-256 of the whole key text (`rgk_…`).
    pub digest: [u8; 32],
    /// The key's first characters (`rgk_AbCd`), for people to tell keys apart.
    pub prefix: String,
    /// `None`: an operator key, valid at every tenant.
    pub tenant: Option<TenantId>,
    /// `["*"]` or namespaces like `@acme`.
    pub namespaces: Vec<String>,
    pub expires_at_ms: Option<u64>,
    pub rate_limit: Option<RateLimit>,
    pub created_at_ms: u64,
    /// `operator`, or `key:<id>` for a key minted by another key.
    pub created_by: String,
    pub revoked_at_ms: Option<u64>,
    /// The table version that carried the key's last change (creation or revocation).
    pub table_version: u64,
}

impl KeyRecord {
    /// Not revoked and not expired at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|at| now_ms < at)
    }

    pub fn all_namespaces(&self) -> bool {
        self.namespaces.iter().any(|n| n == "*")
    }
}

/// A certificate as the registry keeps it: the chain in the clear, the key sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub name: String,
    /// The chain in PEM, leaf first.
    pub cert_pem: String,
    /// The private key, sealed by [`crate::provision::secrets::SecretBox::seal_certificate_key`].
    pub key_sealed: String,
    /// The names it is served for (exact, or a one-label wildcard), normalised.
    pub hosts: Vec<HostPattern>,
    /// The leaf's validity, seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// `sha256:<hex>` of the leaf (DER).
    pub fingerprint: String,
    pub table_version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl std::fmt::Debug for CertRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sealed key stays out of logs too.
        f.debug_struct("CertRecord")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("not_after", &self.not_after)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl CertRecord {
    /// Whether the certificate is served for a tenant's host pattern: an exact host by any
    /// of its names (certificate semantics), a wildcard host by the same wildcard.
    pub fn covers(&self, host: &HostPattern) -> bool {
        self.hosts.iter().any(|name| match host {
            HostPattern::Exact(h) => realmgate_table::validate::cert_name_covers(name, h),
            HostPattern::Wildcard(_) => name == host,
        })
    }
}

/// Where a custom domain's ownership check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Waiting for the TXT record; checked with backoff until the deadline.
    Pending,
    /// The TXT record was seen: the domain is one of the tenant's hosts.
    Verified,
    /// Not seen before the deadline (the reason says what was found); add it again to
    /// check anew.
    Failed,
}

impl DomainState {
    pub fn name(self) -> &'static str {
        match self {
            DomainState::Pending => "pending",
            DomainState::Verified => "verified",
            DomainState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DomainState> {
        [
            DomainState::Pending,
            DomainState::Verified,
            DomainState::Failed,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }
}

/// A tenant's custom domain (`tenant_domains`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecord {
    /// Normalised (lower-case, IDNA, no trailing dot); exact, never a wildcard.
    pub domain: String,
    pub tenant: TenantId,
    pub state: DomainState,
    /// The value to publish at `_realmgate-challenge.<domain>` (public by nature).
    pub token: String,
    pub reason: Option<String>,
    pub attempts: u32,
    pub next_check_at_ms: u64,
    pub check_until_ms: u64,
    pub verified_at_ms: Option<u64>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Where a custom domain's ownership record goes: `_realmgate-challenge.<domain>`.
pub const CHALLENGE_LABEL: &str = "_realmgate-challenge";

impl DomainRecord {
    /// The name of the TXT record that proves the domain.
    pub fn txt_name(&self) -> String {
        format!("{CHALLENGE_LABEL}.{}", self.domain)
    }
}

/// Everything the routing table is compiled from, plus the version counter.
#[derive(Debug, Default)]
pub struct Model {
    /// The current table version: the registry's counter, bumped by every change the table
    /// carries (app credentials, pending domains, the audit log and the journal take none).
    pub version: u64,
    pub tenants: Tracked<TenantId, TenantRecord>,
    pub upstreams: Tracked<UpstreamName, UpstreamRecord>,
    /// API keys by id, revoked ones included (they stay listed, and out of the table).
    pub keys: Tracked<String, KeyRecord>,
    /// Certificates by name.
    pub certificates: Tracked<String, CertRecord>,
    /// ACME http-01 answers by token, while realmctl's ACME client has orders open.
    pub acme_challenges: Tracked<String, realmgate_table::AcmeChallenge>,
    /// The fleet's identity assertion: issuer (from the configuration; `None`: no section
    /// in the table) and keys.
    pub assertion: AssertionModel,
    /// Custom domains by domain (a verified one is also among its tenant's hosts).
    pub domains: Domains,
    /// App credentials by id, revoked ones included.
    pub apps: BTreeMap<String, AppRecord>,
    /// Deleted tenants, with the pools their routes used (for 410 to those pools' apps).
    pub tombstones: BTreeMap<TenantId, Vec<String>>,
    hosts: HashMap<HostPattern, TenantId>,
    /// Tenants by the parent of each of their exact hosts (`acme.example.com` under
    /// `example.com`): who a wildcard certificate covers, without a scan.
    under: HashMap<String, BTreeSet<TenantId>>,
    /// Certificate names by each of their host names: the certificates that cover a
    /// tenant's host, without a scan.
    cert_names: HashMap<HostPattern, BTreeSet<String>>,
    key_digests: HashMap<[u8; 32], String>,
    /// Key ids by tenant: a tenant's change re-decides its keys (they enter the table only
    /// with their tenant), and its deletion revokes them, without a scan of every key.
    tenant_keys: HashMap<TenantId, BTreeSet<String>>,
    /// Tenants by the pools their routes and shell use: who uses a pool, without a scan of
    /// every tenant. Kept by [`Model::put_tenant`] and [`Model::remove_tenant`] (the only
    /// writes that change a tenant's routes).
    pool_users: HashMap<String, BTreeSet<TenantId>>,
    app_digests: HashMap<[u8; 32], String>,
}

/// An app credential: lets an app read the database location of its pool's tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub id: String,
    /// What the operator called it (`todos`).
    pub name: String,
    /// The upstream pool it is bound to.
    pub pool: String,
    /// SHA-256 of the secret; the secret itself is never kept.
    pub digest: [u8; 32],
    /// The secret's first characters (`rga_AbCd`), to tell credentials apart.
    pub prefix: String,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// What was written in the model since the compiler last took it: keys of the tracked maps,
/// present or removed since.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub tenants: BTreeSet<TenantId>,
    pub upstreams: BTreeSet<UpstreamName>,
    pub keys: BTreeSet<String>,
    pub certificates: BTreeSet<String>,
    pub acme_challenges: BTreeSet<String>,
}

impl Model {
    /// Take (and forget) what was written since the last call. Shared access is enough: the
    /// compiler calls it holding the model for reading, so no write is in between.
    pub fn take_touched(&self) -> Touched {
        Touched {
            tenants: self.tenants.take_touched(),
            upstreams: self.upstreams.take_touched(),
            keys: self.keys.take_touched(),
            certificates: self.certificates.take_touched(),
            acme_challenges: self.acme_challenges.take_touched(),
        }
    }

    /// Insert or replace a key, keeping the digest index in step.
    pub fn put_key(&mut self, record: KeyRecord) {
        self.key_digests.insert(record.digest, record.id.clone());
        if let Some(t) = &record.tenant {
            self.tenant_keys
                .entry(t.clone())
                .or_default()
                .insert(record.id.clone());
        }
        if let Some(old) = self.keys.insert(record.id.clone(), record) {
            // An id keeps its tenant; should one ever move, the old tenant forgets it.
            let moved = old
                .tenant
                .filter(|t| self.keys[&old.id].tenant.as_ref() != Some(t));
            if let Some(t) = moved {
                if let Some(ids) = self.tenant_keys.get_mut(&t) {
                    ids.remove(&old.id);
                }
            }
        }
    }

    /// The ids of the keys bound to a tenant, revoked ones included.
    pub fn key_ids_of(&self, tenant: &TenantId) -> Option<&BTreeSet<String>> {
        self.tenant_keys.get(tenant)
    }

    /// The keys bound to a tenant, revoked ones included, in id order.
    pub fn keys_of<'a>(&'a self, tenant: &TenantId) -> impl Iterator<Item = &'a KeyRecord> + 'a {
        self.tenant_keys
            .get(tenant)
            .into_iter()
            .flatten()
            .filter_map(|id| self.keys.get(id))
    }

    /// Insert or replace an app credential, keeping the digest index in step.
    pub fn put_app(&mut self, record: AppRecord) {
        self.app_digests.insert(record.digest, record.id.clone());
        self.apps.insert(record.id.clone(), record);
    }

    /// The app credential with this digest, revoked or not.
    pub fn app_by_digest(&self, digest: &[u8; 32]) -> Option<&AppRecord> {
        self.apps.get(self.app_digests.get(digest)?)
    }

    /// The pools a tenant's routes (and shell) forward to.
    pub fn pools_of(t: &TenantRecord) -> Vec<String> {
        let mut pools: Vec<String> = t.wire.routes.iter().map(|r| r.upstream.clone()).collect();
        pools.extend(t.wire.shell.as_ref().and_then(|s| s.upstream.clone()));
        pools.sort();
        pools.dedup();
        pools
    }

    /// The pools a tenant (by id) forwards to; none for an unknown tenant.
    pub fn tenant_pools(&self, id: &TenantId) -> Vec<String> {
        self.tenants
            .get(id)
            .map(Model::pools_of)
            .unwrap_or_default()
    }

    /// The key with this digest, live or not.
    pub fn key_by_digest(&self, digest: &[u8; 32]) -> Option<&KeyRecord> {
        self.keys.get(self.key_digests.get(digest)?)
    }

    /// Mark every live key of a tenant revoked (the tenant is gone).
    pub fn revoke_tenant_keys(&mut self, tenant: &TenantId, at_ms: u64, version: u64) {
        let live: Vec<String> = self
            .keys_of(tenant)
            .filter(|k| k.revoked_at_ms.is_none())
            .map(|k| k.id.clone())
            .collect();
        for id in live {
            if let Some(k) = self.keys.get_mut(&id) {
                k.revoked_at_ms = Some(at_ms);
                k.table_version = version;
            }
        }
    }

    /// Which tenant holds a (normalised) host pattern.
    pub fn host_owner(&self, host: &HostPattern) -> Option<&TenantId> {
        self.hosts.get(host)
    }

    /// Insert or replace a tenant, keeping the host index in step. `hosts` are the parsed
    /// forms of `record.wire.hosts`.
    pub fn put_tenant(&mut self, id: TenantId, record: TenantRecord, hosts: Vec<HostPattern>) {
        self.remove_tenant(&id);
        self.tombstones.remove(&id);
        for host in hosts {
            if let Some(parent) = cover::exact_parent(&host) {
                self.under
                    .entry(parent.to_owned())
                    .or_default()
                    .insert(id.clone());
            }
            self.hosts.insert(host, id.clone());
        }
        for pool in Model::pools_of(&record) {
            self.pool_users.entry(pool).or_default().insert(id.clone());
        }
        self.tenants.insert(id, record);
    }

    pub fn remove_tenant(&mut self, id: &TenantId) -> Option<TenantRecord> {
        let old = self.tenants.remove(id)?;
        for pool in Model::pools_of(&old) {
            if let Some(users) = self.pool_users.get_mut(&pool) {
                users.remove(id);
                if users.is_empty() {
                    self.pool_users.remove(&pool);
                }
            }
        }
        for raw in &old.wire.hosts {
            if let Ok(p) = HostPattern::parse(raw) {
                if let Some(parent) = cover::exact_parent(&p) {
                    if let Some(set) = self.under.get_mut(parent) {
                        set.remove(id);
                        if set.is_empty() {
                            self.under.remove(parent);
                        }
                    }
                }
                if self.hosts.get(&p) == Some(id) {
                    self.hosts.remove(&p);
                }
            }
        }
        Some(old)
    }

    /// Tenants whose routes (or shell) use an upstream pool, in id order.
    pub fn users_of(&self, upstream: &UpstreamName) -> Vec<TenantId> {
        self.pool_users
            .get(upstream.as_str())
            .map(|users| users.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many tenants use an upstream pool (routes or shell).
    pub fn user_count(&self, upstream: &str) -> usize {
        self.pool_users.get(upstream).map_or(0, BTreeSet::len)
    }
}

/// Where a page after `after` starts, for `BTreeMap::range` and `BTreeSet::range`.
pub fn after_bound(after: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    (
        after.map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Unbounded,
    )
}

/// A page of `entries` (by key, ascending, from a `range(after_bound(after))`), each made by
/// `view` or skipped (`None`), and the `after` of the next page when there is one. Costs the
/// page (and the entries skipped on the way), not the map: a list endpoint at a million.
pub fn page_of<'a, V, T>(
    entries: impl Iterator<Item = (&'a str, V)>,
    limit: usize,
    mut view: impl FnMut(V) -> Option<T>,
) -> (Vec<T>, Option<String>) {
    let mut page = Vec::new();
    let mut last: Option<&str> = None;
    for (k, v) in entries {
        let Some(t) = view(v) else { continue };
        if page.len() == limit {
            // One more exists: the page ends at the last one taken.
            return (page, last.map(str::to_owned));
        }
        page.push(t);
        last = Some(k);
    }
    (page, None)
}

#[cfg(test)]
pub mod fixtures;

#[cfg(test)]
mod tests;

/// The fleet's identity assertion as realmctl keeps it.
#[derive(Debug, Default)]
pub struct AssertionModel {
    /// The assertions' `iss` (configuration `assertion.issuer`); `None` until the service
    /// starts them: no section in the table.
    pub issuer: Option<String>,
    /// How long a rotated-in key is published before it signs, and a rotated-out key after
    /// it stopped signing (ms).
    pub activation_delay_ms: u64,
    pub retire_after_ms: u64,
    /// Keys by kid.
    pub keys: BTreeMap<String, AssertionKeyRecord>,
}

/// Where an assertion key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPhase {
    /// Published, and signs from `activate_at_ms` on (a rotation gives apps time to fetch it
    /// before any assertion names it).
    Pending,
    /// Signs.
    Active,
    /// Published only (rotated out), until `retire_at_ms`.
    Published,
}

impl KeyPhase {
    pub fn name(self) -> &'static str {
        match self {
            KeyPhase::Pending => "pending",
            KeyPhase::Active => "active",
            KeyPhase::Published => "published",
        }
    }

    pub fn parse(s: &str) -> Option<KeyPhase> {
        match s {
            "pending" => Some(KeyPhase::Pending),
            "active" => Some(KeyPhase::Active),
            "published" => Some(KeyPhase::Published),
            _ => None,
        }
    }
}

/// One assertion key: the private key only sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct AssertionKeyRecord {
    pub kid: String,
    pub key_sealed: String,
    pub public: realmgate_table::assertion::PublicJwk,
    pub phase: KeyPhase,
    pub created_at_ms: u64,
    pub activate_at_ms: Option<u64>,
    pub retire_at_ms: Option<u64>,
    pub table_version: u64,
}

impl std::fmt::Debug for AssertionKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKeyRecord")
            .field("kid", &self.kid)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

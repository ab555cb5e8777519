//! The validation state of a table held incrementally: its parts in persistent maps and the
//! indices the cross-part rules need, so a [`Delta`] is checked and applied in the size of
//! the change, and a clone (to serialise in the background) costs O(1).
//!
//! The model holds what checking a delta needs and what writing the full table back needs;
//! the gateway's serving structures are built from [`CheckedDelta`]s, not from it.

mod check;
mod digest;
mod measure;
mod packed;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cross;
#[cfg(test)]
mod tests_packed;

pub use digest::state_digest;

use crate::assertion::Assertion;
use crate::delta::{AssertionChange, CheckedDelta, Delta};
use crate::host::HostPattern;
use crate::validate::{parse_cert_name, CheckedTable};
use crate::wire::{AcmeChallenge, ApiKey, Certificate, Table, Tenant, Upstream};
use digest::{PartDigest, StateSum};
use imbl::{OrdMap, OrdSet};
use packed::Packed;
use std::fmt;
use std::sync::Arc;

/// A part's identity (tenant id, pool name, key id, certificate name, ACME token), shared
/// between the part's map and the indices that point at it.
type Id = Arc<str>;

/// Part by identity, in identity order (what [`Model::to_table`] writes, and what
/// [`Model::delta_to`] diffs without visiting shared subtrees).
type Parts<T> = OrdMap<Id, Arc<Part<T>>>;

/// Who owns a host name, an issuer or a key digest: the owner's identity. A B-tree: at a
/// million tenants a hash trie's nodes cost ~500 bytes a host, these ~100 (`memory` bench).
type Owners<K> = OrdMap<K, Id>;

/// One part and its digest (subtracted from the state digest when it goes).
#[derive(Debug, Clone, PartialEq)]
struct Part<T> {
    value: T,
    digest: PartDigest,
}

/// A table's validation state, held for deltas: see the module docs.
///
/// Two models are equal when they hold the same parts at the same version (and so the same
/// indices and state digest).
#[derive(Clone, PartialEq)]
pub struct Model {
    version: u64,
    upstreams: Parts<Upstream>,
    tenants: Parts<Packed>,
    api_keys: Parts<ApiKey>,
    certificates: Parts<Certificate>,
    acme_challenges: Parts<AcmeChallenge>,
    assertion: Option<Arc<Part<Assertion>>>,
    /// Host pattern → the tenant claiming it.
    host_owner: Owners<HostPattern>,
    /// Realm issuer → the tenant whose realm it is.
    issuer_owner: Owners<String>,
    /// Pool → the tenants whose routes or shell use it (a pool in use cannot go).
    pool_users: OrdMap<Id, OrdSet<Id>>,
    /// Tenant → its API keys (a tenant with keys cannot go).
    tenant_keys: OrdMap<Id, OrdSet<Id>>,
    /// Key digest → the key with it.
    key_digests: Owners<String>,
    /// Certificate host name → the certificate served for it.
    cert_hosts: Owners<HostPattern>,
    state: StateSum,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: the parts hold private keys.
        f.debug_struct("Model")
            .field("version", &self.version)
            .field("upstreams", &self.upstreams.len())
            .field("tenants", &self.tenants.len())
            .field("api_keys", &self.api_keys.len())
            .field("certificates", &self.certificates.len())
            .field("acme_challenges", &self.acme_challenges.len())
            .field("assertion", &self.assertion.is_some())
            .field("state", &self.state)
            .finish()
    }
}

fn owners<K: Ord + Clone>() -> Owners<K> {
    OrdMap::new()
}

impl Model {
    fn empty(version: u64) -> Model {
        Model {
            version,
            upstreams: OrdMap::new(),
            tenants: OrdMap::new(),
            api_keys: OrdMap::new(),
            certificates: OrdMap::new(),
            acme_challenges: OrdMap::new(),
            assertion: None,
            host_owner: owners(),
            issuer_owner: owners(),
            pool_users: OrdMap::new(),
            tenant_keys: OrdMap::new(),
            key_digests: owners(),
            cert_hosts: owners(),
            state: StateSum::default(),
        }
    }

    /// The model of a full table as [`crate::parse`] returns it.
    pub fn from_checked(checked: &CheckedTable) -> Model {
        let t = &checked.table;
        let mut m = Model::empty(t.version);
        for (name, spec) in &t.upstreams {
            m.insert_upstream(name, spec);
        }
        // Each tenant's encoding and digest on every core, then the maps in table order.
        let packed = packed::pack_all(&t.tenants);
        for ((tenant, hosts), part) in t.tenants.iter().zip(&checked.hosts).zip(packed) {
            m.insert_packed(tenant, hosts, part);
        }
        for key in &t.api_keys {
            m.insert_key(key);
        }
        for (cert, c) in t.certificates.iter().zip(&checked.certificates) {
            m.insert_cert(cert, &c.hosts);
        }
        for c in &t.acme_challenges {
            m.insert_challenge(c);
        }
        m.set_assertion(t.assertion.as_ref());
        m
    }

    /// The version in force.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The state digest, `state:<64 hex>` (see [`crate::delta`]).
    pub fn state_digest(&self) -> String {
        self.state.to_string()
    }

    /// A tenant's part digest, `sha256:<64 hex>`, if the tenant exists.
    pub fn tenant_digest(&self, id: &str) -> Option<String> {
        self.tenants.get(id).map(|p| p.digest.to_string())
    }

    pub fn tenants_len(&self) -> usize {
        self.tenants.len()
    }

    pub fn upstreams_len(&self) -> usize {
        self.upstreams.len()
    }

    pub fn api_keys_len(&self) -> usize {
        self.api_keys.len()
    }

    pub fn certificates_len(&self) -> usize {
        self.certificates.len()
    }

    pub fn acme_challenges_len(&self) -> usize {
        self.acme_challenges.len()
    }

    /// One tenant as the table has it.
    pub fn tenant(&self, id: &str) -> Option<Tenant> {
        self.tenants.get(id).map(|p| p.value.tenant())
    }

    /// The tenant claiming a host pattern.
    pub fn host_owner(&self, pattern: &HostPattern) -> Option<&str> {
        self.host_owner.get(pattern).map(|id| &**id)
    }

    /// How many tenants use a pool (routes or shell).
    pub fn upstream_users(&self, pool: &str) -> usize {
        self.pool_users.get(pool).map_or(0, OrdSet::len)
    }

    /// The full table at the model's version: tenants by id, keys by id, certificates by
    /// name, ACME answers by token. [`crate::parse`] accepts it, and the model of it equals
    /// this one.
    pub fn to_table(&self) -> Table {
        Table {
            version: self.version,
            upstreams: self
                .upstreams
                .iter()
                .map(|(k, p)| (k.to_string(), p.value.clone()))
                .collect(),
            tenants: self.tenants.values().map(|p| p.value.tenant()).collect(),
            api_keys: self.api_keys.values().map(|p| p.value.clone()).collect(),
            certificates: self
                .certificates
                .values()
                .map(|p| p.value.clone())
                .collect(),
            acme_challenges: self
                .acme_challenges
                .values()
                .map(|p| p.value.clone())
                .collect(),
            assertion: self.assertion.as_ref().map(|p| p.value.clone()),
        }
    }

    /// The delta that takes this model to `newer` (base this version, version `newer`'s,
    /// `newer`'s state digest). Subtrees the two models share are not visited, so for a
    /// model derived from this one by a few deltas it costs about the size of the change.
    /// It is checked like any other delta: if `newer` is not newer, it is refused.
    pub fn delta_to(&self, newer: &Model) -> Delta {
        let mut d = Delta {
            base: self.version,
            version: newer.version,
            state_digest: newer.state_digest(),
            ..Delta::default()
        };
        diff(
            &self.upstreams,
            &newer.upstreams,
            &mut d.delete_upstreams,
            |k, v| {
                d.upstreams.insert(k.to_string(), v.clone());
            },
        );
        diff(
            &self.tenants,
            &newer.tenants,
            &mut d.delete_tenants,
            |_, v| {
                d.tenants.push(v.tenant());
            },
        );
        diff(
            &self.api_keys,
            &newer.api_keys,
            &mut d.delete_api_keys,
            |_, v| {
                d.api_keys.push(v.clone());
            },
        );
        diff(
            &self.certificates,
            &newer.certificates,
            &mut d.delete_certificates,
            |_, v| d.certificates.push(v.clone()),
        );
        diff(
            &self.acme_challenges,
            &newer.acme_challenges,
            &mut d.delete_acme_challenges,
            |_, v| d.acme_challenges.push(v.clone()),
        );
        if self.assertion != newer.assertion {
            d.assertion = Some(AssertionChange {
                set: newer.assertion.as_ref().map(|p| p.value.clone()),
            });
        }
        d
    }

    /// Apply a delta [`Model::check`]ed (or [`Model::preview`]ed) against this model at
    /// this version; O(size of the change), log factors aside. A delta checked against
    /// another state leaves the model meaningless: check, then apply, under one owner.
    pub fn apply(&mut self, d: &CheckedDelta) {
        self.apply_pausing(d, &mut || {});
    }

    /// [`Model::apply`], calling `pause` between its parts: a caller sharing a core with
    /// latency-bound work steps aside there (the gateway's `snapshot::pace`).
    pub fn apply_pausing(&mut self, d: &CheckedDelta, pause: &mut dyn FnMut()) {
        debug_assert_eq!(d.base, self.version, "a delta applies to its own base");
        // Everything that goes or is replaced leaves first, so that a host moving from one
        // tenant to another in the same delta is not taken away from its new owner.
        for name in d
            .delete_upstreams
            .iter()
            .chain(d.upstreams.iter().map(|u| &u.0))
        {
            self.remove_upstream(name);
        }
        for id in &d.delete_tenants {
            pause();
            self.remove_tenant(id, None);
        }
        for (tenant, hosts) in &d.tenants {
            pause();
            self.remove_tenant(&tenant.id, Some((tenant, hosts)));
        }
        for id in d
            .delete_api_keys
            .iter()
            .chain(d.api_keys.iter().map(|k| &k.0.id))
        {
            pause();
            self.remove_key(id);
        }
        let certs = d.certificates.iter().map(|c| &c.0.name);
        for name in d.delete_certificates.iter().chain(certs) {
            self.remove_cert(name);
        }
        let tokens = d.acme_challenges.iter().map(|c| &c.0.token);
        for token in d.delete_acme_challenges.iter().chain(tokens) {
            self.remove_challenge(token);
        }
        for (name, spec) in &d.upstreams {
            self.insert_upstream(name, spec);
        }
        for (tenant, hosts) in &d.tenants {
            pause();
            self.insert_tenant(tenant, hosts);
        }
        for (key, _) in &d.api_keys {
            pause();
            self.insert_key(key);
        }
        for (cert, checked) in &d.certificates {
            self.insert_cert(cert, &checked.hosts);
        }
        for (c, _) in &d.acme_challenges {
            self.insert_challenge(c);
        }
        if let Some(a) = &d.assertion {
            self.set_assertion(a.as_ref());
        }
        self.version = d.version;
        debug_assert_eq!(self.state_digest(), d.state_digest, "checked state digest");
    }

    fn insert_upstream(&mut self, name: &str, spec: &Upstream) {
        let digest = PartDigest::upstream(name, spec);
        self.state.add(&digest);
        let part = Arc::new(Part {
            value: spec.clone(),
            digest,
        });
        self.upstreams.insert(Id::from(name), part);
    }

    fn remove_upstream(&mut self, name: &str) {
        if let Some(p) = self.upstreams.remove(name) {
            self.state.sub(&p.digest);
        }
    }

    fn insert_tenant(&mut self, tenant: &Tenant, hosts: &[HostPattern]) {
        self.insert_packed(tenant, hosts, Packed::part(tenant));
    }

    /// Insert `tenant`, whose encoding and digest are `part` ([`Packed::part`]).
    fn insert_packed(&mut self, tenant: &Tenant, hosts: &[HostPattern], part: Part<Packed>) {
        let id = Id::from(tenant.id.as_str());
        for h in hosts {
            self.host_owner.insert(h.clone(), id.clone());
        }
        if let Some(realm) = &tenant.realm {
            self.issuer_owner.insert(realm.issuer.clone(), id.clone());
        }
        for pool in pools_of(tenant) {
            let pool = match self.upstreams.get_key_value(pool) {
                Some((k, _)) => k.clone(),
                None => Id::from(pool),
            };
            self.pool_users.entry(pool).or_default().insert(id.clone());
        }
        self.state.add(&part.digest);
        self.tenants.insert(id, Arc::new(part));
    }

    /// Take tenant `id` out, or, when `next` replaces it, take out only what `next` no longer
    /// claims: a host, the issuer or a pool it keeps stays in its index (the insert then finds
    /// it there), so a suspension or a changed route leaves the indices' B-trees as they were.
    fn remove_tenant(&mut self, id: &str, next: Option<(&Tenant, &[HostPattern])>) {
        let p = match next {
            // Replaced: its entry stays for the insert to overwrite in place.
            Some(_) => self.tenants.get(id).map(Arc::clone),
            None => self.tenants.remove(id),
        };
        let Some(p) = p else {
            return;
        };
        self.state.sub(&p.digest);
        let tenant = &p.value.tenant();
        let next_tenant = next.map(|(t, _)| t);
        if next_tenant.is_none_or(|t| t.hosts != tenant.hosts) {
            let kept = next.map_or(&[][..], |(_, hosts)| hosts);
            // The tenant's hosts were valid when it entered: they parse the same way again.
            for h in &tenant.hosts {
                if let Ok(pattern) = HostPattern::parse(h) {
                    if !kept.contains(&pattern)
                        && self.host_owner.get(&pattern).is_some_and(|o| **o == *id)
                    {
                        self.host_owner.remove(&pattern);
                    }
                }
            }
        }
        if let Some(realm) = &tenant.realm {
            let kept = next_tenant
                .and_then(|t| t.realm.as_ref())
                .is_some_and(|r| r.issuer == realm.issuer);
            if !kept
                && self
                    .issuer_owner
                    .get(&realm.issuer)
                    .is_some_and(|o| **o == *id)
            {
                self.issuer_owner.remove(&realm.issuer);
            }
        }
        let kept = next_tenant.map(pools_of).unwrap_or_default();
        for pool in pools_of(tenant) {
            if kept.binary_search(&pool).is_err() {
                remove_pair(&mut self.pool_users, pool, id);
            }
        }
    }

    fn insert_key(&mut self, key: &ApiKey) {
        let id = Id::from(key.id.as_str());
        self.key_digests.insert(key.digest.clone(), id.clone());
        if let Some(t) = &key.tenant {
            let t = match self.tenants.get_key_value(t.as_str()) {
                Some((k, _)) => k.clone(),
                None => Id::from(t.as_str()),
            };
            self.tenant_keys.entry(t).or_default().insert(id.clone());
        }
        let digest = PartDigest::of(digest::API_KEY, key);
        self.state.add(&digest);
        let part = Arc::new(Part {
            value: key.clone(),
            digest,
        });
        self.api_keys.insert(id, part);
    }

    fn remove_key(&mut self, id: &str) {
        let Some(p) = self.api_keys.remove(id) else {
            return;
        };
        self.state.sub(&p.digest);
        let key = &p.value;
        if self
            .key_digests
            .get(&key.digest)
            .is_some_and(|o| **o == *id)
        {
            self.key_digests.remove(&key.digest);
        }
        if let Some(t) = &key.tenant {
            remove_pair(&mut self.tenant_keys, t, id);
        }
    }

    fn insert_cert(&mut self, cert: &Certificate, hosts: &[HostPattern]) {
        let name = Id::from(cert.name.as_str());
        for h in hosts {
            self.cert_hosts.insert(h.clone(), name.clone());
        }
        let digest = PartDigest::of(digest::CERTIFICATE, cert);
        self.state.add(&digest);
        let part = Arc::new(Part {
            value: cert.clone(),
            digest,
        });
        self.certificates.insert(name, part);
    }

    fn remove_cert(&mut self, name: &str) {
        let Some(p) = self.certificates.remove(name) else {
            return;
        };
        self.state.sub(&p.digest);
        for h in &p.value.hosts {
            if let Ok(pattern) = parse_cert_name(h) {
                if self.cert_hosts.get(&pattern).is_some_and(|o| **o == *name) {
                    self.cert_hosts.remove(&pattern);
                }
            }
        }
    }

    fn insert_challenge(&mut self, c: &AcmeChallenge) {
        let digest = PartDigest::of(digest::ACME_CHALLENGE, c);
        self.state.add(&digest);
        let part = Arc::new(Part {
            value: c.clone(),
            digest,
        });
        self.acme_challenges
            .insert(Id::from(c.token.as_str()), part);
    }

    fn remove_challenge(&mut self, token: &str) {
        if let Some(p) = self.acme_challenges.remove(token) {
            self.state.sub(&p.digest);
        }
    }

    fn set_assertion(&mut self, a: Option<&Assertion>) {
        if let Some(old) = self.assertion.take() {
            self.state.sub(&old.digest);
        }
        self.assertion = a.map(|a| {
            let digest = PartDigest::of(digest::ASSERTION, a);
            self.state.add(&digest);
            Arc::new(Part {
                value: a.clone(),
                digest,
            })
        });
    }
}

/// The pools a tenant uses: its routes' and its shell's, each once.
fn pools_of(tenant: &Tenant) -> Vec<&str> {
    let mut out: Vec<&str> = tenant.routes.iter().map(|r| r.upstream.as_str()).collect();
    if let Some(up) = tenant.shell.as_ref().and_then(|s| s.upstream.as_deref()) {
        out.push(up);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Take `member` out of `outer[key]`, and the set out of `outer` once it is empty (so that
/// equal tables make equal models).
fn remove_pair(outer: &mut OrdMap<Id, OrdSet<Id>>, key: &str, member: &str) {
    let Some(set) = outer.get_mut(key) else {
        return;
    };
    set.remove(member);
    if set.is_empty() {
        outer.remove(key);
    }
}

/// Parts added or changed from `old` to `new` (to `upsert`), and removed (to `deleted`).
fn diff<T: Clone + PartialEq>(
    old: &Parts<T>,
    new: &Parts<T>,
    deleted: &mut Vec<String>,
    mut upsert: impl FnMut(&Id, &T),
) {
    use imbl::ordmap::DiffItem;
    for item in old.diff(new) {
        match item {
            DiffItem::Add(k, v) => upsert(k, &v.value),
            DiffItem::Update { new: (k, v), .. } => upsert(k, &v.value),
            DiffItem::Remove(k, _) => deleted.push(k.to_string()),
        }
    }
}

//! Checking a delta against the model: the base, each listed part by the rules of a full
//! table, and the cross-part rules against the table as it will be after the delta.

use super::digest::StateSum;
use super::{Model, Owners};
use crate::delta::{CheckedDelta, Delta, DeltaError};
use crate::host::HostPattern;
use crate::problem::Problem;
use crate::validate::{
    self, cert_host_taken, host_claimed, issuer_taken, name_certificate, TenantContext,
    MAX_ACME_CHALLENGES, MAX_API_KEYS, MAX_CERTIFICATES,
};
use std::collections::{HashMap, HashSet};

impl Model {
    /// Check a delta against the table in force, changing nothing: its base, every rule a
    /// full table has for the parts it lists, the cross-part rules against the table as it
    /// will be, and its state digest.
    pub fn check(&self, delta: &Delta) -> Result<CheckedDelta, DeltaError> {
        self.check_pausing(delta, &mut || {})
    }

    /// [`Model::check`], calling `pause` between its steps and its tenants (see
    /// [`Model::apply_pausing`]).
    pub fn check_pausing(
        &self,
        delta: &Delta,
        pause: &mut dyn FnMut(),
    ) -> Result<CheckedDelta, DeltaError> {
        let (checked, computed) = self.plan(delta, true, pause)?;
        if computed != delta.state_digest {
            return Err(DeltaError::DigestMismatch {
                expected: delta.state_digest.clone(),
                computed,
            });
        }
        Ok(checked)
    }

    /// [`Model::check`] without the state digest: what the delta would be checked as, and
    /// the state digest the table would have (the sender fills the field in with it).
    pub fn preview(&self, delta: &Delta) -> Result<(CheckedDelta, String), DeltaError> {
        self.plan(delta, false, &mut || {})
    }

    fn plan(
        &self,
        d: &Delta,
        digest_given: bool,
        pause: &mut dyn FnMut(),
    ) -> Result<(CheckedDelta, String), DeltaError> {
        if d.base != self.version {
            return Err(DeltaError::WrongBase {
                current: self.version,
                offered_base: d.base,
            });
        }
        let mut c = Checker {
            m: self,
            d,
            problems: Vec::new(),
            pause,
        };
        if d.version <= d.base {
            c.problems.push(Problem::new(
                "version",
                format!("must be greater than base ({})", d.base),
            ));
        }
        if digest_given && !StateSum::is_well_formed(&d.state_digest) {
            c.problems.push(Problem::new(
                "state_digest",
                "must be state: and 64 lower-case hex digits",
            ));
        }
        let s = c.sets();
        (c.pause)();
        let checked = c.parts(&s);
        if !c.problems.is_empty() {
            return Err(DeltaError::Invalid(c.problems));
        }
        (c.pause)();
        let state = self.state_after(&checked);
        Ok((
            CheckedDelta {
                state_digest: state.clone(),
                ..checked
            },
            state,
        ))
    }
}

/// What the delta names, by kind: upserted (identity → first index) and deleted.
struct Sets<'d> {
    up_delete: HashSet<&'d str>,
    tenant_upsert: HashMap<&'d str, usize>,
    tenant_delete: HashSet<&'d str>,
    key_upsert: HashMap<&'d str, usize>,
    key_delete: HashSet<&'d str>,
    cert_upsert: HashMap<&'d str, usize>,
    cert_delete: HashSet<&'d str>,
}

impl Sets<'_> {
    /// Whether the delta replaces or removes the tenant: its current claims do not count.
    fn tenant_touched(&self, id: &str) -> bool {
        self.tenant_upsert.contains_key(id) || self.tenant_delete.contains(id)
    }

    fn key_touched(&self, id: &str) -> bool {
        self.key_upsert.contains_key(id) || self.key_delete.contains(id)
    }

    fn cert_touched(&self, name: &str) -> bool {
        self.cert_upsert.contains_key(name) || self.cert_delete.contains(name)
    }
}

/// First index of each identity in an upsert list.
fn first_indices<'d>(ids: impl Iterator<Item = &'d str>) -> HashMap<&'d str, usize> {
    let mut out = HashMap::new();
    for (i, id) in ids.enumerate() {
        out.entry(id).or_insert(i);
    }
    out
}

struct Checker<'a, 'p> {
    m: &'a Model,
    d: &'a Delta,
    problems: Vec<Problem>,
    /// Called between tenants (see [`Model::check_pausing`]).
    pause: &'p mut dyn FnMut(),
}

impl<'a> Checker<'a, '_> {
    /// The delete lists checked (no repeats, each part exists and is not also upserted),
    /// and every identity the delta names.
    fn sets(&mut self) -> Sets<'a> {
        let (m, d) = (self.m, self.d);
        let v = m.version;
        let tenant_upsert = first_indices(d.tenants.iter().map(|t| t.id.as_str()));
        let key_upsert = first_indices(d.api_keys.iter().map(|k| k.id.as_str()));
        let cert_upsert = first_indices(d.certificates.iter().map(|c| c.name.as_str()));
        let chal_upsert = first_indices(d.acme_challenges.iter().map(|c| c.token.as_str()));
        let p = &mut self.problems;
        let up_delete = deletes(
            &d.delete_upstreams,
            "delete_upstreams",
            "upstream",
            v,
            p,
            |n| (m.upstreams.contains_key(n), d.upstreams.contains_key(n)),
        );
        let tenant_delete = deletes(&d.delete_tenants, "delete_tenants", "tenant", v, p, |n| {
            (m.tenants.contains_key(n), tenant_upsert.contains_key(n))
        });
        let key_delete = deletes(
            &d.delete_api_keys,
            "delete_api_keys",
            "API key",
            v,
            p,
            |n| (m.api_keys.contains_key(n), key_upsert.contains_key(n)),
        );
        let field = "delete_certificates";
        let cert_delete = deletes(&d.delete_certificates, field, "certificate", v, p, |n| {
            (m.certificates.contains_key(n), cert_upsert.contains_key(n))
        });
        let field = "delete_acme_challenges";
        deletes(&d.delete_acme_challenges, field, "ACME token", v, p, |n| {
            (
                m.acme_challenges.contains_key(n),
                chal_upsert.contains_key(n),
            )
        });
        Sets {
            up_delete,
            tenant_upsert,
            tenant_delete,
            key_upsert,
            key_delete,
            cert_upsert,
            cert_delete,
        }
    }

    /// Every listed part checked; what validation learned about each, in delta order.
    fn parts(&mut self, s: &Sets<'a>) -> CheckedDelta {
        let d = self.d;
        self.pools_in_use(s);
        let tenants = self.tenants(s);
        self.tenant_keys_remain(s);
        let api_keys = self.keys(s);
        let certificates = self.certificates(s);
        let acme_challenges = self.challenges();
        self.maxima(s);
        let assertion = d.assertion.as_ref().map(|change| {
            match &change.set {
                Some(a) => {
                    for mut p in validate::assertion(a) {
                        let rest = p.at.strip_prefix("assertion").unwrap_or(&p.at);
                        p.at = format!("assertion.set{rest}");
                        self.problems.push(p);
                    }
                }
                None if self.m.assertion.is_none() => self.problems.push(Problem::new(
                    "assertion.set",
                    "the table has no assertion section to remove",
                )),
                None => {}
            }
            change.set.clone()
        });
        for (name, spec) in &d.upstreams {
            let mut ps: Vec<Problem> = validate::upstream_name(name).into_iter().collect();
            ps.extend(validate::upstream(spec));
            self.extend_under(ps, &format!("upstreams.{name}"));
        }
        CheckedDelta {
            base: d.base,
            version: d.version,
            state_digest: String::new(),
            upstreams: d
                .upstreams
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delete_upstreams: d.delete_upstreams.clone(),
            tenants,
            delete_tenants: d.delete_tenants.clone(),
            api_keys,
            delete_api_keys: d.delete_api_keys.clone(),
            certificates,
            delete_certificates: d.delete_certificates.clone(),
            acme_challenges,
            delete_acme_challenges: d.delete_acme_challenges.clone(),
            assertion,
        }
    }

    fn extend_under(&mut self, ps: Vec<Problem>, prefix: &str) {
        self.problems
            .extend(ps.into_iter().map(|p| p.under(prefix)));
    }

    /// A pool the delta deletes must have no user left: an unchanged tenant's route or
    /// shell still naming it is a problem (an upserted tenant's is that tenant's).
    fn pools_in_use(&mut self, s: &Sets<'a>) {
        for (i, pool) in self.d.delete_upstreams.iter().enumerate() {
            let Some(users) = self.m.pool_users.get(pool.as_str()) else {
                continue;
            };
            if let Some(user) = users.iter().find(|t| !s.tenant_touched(t)) {
                self.problems.push(Problem::new(
                    format!("delete_upstreams[{i}]"),
                    format!(
                        "upstream {pool:?} is still used by tenant {user:?} ({} tenants use it): move their routes first, or change them in the same delta",
                        users.len()
                    ),
                ));
            }
        }
    }

    /// A tenant the delta deletes must have no API key left.
    fn tenant_keys_remain(&mut self, s: &Sets<'a>) {
        for (i, id) in self.d.delete_tenants.iter().enumerate() {
            let Some(keys) = self.m.tenant_keys.get(id.as_str()) else {
                continue;
            };
            if let Some(key) = keys.iter().find(|k| !s.key_touched(k)) {
                self.problems.push(Problem::new(
                    format!("delete_tenants[{i}]"),
                    format!(
                        "tenant {id:?} still has API key {key:?}: delete its keys in the same delta"
                    ),
                ));
            }
        }
    }

    fn tenants(&mut self, s: &Sets<'a>) -> Vec<(crate::wire::Tenant, Vec<HostPattern>)> {
        let (m, d) = (self.m, self.d);
        let has_upstream = |name: &str| {
            d.upstreams.contains_key(name)
                || (m.upstreams.contains_key(name) && !s.up_delete.contains(name))
        };
        let ctx = TenantContext {
            has_upstream: &has_upstream,
            realm_supplied: false,
            skip: validate::Skip::default(),
        };
        let mut hosts_claimed: HashMap<HostPattern, usize> = HashMap::new();
        let mut issuers: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(d.tenants.len());
        for (j, t) in d.tenants.iter().enumerate() {
            (self.pause)();
            let mut ps: Vec<Problem> = validate::tenant_id(&t.id).into_iter().collect();
            match s.tenant_upsert.get(t.id.as_str()) {
                Some(&first) if first != j && ps.is_empty() => ps.push(Problem::new(
                    "id",
                    format!("tenant id {:?} already used by tenants[{first}]", t.id),
                )),
                _ => {}
            }
            let (hosts, mut more) = validate::tenant_and_hosts(t, &ctx);
            ps.append(&mut more);
            for pattern in &hosts {
                let owner = match hosts_claimed.get(pattern) {
                    Some(&other) => Some(d.tenants[other].id.as_str()),
                    None => {
                        hosts_claimed.insert(pattern.clone(), j);
                        untouched_owner(&m.host_owner, pattern, |o| s.tenant_touched(o))
                    }
                };
                if let Some(owner) = owner.filter(|o| *o != t.id) {
                    ps.push(host_claimed(t, pattern, owner));
                }
            }
            if let Some(realm) = &t.realm {
                let issuer = realm.issuer.as_str();
                let owner = match issuers.get(issuer) {
                    Some(&other) => Some(d.tenants[other].id.as_str()),
                    None => {
                        issuers.insert(issuer, j);
                        untouched_owner(&m.issuer_owner, issuer, |o| s.tenant_touched(o))
                    }
                };
                if let Some(owner) = owner.filter(|o| *o != t.id) {
                    ps.push(issuer_taken(owner));
                }
            }
            self.extend_under(ps, &format!("tenants[{j}]"));
            out.push((t.clone(), hosts));
        }
        out
    }

    fn keys(&mut self, s: &Sets<'a>) -> Vec<(crate::wire::ApiKey, Option<u64>)> {
        let (m, d) = (self.m, self.d);
        let mut digests: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(d.api_keys.len());
        for (k, key) in d.api_keys.iter().enumerate() {
            let (expiry, mut ps) = match validate::api_key(key) {
                Ok(e) => (e, Vec::new()),
                Err(ps) => (None, ps),
            };
            let id_ok = !ps.iter().any(|p| p.at == "id");
            match s.key_upsert.get(key.id.as_str()) {
                Some(&first) if first != k && id_ok => ps.push(Problem::new(
                    "id",
                    format!("key id {:?} already used by api_keys[{first}]", key.id),
                )),
                _ => {}
            }
            if crate::is_key_digest(&key.digest) {
                match digests.get(key.digest.as_str()) {
                    Some(&first) => ps.push(Problem::new(
                        "digest",
                        format!("digest already used by api_keys[{first}]"),
                    )),
                    None => {
                        digests.insert(&key.digest, k);
                        let owner = untouched_owner(&m.key_digests, key.digest.as_str(), |o| {
                            s.key_touched(o)
                        });
                        if let Some(owner) = owner.filter(|o| *o != key.id) {
                            ps.push(Problem::new(
                                "digest",
                                format!("digest already used by API key {owner:?}"),
                            ));
                        }
                    }
                }
            }
            if let Some(tenant) = &key.tenant {
                let exists = s.tenant_upsert.contains_key(tenant.as_str())
                    || (m.tenants.contains_key(tenant.as_str())
                        && !s.tenant_delete.contains(tenant.as_str()));
                if !exists {
                    ps.push(Problem::new("tenant", format!("unknown tenant {tenant:?}")));
                }
            }
            self.extend_under(ps, &format!("api_keys[{k}]"));
            out.push((key.clone(), expiry));
        }
        out
    }

    fn certificates(
        &mut self,
        s: &Sets<'a>,
    ) -> Vec<(crate::wire::Certificate, validate::CheckedCert)> {
        let (m, d) = (self.m, self.d);
        let mut hosts_served: HashMap<HostPattern, usize> = HashMap::new();
        let mut out = Vec::with_capacity(d.certificates.len());
        for (c, cert) in d.certificates.iter().enumerate() {
            let mut ps = Vec::new();
            match s.cert_upsert.get(cert.name.as_str()) {
                Some(&first) if first != c => ps.push(Problem::new(
                    "name",
                    format!(
                        "certificate name {:?} already used by certificates[{first}]",
                        cert.name
                    ),
                )),
                _ => {}
            }
            match validate::certificate(cert) {
                Ok(checked) => {
                    for (h, host) in checked.hosts.iter().enumerate() {
                        let owner = match hosts_served.get(host) {
                            Some(&other) => Some(d.certificates[other].name.as_str()),
                            None => {
                                hosts_served.insert(host.clone(), c);
                                untouched_owner(&m.cert_hosts, host, |o| s.cert_touched(o))
                            }
                        };
                        if let Some(owner) = owner.filter(|o| *o != cert.name) {
                            ps.push(cert_host_taken(h, host, owner));
                        }
                    }
                    out.push((cert.clone(), checked));
                }
                Err(mut more) => ps.append(&mut more),
            }
            name_certificate(&cert.name, &mut ps);
            self.extend_under(ps, &format!("certificates[{c}]"));
        }
        out
    }

    fn challenges(&mut self) -> Vec<(crate::wire::AcmeChallenge, validate::CheckedChallenge)> {
        let d = self.d;
        let mut tokens: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(d.acme_challenges.len());
        for (i, c) in d.acme_challenges.iter().enumerate() {
            let mut ps = Vec::new();
            match validate::challenge(c) {
                Ok(checked) => out.push((c.clone(), checked)),
                Err(mut more) => ps.append(&mut more),
            }
            if validate::is_acme_token(&c.token) {
                if let Some(first) = tokens.insert(&c.token, i) {
                    ps.push(Problem::new(
                        "token",
                        format!("token already used by acme_challenges[{first}]"),
                    ));
                }
            }
            self.extend_under(ps, &format!("acme_challenges[{i}]"));
        }
        out
    }

    /// The per-table maxima, counted as the table will be.
    fn maxima(&mut self, s: &Sets<'a>) {
        let (m, d) = (self.m, self.d);
        let after = |now: usize,
                     upserts: &HashMap<&str, usize>,
                     exists: &dyn Fn(&str) -> bool,
                     deletes: usize| {
            let added = upserts.keys().filter(|k| !exists(k)).count();
            (now + added).saturating_sub(deletes)
        };
        let keys = after(
            m.api_keys.len(),
            &s.key_upsert,
            &|k| m.api_keys.contains_key(k),
            s.key_delete.len(),
        );
        if keys > MAX_API_KEYS {
            self.problems.push(Problem::new(
                "api_keys",
                format!("more than {MAX_API_KEYS} keys"),
            ));
        }
        let certs = after(
            m.certificates.len(),
            &s.cert_upsert,
            &|c| m.certificates.contains_key(c),
            s.cert_delete.len(),
        );
        if certs > MAX_CERTIFICATES {
            self.problems.push(Problem::new(
                "certificates",
                format!("more than {MAX_CERTIFICATES} certificates"),
            ));
        }
        let chal_upsert = first_indices(d.acme_challenges.iter().map(|c| c.token.as_str()));
        let deleted: HashSet<&str> = d
            .delete_acme_challenges
            .iter()
            .map(String::as_str)
            .filter(|t| m.acme_challenges.contains_key(*t))
            .collect();
        let challenges = after(
            m.acme_challenges.len(),
            &chal_upsert,
            &|t| m.acme_challenges.contains_key(t),
            deleted.len(),
        );
        if challenges > MAX_ACME_CHALLENGES {
            self.problems.push(Problem::new(
                "acme_challenges",
                format!("more than {MAX_ACME_CHALLENGES} challenges"),
            ));
        }
    }
}

/// The current owner of `key` if the delta leaves that owner as it is (a touched owner's
/// claims are replaced by what the delta says).
fn untouched_owner<'m, K, Q>(
    index: &'m Owners<K>,
    key: &Q,
    touched: impl Fn(&str) -> bool,
) -> Option<&'m str>
where
    K: Ord + Clone + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    index.get(key).map(|o| &**o).filter(|o| !touched(o))
}

/// A delete list checked: each name once, existing, not also upserted. Returns the names
/// that exist (problems or not, what the other rules take as going).
fn deletes<'d>(
    list: &'d [String],
    field: &str,
    kind: &str,
    version: u64,
    problems: &mut Vec<Problem>,
    lookup: impl Fn(&str) -> (bool, bool),
) -> HashSet<&'d str> {
    let mut out = HashSet::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        let at = || format!("{field}[{i}]");
        let (exists, upserted) = lookup(name);
        if !exists {
            problems.push(Problem::new(
                at(),
                format!("no {kind} {name:?} in the table (version {version})"),
            ));
        } else if upserted {
            problems.push(Problem::new(
                at(),
                format!("{kind} {name:?} is both upserted and deleted in this delta"),
            ));
        } else if !out.insert(name.as_str()) {
            problems.push(Problem::new(at(), format!("{name:?} listed twice")));
        }
    }
    out
}

//! Custom domains in the model, indexed so that neither a page nor a change costs the whole
//! registry: by domain, by tenant (a tenant's page, its deletion) and, for the pending ones,
//! by when their next ownership check is due.

use super::{DomainRecord, DomainState};
use crate::ids::TenantId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Default)]
pub struct Domains {
    all: BTreeMap<String, DomainRecord>,
    by_tenant: HashMap<TenantId, BTreeSet<String>>,
    /// The pending ones, as (next check at, domain).
    due: BTreeSet<(u64, String)>,
}

impl Domains {
    pub fn get(&self, domain: &str) -> Option<&DomainRecord> {
        self.all.get(domain)
    }

    /// Add or replace the record of `r.domain`; the one it replaced.
    pub fn insert(&mut self, r: DomainRecord) -> Option<DomainRecord> {
        let old = self.remove(&r.domain);
        self.by_tenant
            .entry(r.tenant.clone())
            .or_default()
            .insert(r.domain.clone());
        if r.state == DomainState::Pending {
            self.due.insert((r.next_check_at_ms, r.domain.clone()));
        }
        self.all.insert(r.domain.clone(), r);
        old
    }

    pub fn remove(&mut self, domain: &str) -> Option<DomainRecord> {
        let old = self.all.remove(domain)?;
        if let Some(set) = self.by_tenant.get_mut(&old.tenant) {
            set.remove(domain);
            if set.is_empty() {
                self.by_tenant.remove(&old.tenant);
            }
        }
        self.due.remove(&(old.next_check_at_ms, old.domain.clone()));
        Some(old)
    }

    /// Every domain of `tenant` leaves: in the size of its own list.
    pub fn remove_tenant(&mut self, tenant: &TenantId) {
        for d in self.by_tenant.remove(tenant).unwrap_or_default() {
            if let Some(old) = self.all.remove(&d) {
                self.due.remove(&(old.next_check_at_ms, d));
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &DomainRecord> {
        self.all.values()
    }

    /// The domains after `after` (all of them, or `tenant`'s), in domain order.
    pub fn after<'a>(
        &'a self,
        tenant: Option<&TenantId>,
        after: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a DomainRecord)> + 'a> {
        let bound = super::after_bound(after);
        match tenant {
            None => Box::new(
                self.all
                    .range::<str, _>(bound)
                    .map(|(k, v)| (k.as_str(), v)),
            ),
            Some(t) => Box::new(
                self.by_tenant
                    .get(t)
                    .into_iter()
                    .flat_map(move |set| set.range::<str, _>(bound))
                    .filter_map(|d| self.all.get_key_value(d))
                    .map(|(k, v)| (k.as_str(), v)),
            ),
        }
    }

    /// The pending domains whose check is due at `now`, soonest first.
    pub fn due(&self, now: u64) -> impl Iterator<Item = &DomainRecord> {
        self.due
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .filter_map(|(_, d)| self.all.get(d))
    }

    /// When the next pending check is due.
    pub fn next_due(&self) -> Option<u64> {
        self.due.first().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(domain: &str, tenant: &str, state: DomainState, at: u64) -> DomainRecord {
        DomainRecord {
            domain: domain.into(),
            tenant: TenantId::parse(tenant).expect("id"),
            state,
            token: "t".into(),
            reason: None,
            attempts: 0,
            next_check_at_ms: at,
            check_until_ms: at + 1000,
            verified_at_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn names<'a>(it: impl Iterator<Item = (&'a str, &'a DomainRecord)>) -> Vec<&'a str> {
        it.map(|(d, _)| d).collect()
    }

    #[test]
    fn indexes_follow_every_insert_replace_and_removal() {
        let mut d = Domains::default();
        let acme = TenantId::parse("acme").expect("id");
        let hooli = TenantId::parse("hooli").expect("id");
        d.insert(record("a.example", "acme", DomainState::Pending, 30));
        d.insert(record("b.example", "hooli", DomainState::Pending, 10));
        d.insert(record("c.example", "acme", DomainState::Verified, 5));
        assert_eq!(
            names(d.after(None, None)),
            ["a.example", "b.example", "c.example"]
        );
        assert_eq!(
            names(d.after(Some(&acme), None)),
            ["a.example", "c.example"]
        );
        assert_eq!(
            names(d.after(Some(&acme), Some("a.example"))),
            ["c.example"]
        );
        assert_eq!(names(d.after(None, Some("b.example"))), ["c.example"]);
        // Only pending domains are due, soonest first; a verified one never is.
        let due: Vec<_> = d.due(100).map(|r| r.domain.as_str()).collect();
        assert_eq!(due, ["b.example", "a.example"]);
        assert_eq!(d.due(20).count(), 1);
        assert_eq!(d.next_due(), Some(10));

        // A replaced record leaves no stale due entry behind, nor an old owner.
        let mut moved = record("b.example", "acme", DomainState::Verified, 10);
        moved.verified_at_ms = Some(11);
        let old = d.insert(moved).expect("replaced");
        assert_eq!(old.tenant, hooli);
        assert_eq!(d.next_due(), Some(30));
        assert_eq!(names(d.after(Some(&hooli), None)), Vec::<&str>::new());
        assert_eq!(
            names(d.after(Some(&acme), None)),
            ["a.example", "b.example", "c.example"]
        );

        d.remove_tenant(&acme);
        assert_eq!(d.values().count(), 0);
        assert_eq!(d.next_due(), None);
        assert!(d.by_tenant.is_empty());
        assert!(d.remove("a.example").is_none());
    }
}

//! A tenant's host entries normalised, and the rule that every host pattern belongs to one
//! tenant (the one-pass validation's; the sharded parse checks it with [`crate::claims`]).

use super::{host_claimed, map_with_capacity, FastMap, Problem, MAX_HOSTS_PER_TENANT};
use crate::host::HostPattern;
use crate::wire::{Table, Tenant};

/// Each host entry normalised; a bad entry is reported and left out.
pub(super) fn parse_hosts(tenant: &Tenant, problems: &mut Vec<Problem>) -> Vec<HostPattern> {
    if tenant.hosts.is_empty() {
        problems.push(Problem::new("hosts", "needs at least one host"));
    }
    if tenant.hosts.len() > MAX_HOSTS_PER_TENANT {
        problems.push(Problem::new(
            "hosts",
            format!("more than {MAX_HOSTS_PER_TENANT} hosts"),
        ));
    }
    let mut patterns = Vec::with_capacity(tenant.hosts.len());
    for (h, raw) in tenant.hosts.iter().enumerate() {
        match HostPattern::parse(raw) {
            // A few hosts per tenant: a linear scan beats hashing.
            Ok(p) if patterns.contains(&p) => {
                problems.push(Problem::new(
                    format!("hosts[{h}]"),
                    format!("{p} listed twice"),
                ));
            }
            Ok(p) => patterns.push(p),
            Err(e) => problems.push(Problem::new(
                format!("hosts[{h}]"),
                format!("{raw:?} is not a host name or *.suffix pattern: {e}"),
            )),
        }
    }
    patterns
}

/// Every host pattern belongs to one tenant (a tenant's own repeats are [`parse_hosts`]'s).
pub(super) fn check_host_owners(
    table: &Table,
    hosts: &[Vec<HostPattern>],
    problems: &mut Vec<Problem>,
) {
    let total = hosts.iter().map(Vec::len).sum();
    let mut owners: FastMap<&HostPattern, usize> = map_with_capacity(total);
    for (t, patterns) in hosts.iter().enumerate() {
        for pattern in patterns {
            let Some(&owner) = owners.get(pattern) else {
                owners.insert(pattern, t);
                continue;
            };
            if owner == t {
                continue;
            }
            let problem = host_claimed(&table.tenants[t], pattern, &table.tenants[owner].id);
            problems.push(problem.under(&format!("tenants[{t}]")));
        }
    }
}

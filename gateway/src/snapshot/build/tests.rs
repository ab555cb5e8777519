//! Wire → runtime: what a table becomes, case by case.

use super::{build_on, Caches, Rejected};
use crate::snapshot::test_util::{snapshot, table, try_snapshot};
use crate::snapshot::Snapshot;

#[test]
fn tables_build_into_indexed_tenants_pools_and_keys() {
    let s = snapshot(&table());
    assert_eq!(s.version, 7);
    let pools: Vec<&str> = s.pools.iter().map(|p| &*p.name).collect();
    assert_eq!(pools, ["api", "app", "shell"]);
    let ids: Vec<&str> = s.tenants.iter().map(|t| &*t.id).collect();
    assert_eq!(ids, ["acme", "beta", "shelly", "own"]);
    // (host, tenant index)
    for (host, tenant) in [
        ("acme.test", Some(0)),
        ("x.acme.test", Some(0)),
        ("beta.test", Some(1)),
        ("shelly.test", Some(2)),
        ("other.test", None),
    ] {
        assert_eq!(s.hosts.lookup(host), tenant, "{host}");
    }
    let acme = s.tenant(0);
    assert_eq!(acme.header, "acme");
    assert!(!acme.suspended && s.tenant(1).suspended);
    assert!(acme.realm.is_none() && acme.shell.is_none());
    assert!(s
        .tenant(2)
        .shell
        .as_ref()
        .is_some_and(|sh| sh.upstream.is_none()));
    assert_eq!(
        s.tenant(3).shell.as_ref().and_then(|sh| sh.upstream),
        Some(2)
    );
    assert_eq!(s.keys.len(), 2);
    assert_eq!(s.key_limits.len(), 2);
    assert!(s.key_limit(0).is_some_and(|l| l.limit.is_some()));
    assert!(s.key_limit(1).is_some_and(|l| l.limit.is_none()));
}

#[test]
fn routes_carry_their_pool_policy_and_namespace() {
    let s = snapshot(&table());
    let routes = &s.tenant(0).routes;
    // Pools are indexed in name order: api, app, shell.
    let (api, app) = (0, 1);
    // (path, prefix, pool, public, api_key, namespace)
    type Case = (
        &'static str,
        &'static str,
        u32,
        bool,
        bool,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("/", "/", app, true, false, None),
        ("/api", "/api", api, false, true, None),
        ("/api/x", "/api", api, false, true, None),
        ("/apix", "/", app, true, false, None),
        ("/@acme/x", "/@acme/", api, false, true, Some("@acme")),
        ("/mixed/1", "/mixed/", api, true, true, None),
    ];
    for &(path, prefix, pool, public, api_key, ns) in cases {
        let r = routes.find(path).expect(path);
        assert_eq!(&*r.prefix, prefix, "{path}");
        assert_eq!(r.pool, pool, "{path}");
        assert_eq!(
            (r.policy.public, r.policy.api_key),
            (public, api_key),
            "{path}"
        );
        assert_eq!(r.namespace.as_ref().map(|n| &*n.name), ns, "{path}");
        if let Some(n) = &r.namespace {
            assert_eq!(n.header, &*n.name);
        }
    }
}

#[test]
fn invalid_tables_are_refused_with_every_problem() {
    for (json, needles) in [
        ("{", &["malformed table JSON"][..]),
        (
            r#"{"version": 0, "upstreams": {}, "tenants": [], "x": 1}"#,
            &["version", "x: unknown field"][..],
        ),
        (
            r#"{"version": 1, "upstreams": {},
               "tenants": [{"id": "a", "hosts": ["a.test"],
                            "routes": [{"prefix": "/", "upstream": "nope", "auth": "public"}]}]}"#,
            &["nope"][..],
        ),
    ] {
        match try_snapshot(json) {
            Err(Rejected::Invalid(problems)) => {
                let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
                for n in needles {
                    assert!(text.iter().any(|p| p.contains(n)), "{n} in {text:?}");
                }
            }
            Err(e) => panic!("{json}: {e:?}"),
            Ok(_) => panic!("{json}: built"),
        }
    }
}

/// A table large enough for the build to run on several threads: exact hosts, wildcards of
/// several depths, tenants without hosts, routes over five pools, suspended tenants, keys.
fn large_table(n: usize) -> realmgate_table::CheckedTable {
    use realmgate_table::{ApiKey, Table, Tenant, TenantStatus};
    let mut table = Table::test().version(3);
    for p in 0..5 {
        table = table.upstream(&format!("pool-{p}"), &[&format!("127.0.0.1:{}", 9000 + p)]);
    }
    table.tenants = (0..n)
        .map(|t| {
            let mut tenant = Tenant::test(&format!("t{t}"));
            // Some tenants have a wildcard only.
            if t % 7 != 3 || t % 3 == 2 {
                tenant = tenant.host(&format!("t{t}.bench.test"));
            }
            match t % 3 {
                0 => tenant = tenant.host(&format!("*.t{t}.apps.test")),
                1 => tenant = tenant.host(&format!("*.a.b.t{t}.deep.test")),
                _ => {}
            }
            if t % 11 == 0 {
                tenant.status = TenantStatus::Suspended;
            }
            tenant
                .route("/", &format!("pool-{}", t % 3), "public")
                .route("/api/", &format!("pool-{}", (t + 1) % 3), "public")
        })
        .collect();
    table.api_keys = (0..50)
        .map(|k| ApiKey::test(&format!("k{k}"), Some(&format!("t{}", k * 97)), &["*"]))
        .collect();
    match realmgate_table::parse(&table.to_json()) {
        Ok(checked) => checked,
        Err(p) => panic!("{} problems, the first {:?}", p.len(), p.first()),
    }
}

#[test]
fn a_build_on_several_threads_makes_the_snapshot_one_thread_makes() {
    let checked = large_table(9_000);
    let caches = Caches::new(16);
    let one = build_on(&checked, None, &caches.deps(), 1).expect("builds");
    let reference = crate::tenant::HostIndex::build(&checked.hosts);
    for threads in [2, 3, 8] {
        let many = build_on(&checked, None, &caches.deps(), threads).expect("builds");
        assert_eq!(many.tenant_count(), one.tenant_count());
        for (i, (a, b)) in one.tenants.iter().zip(many.tenants.iter()).enumerate() {
            assert_eq!(a.id, b.id, "tenant {i}");
            assert_eq!(a.hosts.patterns(), b.hosts.patterns(), "tenant {i}");
            assert_eq!(a.pools, b.pools, "tenant {i}");
            assert_eq!(a.suspended, b.suspended, "tenant {i}");
            assert_eq!(many.tenant_by_id(&a.id).map(|(x, _)| x), Some(i as u32));
        }
        assert_eq!(many.tenant_ids.len(), one.tenant_ids.len());
        assert_eq!(many.hosts.len(), one.hosts.len());
        assert_eq!(many.hosts.len(), reference.len());
        for (t, patterns) in checked.hosts.iter().enumerate() {
            for p in patterns {
                assert_eq!(many.hosts.holder(p), Some(t as u32), "{p}");
            }
        }
        for host in [
            "t5.bench.test",
            "x.t9.apps.test",
            "x.t10.apps.test",
            "q.a.b.t4.deep.test",
            "a.b.t4.deep.test",
            "t3.bench.test",
            "nobody.test",
        ] {
            assert_eq!(many.hosts.lookup(host), reference.lookup(host), "{host}");
            assert_eq!(many.hosts.lookup(host), one.hosts.lookup(host), "{host}");
        }
        let users = |s: &Snapshot| {
            let mut u: Vec<(u32, u32)> = s.pool_users.iter().map(|(p, n)| (*p, *n)).collect();
            u.sort_unstable();
            u
        };
        assert_eq!(users(&many), users(&one));
        assert_eq!(many.keys.len(), one.keys.len());
    }
    // Pools 0-2 each serve two thirds of the tenants; 3 and 4 none.
    let mut users: Vec<(u32, u32)> = one.pool_users.iter().map(|(p, n)| (*p, *n)).collect();
    users.sort_unstable();
    assert_eq!(users, [(0, 6_000), (1, 6_000), (2, 6_000)]);
}

#[test]
fn a_build_on_several_threads_reports_the_first_problem_in_table_order() {
    let mut checked = large_table(9_000);
    // Validation never lets this through; the build still refuses it, and names the first.
    for t in [8_500, 6_001, 7_000] {
        checked.table.tenants[t].routes[0].upstream = "gone".into();
    }
    let caches = Caches::new(16);
    for threads in [1, 2, 4] {
        let problem = match build_on(&checked, None, &caches.deps(), threads) {
            Err(p) => p.to_string(),
            Ok(_) => panic!("built on {threads} threads"),
        };
        assert!(problem.contains("tenants.t6001.routes"), "{problem}");
        assert!(problem.contains("unknown upstream gone"), "{problem}");
    }
}

#[test]
fn a_tenants_pools_come_sorted_and_once_each_however_many() {
    use super::Used;
    for n in [0usize, 1, 3, Used::INLINE, Used::INLINE + 1, 40] {
        // Each pool twice, out of order, the repeats before and after the spill.
        let pushed: Vec<u32> = (0..n as u32)
            .rev()
            .chain(0..n as u32)
            .map(|p| p * 7 % 101)
            .collect();
        let mut used = Used::default();
        pushed.iter().for_each(|&p| used.push(p));
        let mut want = pushed.clone();
        want.sort_unstable();
        want.dedup();
        assert_eq!(&*used.finish(), &want[..], "{n} pools");
    }
}

/// A full table allocates one `TenantRt` a tenant, its largest allocation: it stays within
/// 144 bytes, so that with the `Arc`'s counts it is served from the allocator's 160-byte
/// class (it was 224 bytes in the 256-byte class): what most tenants leave unset, the limits
/// and `hsts`, is boxed.
#[test]
#[cfg(target_pointer_width = "64")]
fn a_compiled_tenant_stays_within_144_bytes() {
    let size = std::mem::size_of::<crate::snapshot::TenantRt>();
    assert!(size <= 144, "{size}");
}

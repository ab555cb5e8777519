//! Wire → runtime: what a table becomes, case by case.

use super::Rejected;
use crate::snapshot::test_util::{snapshot, table, try_snapshot};

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

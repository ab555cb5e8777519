//! The model's indices and paging.

use super::fixtures::*;
use super::*;

#[test]
fn host_index_follows_tenants() {
    let mut m = Model::default();
    let (id, rec, hosts) = tenant("acme", &["acme.test", "*.acme.test"], "app");
    m.put_tenant(id.clone(), rec, hosts);
    let exact = HostPattern::parse("ACME.test.").expect("host");
    assert_eq!(m.host_owner(&exact), Some(&id));
    let (_, rec2, hosts2) = tenant("acme", &["acme2.test"], "app");
    m.put_tenant(id.clone(), rec2, hosts2);
    assert_eq!(m.host_owner(&exact), None, "replaced hosts leave the index");
    assert!(m.remove_tenant(&id).is_some());
    let h2 = HostPattern::parse("acme2.test").expect("host");
    assert_eq!(m.host_owner(&h2), None);
    assert!(m.remove_tenant(&id).is_none());
}

#[test]
fn certificates_cover_tenants_through_the_indexes() {
    let mut m = Model::default();
    for (t, hosts) in [
        ("a", &["a.zone.test", "a.other.test"][..]),
        ("b", &["b.zone.test", "*.b.zone.test"][..]),
        ("c", &["deep.c.zone.test"][..]),
        ("d", &["zone.test"][..]),
    ] {
        let (id, rec, hosts) = tenant(t, hosts, "app");
        m.put_tenant(id, rec, hosts);
    }
    let cert = |names: &[&str]| CertRecord {
        name: names.join(","),
        cert_pem: String::new(),
        key_sealed: String::new(),
        hosts: names
            .iter()
            .map(|n| HostPattern::parse(n).expect("host"))
            .collect(),
        not_before: 0,
        not_after: 0,
        fingerprint: String::new(),
        table_version: 0,
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    let covered = |m: &Model, names: &[&str]| -> Vec<String> {
        m.covered_by(&cert(names))
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    // A wildcard covers one label under it (not deeper, not the parent itself); it also
    // covers the same wildcard; an exact name covers the exact host only.
    assert_eq!(covered(&m, &["*.zone.test"]), ["a", "b"]);
    assert_eq!(covered(&m, &["*.b.zone.test"]), ["b"]);
    assert_eq!(covered(&m, &["a.other.test", "zone.test"]), ["a", "d"]);
    assert_eq!(covered(&m, &["*.test"]), ["d"]);
    // Each answer agrees with the certificate's own rule, tenant by tenant.
    for names in [
        &["*.zone.test"][..],
        &["*.b.zone.test"],
        &["*.test"],
        &["b.zone.test"],
    ] {
        let c = cert(names);
        let by_rule: Vec<String> = m
            .tenants
            .iter()
            .filter(|(_, t)| {
                t.wire
                    .hosts
                    .iter()
                    .any(|h| c.covers(&HostPattern::parse(h).expect("host")))
            })
            .map(|(id, _)| id.to_string())
            .collect();
        assert_eq!(covered(&m, names), by_rule, "{names:?}");
    }
    // The other way round: the certificates that cover a tenant's hosts, by the index, are
    // those the rule picks, and a removed certificate leaves the index.
    let all = [
        &["*.zone.test"][..],
        &["*.b.zone.test"],
        &["*.test"],
        &["b.zone.test", "x.test"],
    ];
    for names in all {
        m.put_certificate(cert(names));
    }
    for (_, t) in m.tenants.iter() {
        let hosts: Vec<HostPattern> = t
            .wire
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h).expect("host"))
            .collect();
        let by_index: Vec<&str> = m
            .certificates_covering(&hosts)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let by_rule: Vec<&str> = m
            .certificates
            .values()
            .filter(|c| hosts.iter().any(|h| c.covers(h)))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(by_index, by_rule, "{:?}", t.wire.hosts);
    }
    let b_hosts = [HostPattern::parse("b.zone.test").expect("host")];
    let names = |m: &Model| -> Vec<String> {
        m.certificates_covering(&b_hosts)
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(names(&m), ["*.zone.test", "b.zone.test,x.test"]);
    assert!(m.remove_certificate("*.zone.test").is_some());
    assert_eq!(names(&m), ["b.zone.test,x.test"]);
    // A replaced certificate's old names leave the index.
    let mut moved = cert(&["y.test"]);
    moved.name = "b.zone.test,x.test".into();
    m.put_certificate(moved);
    assert!(names(&m).is_empty());

    // A tenant that leaves, or changes hosts, leaves the index.
    let b = TenantId::parse("b").expect("id");
    m.remove_tenant(&b);
    assert_eq!(covered(&m, &["*.zone.test"]), ["a"]);
    let (id, rec, hosts) = tenant("a", &["a.elsewhere.test"], "app");
    m.put_tenant(id, rec, hosts);
    assert!(covered(&m, &["*.zone.test"]).is_empty());
    assert_eq!(covered(&m, &["*.elsewhere.test"]), ["a"]);
}

#[test]
fn users_of_upstream() {
    let mut m = Model::default();
    for (t, u) in [("a", "x"), ("b", "y"), ("c", "x")] {
        let (id, rec, hosts) = tenant(t, &[&format!("{t}.test")], u);
        m.put_tenant(id, rec, hosts);
    }
    let x = UpstreamName::parse("x").expect("name");
    let users: Vec<String> = m.users_of(&x).iter().map(ToString::to_string).collect();
    assert_eq!(users, ["a", "c"]);
    // A tenant's own shell app uses its pool too.
    let (id, mut rec, hosts) = tenant("d", &["d.test"], "y");
    rec.wire.shell = Some(realmgate_table::Shell {
        enabled: true,
        upstream: Some("x".into()),
        excludes: Vec::new(),
    });
    m.put_tenant(id, rec, hosts);
    let users: Vec<String> = m.users_of(&x).iter().map(ToString::to_string).collect();
    assert_eq!(users, ["a", "c", "d"]);
}

#[test]
fn pool_users_follow_tenants() {
    let mut m = Model::default();
    let x = UpstreamName::parse("x").expect("name");
    let (id, rec, hosts) = tenant("a", &["a.test"], "x");
    m.put_tenant(id.clone(), rec, hosts);
    assert_eq!(m.user_count("x"), 1);
    let (_, rec, hosts) = tenant("a", &["a.test"], "y");
    m.put_tenant(id.clone(), rec, hosts);
    assert_eq!((m.user_count("x"), m.user_count("y")), (0, 1));
    assert!(m.users_of(&x).is_empty());
    m.remove_tenant(&id);
    assert_eq!(m.user_count("y"), 0);
}

#[test]
fn pages_of_a_map_follow_the_cursor_and_skip_what_the_view_leaves_out() {
    let map: BTreeMap<String, u32> = (0..10).map(|i| (format!("k{i}"), i)).collect();
    let page = |after: Option<&str>, limit| {
        let entries = map.range::<str, _>(after_bound(after));
        page_of(entries.map(|(k, v)| (k.as_str(), v)), limit, |v| {
            (v % 2 == 0).then_some(*v)
        })
    };
    assert_eq!(page(None, 2), (vec![0, 2], Some("k2".into())));
    assert_eq!(page(Some("k2"), 2), (vec![4, 6], Some("k6".into())));
    assert_eq!(page(Some("k6"), 2), (vec![8], None));
    // An exact fit has no next page; a cursor between keys or past the end still works.
    assert_eq!(page(Some("k5"), 2), (vec![6, 8], None));
    assert_eq!(page(Some("k33"), 1).0, [4]);
    assert!(page(Some("z"), 3).0.is_empty());
}

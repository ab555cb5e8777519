//! `build_delta` against `build`: for random sequences of valid changes (tenants upserted and
//! deleted, hosts moving between tenants, pools, keys, certificates, ACME answers), the
//! snapshot built change by change answers every host, route, key, certificate and challenge
//! lookup exactly as a snapshot built in full from the resulting table; the snapshot before
//! each change answers as it did; a refused change leaves nothing behind.
//!
//! Cases: 128 by default; `REALMGATE_PROPTEST_CASES=N` runs N.

use super::build::{build, Caches};
use super::delta::build_delta;
use super::Snapshot;
use crate::acme::{answer, Answer, ACME_CHALLENGE_PREFIX};
use crate::auth::api_key::{Namespaces, Scope};
use crate::limits::LimitRt;
use pingora_http::RequestHeader;
use proptest::prelude::*;
use realmgate_table::validate;
use realmgate_table::{ApiKey, RateLimit, RateLimits, Table, Tenant};

mod model;
use model::{diff, edit, now, op, parse, secret, token, Op};

const PROBE_HOSTS: [&str; 12] = [
    "h0.test",
    "h1.test",
    "h2.test",
    "h3.test",
    "w0.test",
    "x.w0.test",
    "a.b.w0.test",
    "x.deep.w0.test",
    "a.x.deep.w0.test",
    "x.w1.test",
    "w1.test",
    "none.test",
];
const PROBE_PATHS: [&str; 5] = ["/", "/api/x", "/a/", "/@ns/x", "/other"];
const PROBE_SNI: [&str; 6] = [
    "h0.test",
    "h1.test",
    "h2.test",
    "x.w0.test",
    "x.test",
    "q.test",
];

fn full(table: &Table) -> Snapshot {
    let checked = parse(table).expect("valid table");
    let deps = Caches::new(3);
    build(&checked, None, &deps.deps()).expect("builds")
}

fn limit(l: Option<&LimitRt>) -> Option<isize> {
    l.map(LimitRt::requests)
}

/// Everything a request can learn from a snapshot, by name rather than by index.
fn view(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let pool = |i| s.pool(i).name.to_string();
    for host in PROBE_HOSTS {
        let Some(t) = s.hosts.lookup(host) else {
            out.push(format!("{host}: -"));
            continue;
        };
        let rt = s.tenant(t);
        out.push(format!(
            "{host}: {} hdr={:?} suspended={} https={:?} hsts={:?} realm={:?} limits={:?}",
            rt.id,
            rt.header,
            rt.suspended,
            rt.https,
            rt.hsts,
            rt.realm.as_ref().map(|r| (&r.issuer, &r.audiences)),
            (
                limit(rt.limits.tenant.as_ref()),
                limit(rt.limits.per_key.as_ref()),
                limit(rt.limits.per_client.as_ref()),
                rt.limits.key
            ),
        ));
        if let Some(sh) = &rt.shell {
            out.push(format!(
                "  shell {:?} {:?}",
                sh.upstream.map(pool),
                sh.excludes
            ));
        }
        for path in PROBE_PATHS {
            let r = rt.routes.find(path).map(|r| {
                (
                    &r.prefix,
                    pool(r.pool),
                    r.policy,
                    r.namespace.as_ref().map(|n| &n.name),
                )
            });
            out.push(format!("  {path} -> {r:?}"));
        }
    }
    for sec in 0..6 {
        let line = match s.keys.authenticate(secret(sec).as_bytes(), now()) {
            None => "-".to_owned(),
            Some(k) => {
                let key = s.keys.get(k);
                let scope = match key.scope {
                    Scope::AnyTenant => "*".to_owned(),
                    Scope::Tenant(t) => s.tenant(t).id.to_string(),
                };
                let ns = match &key.namespaces {
                    Namespaces::All => vec!["*".into()],
                    Namespaces::List(l) => l.to_vec(),
                };
                let l = s.key_limit(k).expect("every key has a limit entry");
                format!(
                    "{:?} {scope} {ns:?} {:?} {:?} {}",
                    key.id,
                    key.expires_at,
                    limit(l.limit.as_ref()),
                    l.key
                )
            }
        };
        out.push(format!("key {sec}: {line}"));
    }
    for sni in PROBE_SNI {
        let fp = s.certs.lookup(sni).map(|c| c.fingerprint_hex());
        out.push(format!("sni {sni}: {fp:?}"));
    }
    let names: Vec<&str> = s.certs.sorted().iter().map(|c| &*c.name).collect();
    out.push(format!("certs {names:?}"));
    for t in 0..2 {
        for host in ["h0.test", "h1.test"] {
            let path = format!("{ACME_CHALLENGE_PREFIX}{}", token(t));
            let mut req = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
            req.insert_header("host", host).expect("host");
            let a = answer(&s.acme, &req, now());
            let a = match a {
                Some(Answer::Serve(b)) => String::from_utf8_lossy(&b).into_owned(),
                other => format!("{other:?}"),
            };
            out.push(format!("acme {t} {host}: {a}"));
        }
    }
    let mut pools: Vec<String> = s
        .pools
        .iter()
        .map(|p| format!("{}/{}", p.name, p.endpoint_count()))
        .collect();
    pools.sort();
    out.push(format!("pools {pools:?}"));
    out.push(format!(
        "counts tenants={} keys={} key_limits={} certs={} acme={} hosts={}",
        s.tenants.len(),
        s.keys.len(),
        s.key_limits.len(),
        s.certs.len(),
        s.acme.len(),
        s.hosts.len()
    ));
    out
}

/// Apply `steps` change by change; after each, the incremental snapshot must look like the
/// full build of the table, and the previous one like it did.
fn check_steps(steps: &[Vec<Op>]) -> Result<(), TestCaseError> {
    // A full table to start from: every pool, two tenants.
    let mut table = Table::test()
        .upstream("p0", &["127.0.0.1:9000"])
        .upstream("p1", &["127.0.0.1:9000", "127.0.0.1:9001"])
        .upstream("p2", &["127.0.0.1:9002"])
        .tenant(
            Tenant::test("t0")
                .host("h0.test")
                .route("/", "p0", "public"),
        )
        .tenant(
            Tenant::test("t1")
                .host("*.w0.test")
                .route("/api/", "p1", "public"),
        );
    let deps = Caches::new(3);
    let mut snap = build(&parse(&table).expect("valid table"), None, &deps.deps()).expect("builds");
    for ops in steps {
        let mut next = table.clone();
        next.version += 1;
        for op in ops {
            let mut tried = next.clone();
            edit(&mut tried, op);
            if parse(&tried).is_some() {
                next = tried;
            }
        }
        let checked = parse(&next).expect("kept valid");
        let delta = diff(&table, &next, &checked);
        let before = view(&snap);
        let inc = build_delta(&snap, &delta, &deps.deps())
            .map_err(|p| TestCaseError::fail(format!("delta refused: {p}")))?;
        prop_assert_eq!(view(&inc), view(&full(&next)), "after {:?}", ops);
        prop_assert_eq!(view(&snap), before, "the previous snapshot changed");
        prop_assert!(inc.raw.is_none());
        prop_assert_eq!(inc.version, next.version);
        prop_assert!(deps.metrics.labelled_tenants() <= 3, "label budget");
        table = next;
        snap = inc;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("REALMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn deltas_answer_like_the_full_table(
        steps in proptest::collection::vec(proptest::collection::vec(op(), 1..6), 1..8)
    ) {
        check_steps(&steps)?;
    }
}

#[test]
fn a_host_moves_between_tenants_in_one_change() {
    let steps = vec![
        vec![
            Op::Pool(0, 0),
            Op::Pool(1, 0),
            Op::Tenant {
                id: 0,
                hosts: 0b0001_0001,
                pools: (0, 1),
                suspended: false,
                realm: true,
                shell: None,
                limit: 1,
            },
            Op::Tenant {
                id: 1,
                hosts: 0b0000_0010,
                pools: (1, 1),
                suspended: false,
                realm: false,
                shell: Some(0),
                limit: 2,
            },
            Op::Key {
                id: 0,
                secret: 0,
                tenant: Some(0),
                all_ns: false,
                limit: Some(3),
                expires: true,
            },
        ],
        // h0.test and *.w0.test move from t0 to t1; t0 keeps nothing but its key.
        vec![
            Op::Tenant {
                id: 0,
                hosts: 0,
                pools: (0, 0),
                suspended: true,
                realm: true,
                shell: None,
                limit: 0,
            },
            Op::Tenant {
                id: 1,
                hosts: 0b0001_0011,
                pools: (1, 0),
                suspended: false,
                realm: false,
                shell: Some(1),
                limit: 2,
            },
        ],
        vec![Op::DeleteKey(0), Op::DeleteTenant(0), Op::DeletePool(1)],
        vec![Op::Tenant {
            id: 2,
            hosts: 0b1000_0000,
            pools: (0, 0),
            suspended: false,
            realm: true,
            shell: None,
            limit: 1,
        }],
    ];
    check_steps(&steps).expect("same answers");
}

/// A refused change: the error names the conflict, and the caches (labels, counters) are
/// as before.
/// A digest moves from one changed key to another in one change, and two keys swap theirs
/// (found by the property test above: keys were upserted one at a time against the old
/// digests).
#[test]
fn digests_move_and_swap_between_keys_in_one_change() {
    let key = |id, secret| Op::Key {
        id,
        secret,
        tenant: None,
        all_ns: false,
        limit: None,
        expires: false,
    };
    let steps = vec![
        vec![key(3, 5)],
        vec![key(0, 4)],
        // k0's digest goes to k3, k0 takes a new one.
        vec![key(0, 0), key(3, 4)],
        // k0 and k3 swap, in either order.
        vec![key(3, 0), key(0, 4)],
        vec![key(0, 0), key(3, 4)],
    ];
    check_steps(&steps).expect("same answers");
}

/// A server name moves from one changed certificate to another in one change (found by the
/// property test: certificates were replaced one at a time, and the one taking the name saw
/// it still held).
#[test]
fn server_names_move_between_certificates_in_one_change() {
    let steps = vec![
        vec![Op::Cert(2, 0), Op::Cert(1, 1)],
        // *.w0.test moves from c1 to c2, in either order.
        vec![Op::Cert(1, 2), Op::Cert(2, 1)],
        vec![Op::Cert(1, 1), Op::Cert(2, 3)],
        vec![Op::Cert(2, 1), Op::Cert(1, 0)],
    ];
    check_steps(&steps).expect("same answers");
}

#[test]
fn a_refused_change_changes_nothing() {
    let deps = Caches::new(3);
    let table = Table::test()
        .upstream("p0", &["127.0.0.1:9000"])
        .tenant(Tenant::test("a").host("a.test").route("/", "p0", "public"));
    let snap = build(&parse(&table).expect("valid"), None, &deps.deps()).expect("builds");
    let labels = deps.metrics.labelled_tenants();
    let before = view(&snap);
    let newcomer = Tenant::test("b")
        .host("a.test")
        .route("/", "p0", "public")
        .limits(RateLimits {
            tenant: Some(RateLimit {
                requests: 1,
                window_s: 9,
            }),
            ..RateLimits::default()
        });
    let hosts = validate::hosts(&newcomer);
    let mut bad = diff(&table, &table, &parse(&table).expect("valid"));
    bad.version = 2;
    bad.tenants = vec![(newcomer, hosts)];
    let limiters = deps.limiters.len();
    let e = build_delta(&snap, &bad, &deps.deps())
        .err()
        .expect("a.test is a's");
    assert!(e.to_string().contains("a.test"), "{e}");
    assert_eq!(deps.metrics.labelled_tenants(), labels);
    assert_eq!(
        deps.limiters.len(),
        limiters,
        "the newcomer's counters are let go"
    );
    assert_eq!(view(&snap), before);
    // Wrong base, and a tenant deleted while a key names it.
    bad.base = 5;
    assert!(build_delta(&snap, &bad, &deps.deps()).is_err());
    let with_key = table.clone().key(ApiKey::test("k", Some("a"), &["*"]));
    let snap = build(&parse(&with_key).expect("valid"), None, &deps.deps()).expect("builds");
    let mut gone = diff(&with_key, &with_key, &parse(&with_key).expect("valid"));
    gone.version = 2;
    gone.delete_tenants = vec!["a".into()];
    let e = build_delta(&snap, &gone, &deps.deps())
        .err()
        .expect("k names a");
    assert!(e.to_string().contains("API key"), "{e}");
}

/// A one-tenant change copies a bounded part of a large snapshot.
#[test]
fn a_one_tenant_change_shares_the_rest() {
    let mut table = Table::test().upstream("p0", &["127.0.0.1:9000"]);
    for i in 0..5000 {
        table = table.tenant(
            Tenant::test(&format!("t{i}"))
                .host(&format!("t{i}.test"))
                .route("/", "p0", "public"),
        );
    }
    let deps = Caches::new(3);
    let snap = build(&parse(&table).expect("valid"), None, &deps.deps()).expect("builds");
    let mut next = table.clone();
    next.version = 2;
    next.tenants[17] = Tenant::test("t17")
        .host("moved.test")
        .route("/", "p0", "public");
    next.tenants.push(
        Tenant::test("new")
            .host("new.test")
            .route("/", "p0", "public"),
    );
    let delta = diff(&table, &next, &parse(&next).expect("valid"));
    let inc = build_delta(&snap, &delta, &deps.deps()).expect("applies");
    assert_eq!(inc.tenants.len(), 5001);
    let chunks = snap.tenants.shared_chunks(&snap.tenants);
    assert!(
        chunks > 2 && inc.tenants.shared_chunks(&snap.tenants) >= chunks - 2,
        "t17's chunk and the last copied, the rest shared"
    );
    let shards = inc.tenant_ids.shard_count();
    assert!(shards > 1 && inc.tenant_ids.shared_shards(&snap.tenant_ids) >= shards - 1);
    assert_eq!(
        inc.hosts.lookup("moved.test"),
        snap.tenant_ids.get("t17").copied()
    );
    assert_eq!(inc.hosts.lookup("t17.test"), None);
    assert_eq!(snap.hosts.lookup("t17.test"), Some(17));
}

//! The table model the delta property tests edit: random edits kept only when the table
//! stays valid, and the change between two tables as validation would hand it over.

use proptest::prelude::*;
use realmgate_table::delta::CheckedDelta;
use realmgate_table::test_certs::{Minted, TestCa};
use realmgate_table::validate::{self, rfc3339};
use realmgate_table::{AcmeChallenge, ApiKey, CheckedTable, RateLimit, RateLimits, Table, Tenant};
use sha2::Digest;
use std::sync::OnceLock;

pub(super) const HOSTS: [&str; 8] = [
    "h0.test",
    "h1.test",
    "h2.test",
    "h3.test",
    "*.w0.test",
    "*.w1.test",
    "*.deep.w0.test",
    "w0.test",
];
/// Certificate leaves: (served names) each.
pub(super) const LEAVES: [&[&str]; 4] = [
    &["h0.test"],
    &["*.w0.test"],
    &["h1.test", "h2.test"],
    &["x.test"],
];
pub(super) fn now() -> u64 {
    crate::auth::unix_now()
}

pub(super) fn leaves() -> &'static [Minted] {
    static MINTED: OnceLock<Vec<Minted>> = OnceLock::new();
    MINTED.get_or_init(|| {
        let ca = TestCa::new("delta-tests");
        LEAVES.iter().map(|names| ca.leaf(names)).collect()
    })
}

pub(super) fn secret(s: u8) -> String {
    format!("rgk_{}", ((b'A' + s) as char).to_string().repeat(43))
}

pub(super) fn token(t: u8) -> String {
    format!("tok{t}{}", "x".repeat(40))
}

/// One edit of the table; applied only if the result is still a valid table.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Tenant {
        id: u8,
        hosts: u8,
        pools: (u8, u8),
        suspended: bool,
        realm: bool,
        shell: Option<u8>,
        limit: u8,
    },
    DeleteTenant(u8),
    Pool(u8, u8),
    DeletePool(u8),
    Key {
        id: u8,
        secret: u8,
        tenant: Option<u8>,
        all_ns: bool,
        limit: Option<u64>,
        expires: bool,
    },
    DeleteKey(u8),
    Cert(u8, u8),
    DeleteCert(u8),
    Challenge(u8, bool),
    DeleteChallenge(u8),
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6u8, any::<u8>().prop_flat_map(|a| any::<u8>().prop_map(move |b| a & b)),
              (0..3u8, 0..3u8), any::<bool>(), any::<bool>(),
              proptest::option::of(0..3u8), 0..3u8)
            .prop_map(|(id, hosts, pools, suspended, realm, shell, limit)| Op::Tenant {
                id, hosts, pools, suspended, realm, shell, limit
            }),
        2 => (0..6u8).prop_map(Op::DeleteTenant),
        2 => (0..3u8, 0..2u8).prop_map(|(p, v)| Op::Pool(p, v)),
        1 => (0..3u8).prop_map(Op::DeletePool),
        3 => (0..4u8, 0..6u8, proptest::option::of(0..6u8), any::<bool>(),
              proptest::option::of(1..5u64), any::<bool>())
            .prop_map(|(id, secret, tenant, all_ns, limit, expires)| Op::Key {
                id, secret, tenant, all_ns, limit, expires
            }),
        2 => (0..4u8).prop_map(Op::DeleteKey),
        2 => (0..3u8, 0..4u8).prop_map(|(n, v)| Op::Cert(n, v)),
        1 => (0..3u8).prop_map(Op::DeleteCert),
        1 => (0..2u8, any::<bool>()).prop_map(|(t, h)| Op::Challenge(t, h)),
        1 => (0..2u8).prop_map(Op::DeleteChallenge),
    ]
}

fn upsert<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) {
    match list.iter_mut().find(|x| same(x)) {
        Some(x) => *x = item,
        None => list.push(item),
    }
}

pub(super) fn edit(table: &mut Table, op: &Op) {
    match *op {
        Op::Tenant {
            id,
            hosts,
            pools,
            suspended,
            realm,
            shell,
            limit,
        } => {
            let name = format!("t{id}");
            let mut t = Tenant::test(&name)
                .route("/", &format!("p{}", pools.0), "public")
                .route_any("/api/", &format!("p{}", pools.1), &["public", "api_key"])
                .ns_route("/@ns/", &format!("p{}", pools.0), "api_key", "@ns");
            for (i, h) in HOSTS.iter().enumerate() {
                if hosts & (1 << i) != 0 {
                    t = t.host(h);
                }
            }
            if suspended {
                t = t.suspended();
            }
            if realm {
                t = t.realm(&format!("http://127.0.0.1:1/realms/{name}"));
            }
            if let Some(p) = shell {
                t = t
                    .shell_from(Some(&format!("p{p}")), &[])
                    .app("A", "/a/")
                    .route("/a/", &format!("p{p}"), "public");
            }
            let rl = |requests| {
                Some(RateLimit {
                    requests,
                    window_s: 10,
                })
            };
            t = t.limits(match limit {
                0 => RateLimits::default(),
                1 => RateLimits {
                    tenant: rl(100),
                    ..RateLimits::default()
                },
                _ => RateLimits {
                    per_key: rl(5),
                    per_client: rl(7),
                    ..RateLimits::default()
                },
            });
            upsert(&mut table.tenants, t, |x| x.id == name);
        }
        Op::DeleteTenant(id) => table.tenants.retain(|t| t.id != format!("t{id}")),
        Op::Pool(p, v) => {
            let spec =
                realmgate_table::Upstream::test(&[&format!("127.0.0.1:{}", 9000 + v as u16)]);
            table.upstreams.insert(format!("p{p}"), spec);
        }
        Op::DeletePool(p) => {
            table.upstreams.remove(&format!("p{p}"));
        }
        Op::Key {
            id,
            secret: s,
            tenant,
            all_ns,
            limit,
            expires,
        } => {
            let ns: &[&str] = if all_ns { &["*"] } else { &["@ns"] };
            let tenant = tenant.map(|t| format!("t{t}"));
            let mut k = ApiKey::test(&format!("k{id}"), tenant.as_deref(), ns);
            k.digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(secret(s))));
            k.rate_limit = limit.map(|requests| RateLimit {
                requests,
                window_s: 1,
            });
            if expires {
                k.expires_at = Some(rfc3339(now() + 3600));
            }
            upsert(&mut table.api_keys, k, |x| x.id == format!("k{id}"));
        }
        Op::DeleteKey(id) => table.api_keys.retain(|k| k.id != format!("k{id}")),
        Op::Cert(n, v) => {
            let c = leaves()[v as usize].entry(&format!("c{n}"), LEAVES[v as usize]);
            upsert(&mut table.certificates, c, |x| x.name == format!("c{n}"));
        }
        Op::DeleteCert(n) => table.certificates.retain(|c| c.name != format!("c{n}")),
        Op::Challenge(t, any_host) => {
            let c = AcmeChallenge {
                token: token(t),
                key_authorization: format!("{}.thumb", token(t)),
                hosts: if any_host {
                    vec![]
                } else {
                    vec!["h0.test".into()]
                },
                expires_at: rfc3339(now() + 600),
            };
            upsert(&mut table.acme_challenges, c, |x| x.token == token(t));
        }
        Op::DeleteChallenge(t) => table.acme_challenges.retain(|c| c.token != token(t)),
    }
}

pub(super) fn parse(table: &Table) -> Option<CheckedTable> {
    realmgate_table::parse(&table.to_json()).ok()
}

/// The change from `base` to `next` (both valid), as validation would hand it over.
pub(super) fn diff(base: &Table, next: &Table, checked_next: &CheckedTable) -> CheckedDelta {
    let mut d = CheckedDelta {
        base: base.version,
        version: next.version,
        state_digest: "state:test".into(),
        upstreams: vec![],
        delete_upstreams: vec![],
        tenants: vec![],
        delete_tenants: vec![],
        api_keys: vec![],
        delete_api_keys: vec![],
        certificates: vec![],
        delete_certificates: vec![],
        acme_challenges: vec![],
        delete_acme_challenges: vec![],
        assertion: None,
    };
    for (name, spec) in &next.upstreams {
        if base.upstreams.get(name) != Some(spec) {
            d.upstreams.push((name.clone(), spec.clone()));
        }
    }
    d.delete_upstreams = base
        .upstreams
        .keys()
        .filter(|n| !next.upstreams.contains_key(*n))
        .cloned()
        .collect();
    for t in &next.tenants {
        if !base.tenants.contains(t) {
            d.tenants.push((t.clone(), validate::hosts(t)));
        }
    }
    d.delete_tenants = gone(&base.tenants, &next.tenants, |t| &t.id);
    for k in &next.api_keys {
        if !base.api_keys.contains(k) {
            let expiry = validate::api_key(k).expect("valid key");
            d.api_keys.push((k.clone(), expiry));
        }
    }
    d.delete_api_keys = gone(&base.api_keys, &next.api_keys, |k| &k.id);
    for c in &next.certificates {
        if !base.certificates.contains(c) {
            let checked = realmgate_table::certificate(c).expect("valid certificate");
            d.certificates.push((c.clone(), checked));
        }
    }
    d.delete_certificates = gone(&base.certificates, &next.certificates, |c| &c.name);
    for (i, c) in next.acme_challenges.iter().enumerate() {
        if !base.acme_challenges.contains(c) {
            let checked = checked_next.acme_challenges[i].clone();
            d.acme_challenges.push((c.clone(), checked));
        }
    }
    d.delete_acme_challenges = gone(&base.acme_challenges, &next.acme_challenges, |c| &c.token);
    d
}

fn gone<T>(base: &[T], next: &[T], id: impl Fn(&T) -> &String) -> Vec<String> {
    base.iter()
        .map(&id)
        .filter(|i| !next.iter().any(|n| id(n) == *i))
        .cloned()
        .collect()
}

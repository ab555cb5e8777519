//! Property tests of incremental tables: any sequence of deltas — valid and not, tenants,
//! pools, keys, certificates and ACME answers upserted and deleted, hosts, issuers and key
//! digests moving between owners — leaves the model equal to the model of the full table it
//! writes back; an accepted delta gives what applying it to the full table gives, and a
//! refused one is one the full table would refuse too, and changes nothing.
//!
//! Cases: 64 sequences by default; `REALMGATE_PROPTEST_CASES=N` runs N.

use realmgate_table::test_certs::{Minted, TestCa};
use realmgate_table::{
    parse, state_digest, AcmeChallenge, ApiKey, Delta, DeltaError, Model, Table, Tenant, Upstream,
};

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::OnceLock;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("REALMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// Small universes, so that parts collide, move and go often. `p3` is never a pool at the
// start; `nope.test` is not covered by the certificate.
const TENANTS: &[&str] = &["t0", "t1", "t2", "t3", "t4"];
const HOSTS: &[&str] = &[
    "h0.test",
    "h1.test",
    "h2.test",
    "h3.test",
    "h4.test",
    "h5.test",
    "h6.test",
    "h7.test",
    "h8.test",
    "h9.test",
    "*.w0.test",
    "*.w1.test",
    "*.w2.test",
    "H0.test.",
];
const POOLS: &[&str] = &["p0", "p1", "p2", "p3"];
const ISSUERS: &[&str] = &[
    "https://id.test/r0",
    "https://id.test/r1",
    "https://id.test/r2",
];
const KEYS: &[&str] = &["k0", "k1", "k2", "k3"];
const CERTS: &[&str] = &["c0", "c1", "c2"];
const CERT_HOSTS: &[&str] = &["x0.test", "x1.test", "x2.test", "nope.test"];
const TOKENS: &[&str] = &["token-number-000000", "token-number-000001", "bad"];

/// One certificate for every `CERT_HOSTS` name but the last, minted once.
fn leaf() -> &'static Minted {
    static LEAF: OnceLock<Minted> = OnceLock::new();
    LEAF.get_or_init(|| TestCa::new("delta ca").leaf(&["x0.test", "x1.test", "x2.test"]))
}

fn pool(valid: bool) -> Upstream {
    Upstream::test(&[if valid { "127.0.0.1:9001" } else { "nowhere" }])
}

fn tenant_strategy() -> impl Strategy<Value = Tenant> {
    (
        0..TENANTS.len(),
        prop_oneof![1 => Just(Vec::new()), 19 => prop::sample::subsequence(HOSTS, 1..3)],
        prop::collection::vec(prop_oneof![19 => 0..3usize, 1 => Just(3usize)], 1..3),
        prop::option::weighted(0.3, 0..ISSUERS.len()),
        prop::option::weighted(0.2, 0..3usize),
        any::<bool>(),
    )
        .prop_map(|(id, hosts, pools, issuer, shell, suspended)| {
            let mut t = Tenant::test(TENANTS[id]);
            for h in hosts {
                t = t.host(h);
            }
            for (r, p) in pools.iter().enumerate() {
                let prefix = if r == 0 {
                    "/".to_owned()
                } else {
                    format!("/r{r}")
                };
                t = t.route(&prefix, POOLS[*p], "public");
            }
            if let Some(i) = issuer {
                t = t.realm(ISSUERS[i]);
            }
            if let Some(p) = shell {
                t = t.shell_from(Some(POOLS[p]), &[]);
            }
            if suspended {
                t = t.suspended();
            }
            t
        })
}

fn key_strategy() -> impl Strategy<Value = ApiKey> {
    (
        0..KEYS.len(),
        prop::option::weighted(0.7, 0..TENANTS.len()),
        0..8usize,
    )
        .prop_map(|(id, tenant, digest)| {
            let mut k = ApiKey::test(KEYS[id], tenant.map(|t| TENANTS[t]), &["*"]);
            k.digest = format!("sha256:{}", hex::encode(Sha256::digest([digest as u8])));
            k
        })
}

fn cert_strategy() -> impl Strategy<Value = realmgate_table::Certificate> {
    (
        0..CERTS.len(),
        prop::sample::subsequence(&CERT_HOSTS[..3], 1..3),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(name, hosts, uncovered)| {
            let mut names: Vec<&str> = hosts;
            if uncovered {
                names.push(CERT_HOSTS[3]);
            }
            leaf().entry(CERTS[name], &names)
        })
}

fn challenge_strategy() -> impl Strategy<Value = AcmeChallenge> {
    (prop_oneof![19 => 0..2usize, 1 => Just(2usize)], 0..2usize).prop_map(|(t, host)| {
        AcmeChallenge {
            token: TOKENS[t].into(),
            key_authorization: format!("{}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI", TOKENS[t]),
            hosts: vec![HOSTS[host].into()],
            expires_at: "2030-01-01T00:00:00Z".into(),
        }
    })
}

/// A delta without its base, version, digest and deletes, which the test fills in from the
/// table in force.
#[derive(Debug, Clone)]
struct Step {
    wrong_base: bool,
    same_version: bool,
    bad_digest: bool,
    delta: Delta,
    deletes: Picks,
}

fn picks() -> impl Strategy<Value = Vec<(bool, usize)>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((prop::bool::weighted(0.9), 0..64usize), 1..3),
    ]
}

/// Pools are seldom deleted: most are in use.
fn few_picks() -> impl Strategy<Value = Vec<(bool, usize)>> {
    (picks(), 0..3u8).prop_map(|(p, r)| if r == 0 { p } else { Vec::new() })
}

/// Picks of existing parts that are neither picked already nor upserted; the others any
/// name of the universe.
fn resolve(
    picks: &[(bool, usize)],
    existing: &[String],
    universe: &[&str],
    upserted: &[&str],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for &(exists, i) in picks {
        if !exists {
            out.push(universe[i % universe.len()].to_owned());
        } else if let Some(name) = (!existing.is_empty()).then(|| &existing[i % existing.len()]) {
            if !out.contains(name) && !upserted.contains(&name.as_str()) {
                out.push(name.clone());
            }
        }
    }
    out
}

/// None to two of a strategy's values, two seldom.
fn few<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    (prop::collection::vec(s, 0..3), 0..4u8).prop_map(|(mut v, r)| {
        if r != 0 {
            v.truncate(1);
        }
        v
    })
}

/// Deletes chosen per kind: pools, tenants, keys, certificates, tokens.
type Picks = [Vec<(bool, usize)>; 5];

fn step_strategy() -> impl Strategy<Value = Step> {
    let parts = (
        few((0..3usize, prop::bool::weighted(0.95))),
        few(tenant_strategy()),
        few(key_strategy()),
        prop_oneof![3 => Just(Vec::new()), 1 => few(cert_strategy())],
        few(challenge_strategy()),
    );
    let more = (
        (few_picks(), picks(), picks(), picks(), picks()),
        prop::bool::weighted(1.0 / 32.0),
        prop::bool::weighted(1.0 / 32.0),
        prop::bool::weighted(1.0 / 32.0),
    );
    (parts, more).prop_map(|(p, m)| {
        let mut delta = Delta {
            tenants: p.1,
            api_keys: p.2,
            certificates: p.3,
            acme_challenges: p.4,
            ..Delta::default()
        };
        for (name, valid) in p.0 {
            delta.upstreams.insert(POOLS[name].to_owned(), pool(valid));
        }
        Step {
            wrong_base: m.1,
            same_version: m.2,
            bad_digest: m.3,
            delta,
            deletes: [m.0 .0, m.0 .1, m.0 .2, m.0 .3, m.0 .4],
        }
    })
}

/// The step's delta against `table`: deletes resolved, keys mostly of existing tenants.
fn fill(step: &Step, table: &Table) -> Delta {
    let mut d = step.delta.clone();
    let ids = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<String>>();
    let tenants = ids(table.tenants.iter().map(|t| &t.id).collect());
    let [up, te, ke, ce, ch] = &step.deletes;
    let pools: Vec<&str> = d.upstreams.keys().map(String::as_str).collect();
    d.delete_upstreams = resolve(up, &ids(table.upstreams.keys().collect()), POOLS, &pools);
    let new: Vec<&str> = d.tenants.iter().map(|t| t.id.as_str()).collect();
    d.delete_tenants = resolve(te, &tenants, TENANTS, &new);
    let keys = ids(table.api_keys.iter().map(|k| &k.id).collect());
    let new: Vec<&str> = d.api_keys.iter().map(|k| k.id.as_str()).collect();
    d.delete_api_keys = resolve(ke, &keys, KEYS, &new);
    let certs = ids(table.certificates.iter().map(|c| &c.name).collect());
    let new: Vec<&str> = d.certificates.iter().map(|c| c.name.as_str()).collect();
    d.delete_certificates = resolve(ce, &certs, CERTS, &new);
    let tokens = ids(table.acme_challenges.iter().map(|c| &c.token).collect());
    let new: Vec<&str> = d.acme_challenges.iter().map(|c| c.token.as_str()).collect();
    d.delete_acme_challenges = resolve(ch, &tokens, TOKENS, &new);
    for (i, k) in d.api_keys.iter_mut().enumerate() {
        if let (Some(t), false) = (&mut k.tenant, tenants.is_empty() || i % 4 == 3) {
            let n: usize = t[1..].parse().unwrap_or(0);
            *t = tenants[n % tenants.len()].clone();
        }
    }
    d
}

/// The table the steps start from: three pools, two tenants, a key, a certificate.
fn start() -> Table {
    let mut t = Table::test()
        .upstream("p0", &["127.0.0.1:9001"])
        .upstream("p1", &["127.0.0.1:9002"])
        .upstream("p2", &["127.0.0.1:9003"])
        .tenant(
            Tenant::test("t0")
                .host("h0.test")
                .route("/", "p0", "public"),
        )
        .tenant(
            Tenant::test("t1")
                .host("h1.test")
                .host("*.w0.test")
                .route("/", "p1", "public")
                .realm(ISSUERS[0]),
        )
        .key(ApiKey::test("k0", Some("t0"), &["*"]));
    t.certificates.push(leaf().entry("c0", &["x0.test"]));
    t
}

fn model_of(table: &Table) -> Model {
    Model::from_checked(&parse(&table.to_json()).expect("valid"))
}

/// The delta applied to the full table by hand, or `None` where the delta itself is
/// malformed (a part named twice, deleted but absent, or both upserted and deleted).
fn naive(table: &Table, d: &Delta) -> Option<Table> {
    fn unique<'a>(ids: impl Iterator<Item = &'a str>) -> Option<HashSet<&'a str>> {
        let mut seen = HashSet::new();
        let once = ids.into_iter().all(|id| seen.insert(id));
        once.then_some(seen)
    }
    fn deletes<'a>(
        list: &'a [String],
        exists: impl Fn(&str) -> bool,
        upserted: &HashSet<&str>,
    ) -> Option<HashSet<&'a str>> {
        let set = unique(list.iter().map(String::as_str))?;
        set.iter()
            .all(|n| exists(n) && !upserted.contains(n))
            .then_some(set)
    }
    if d.version <= d.base {
        return None;
    }
    let mut t = table.clone();
    t.version = d.version;
    let up_new: HashSet<&str> = d.upstreams.keys().map(String::as_str).collect();
    let gone = deletes(
        &d.delete_upstreams,
        |n| t.upstreams.contains_key(n),
        &up_new,
    )?;
    t.upstreams.retain(|k, _| !gone.contains(k.as_str()));
    t.upstreams.extend(d.upstreams.clone());
    macro_rules! parts {
        ($field:ident, $deletes:ident, $id:ident) => {{
            let new = unique(d.$field.iter().map(|p| p.$id.as_str()))?;
            let gone = deletes(&d.$deletes, |n| t.$field.iter().any(|p| p.$id == n), &new)?;
            t.$field
                .retain(|p| !gone.contains(p.$id.as_str()) && !new.contains(p.$id.as_str()));
            t.$field.extend(d.$field.iter().cloned());
        }};
    }
    parts!(tenants, delete_tenants, id);
    parts!(api_keys, delete_api_keys, id);
    parts!(certificates, delete_certificates, name);
    parts!(acme_challenges, delete_acme_challenges, token);
    Some(t)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn deltas_agree_with_full_tables(steps in prop::collection::vec(step_strategy(), 1..12)) {
        let mut m = model_of(&start());
        let mut accepted = 0;
        for step in steps {
            let mut d = fill(&step, &m.to_table());
            d.base = m.version() + if step.wrong_base { 3 } else { 0 };
            d.version = m.version() + if step.same_version { 0 } else { 1 };
            let before = m.clone();
            let before_table = m.to_table();
            let full = naive(&before_table, &d);
            let full_ok = full.as_ref().is_some_and(|t| parse(&t.to_json()).is_ok());
            let outcome = m.preview(&d).and_then(|(_, digest)| {
                d.state_digest = if step.bad_digest { state_digest(&start()) } else { digest };
                m.check(&d)
            });
            match outcome {
                Ok(checked) => {
                    prop_assert!(!step.wrong_base);
                    prop_assert!(full_ok, "accepted, but the full table is refused: {d:?}");
                    m.apply(&checked);
                    let table = m.to_table();
                    prop_assert_eq!(&m, &model_of(&table));
                    prop_assert_eq!(m.state_digest(), state_digest(&table));
                    prop_assert_eq!(&m, &model_of(&full.expect("checked above")));
                    prop_assert_eq!(m.version(), d.version);
                    accepted += 1;
                }
                Err(e) => {
                    match &e {
                        DeltaError::WrongBase { current, offered_base } => {
                            prop_assert!(step.wrong_base);
                            prop_assert_eq!((*current, *offered_base), (before.version(), d.base));
                        }
                        DeltaError::Invalid(ps) => {
                            prop_assert!(!ps.is_empty());
                            prop_assert!(!full_ok, "refused ({e}), but the full table is valid: {d:?}");
                        }
                        DeltaError::DigestMismatch { computed, .. } => {
                            prop_assert!(step.bad_digest);
                            prop_assert!(full_ok);
                            let full = full.expect("valid");
                            prop_assert_eq!(computed, &state_digest(&full));
                        }
                    }
                    prop_assert_eq!(&m, &before);
                    prop_assert_eq!(m.to_table(), before_table);
                    prop_assert_eq!(m.state_digest(), before.state_digest());
                }
            }
        }
        // Whatever happened, the change from the start to here is one delta.
        let first = model_of(&start());
        let d = first.delta_to(&m);
        if accepted > 0 {
            let mut again = first.clone();
            again.apply(&first.check(&d).map_err(|e| TestCaseError::fail(e.to_string()))?);
            prop_assert_eq!(&again, &m);
        }
    }
}

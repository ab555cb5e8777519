//! Unit tests of the model: the state digest, applying deltas, the full table back, the
//! delta between two models, and how a delta document is read.

use super::*;
use crate::delta::{parse_delta, DeltaError};
use crate::wire::ApiKey;
use sha2::{Digest, Sha256};

/// Two pools; tenant `a` (two hosts, a realm, a key), tenant `b`; an operator key.
pub(super) fn base_table() -> Table {
    Table::test()
        .upstream("app", &["127.0.0.1:9001"])
        .upstream("web", &["127.0.0.1:9002"])
        .tenant(
            Tenant::test("a")
                .host("a.test")
                .host("*.a.test")
                .route("/", "app", "public")
                .realm("https://id.test/realms/a"),
        )
        .tenant(Tenant::test("b").host("b.test").route("/", "web", "public"))
        .key(ApiKey::test("ka", Some("a"), &["*"]))
        .key(ApiKey::test("op", None, &["*"]))
}

pub(super) fn model_of(table: &Table) -> Model {
    Model::from_checked(&crate::parse(&table.to_json()).expect("a valid table"))
}

/// A delta on `m` changing nothing yet.
pub(super) fn delta(m: &Model) -> Delta {
    Delta {
        base: m.version(),
        version: m.version() + 1,
        ..Delta::default()
    }
}

/// The problems a delta is refused with, as `at: message`; none if it is accepted.
pub(super) fn problems(m: &Model, d: &Delta) -> Vec<String> {
    match m.preview(d) {
        Ok(_) => Vec::new(),
        Err(DeltaError::Invalid(ps)) => ps.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("not a validation error: {e}"),
    }
}

/// Fill in the digest, check, apply; the result must be the model of its own full table.
pub(super) fn accept(m: &mut Model, mut d: Delta) {
    let (_, digest) = m.preview(&d).unwrap_or_else(|e| panic!("refused: {e}"));
    d.state_digest = digest;
    let checked = m.check(&d).unwrap_or_else(|e| panic!("refused: {e}"));
    m.apply(&checked);
    let table = m.to_table();
    assert_eq!(*m, model_of(&table), "the model of its own table");
    assert_eq!(m.state_digest(), state_digest(&table));
}

#[test]
fn the_state_digest_is_the_sum_of_part_digests_as_defined() {
    let tenant = Tenant::test("a").host("a.test").route("/", "app", "public");
    let t = Table::test()
        .upstream("app", &["127.0.0.1:9001"])
        .tenant(tenant.clone());
    let part = |kind: &str, json: Vec<u8>| {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(json);
        let d: [u8; 32] = h.finalize().into();
        d
    };
    let up = part(
        "upstream",
        serde_json::to_vec(&("app", &t.upstreams["app"])).expect("json"),
    );
    let te = part("tenant", serde_json::to_vec(&tenant).expect("json"));
    // Add as two 256-bit big-endian numbers, modulo 2^256.
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let s = u16::from(up[i]) + u16::from(te[i]) + carry;
        sum[i] = (s & 0xff) as u8;
        carry = s >> 8;
    }
    let expected = format!("state:{}", hex::encode(sum));
    assert_eq!(state_digest(&t), expected);
    assert_eq!(model_of(&t).state_digest(), expected);
    assert_eq!(
        model_of(&t).tenant_digest("a"),
        Some(format!("sha256:{}", hex::encode(te)))
    );
    assert_eq!(model_of(&t).tenant_digest("zz"), None);
}

#[test]
fn the_state_digest_ignores_order_formatting_and_version() {
    let t = base_table();
    let mut shuffled = t.clone();
    shuffled.tenants.reverse();
    shuffled.api_keys.reverse();
    shuffled.version = 7;
    let pretty = serde_json::to_vec_pretty(&shuffled).expect("json");
    let m = Model::from_checked(&crate::parse(&pretty).expect("valid"));
    assert_eq!(m.state_digest(), model_of(&t).state_digest());
    assert_eq!(m.state_digest(), state_digest(&t));
    assert_eq!(m.version(), 7, "the version is kept, just not digested");
    // Any change of any part changes it.
    let mut changed = t.clone();
    changed.tenants[1].hosts.push("b2.test".into());
    assert_ne!(state_digest(&changed), state_digest(&t));
    let mut changed = t.clone();
    changed.api_keys[1].namespaces = vec!["@x".into()];
    assert_ne!(state_digest(&changed), state_digest(&t));
    assert!(StateSum::is_well_formed(&state_digest(&t)));
}

#[test]
fn the_sum_carries_and_subtracts_back() {
    let ones = PartDigest([0xff; 32]);
    let one = PartDigest({
        let mut b = [0; 32];
        b[31] = 1;
        b
    });
    let mut s = StateSum::default();
    s.add(&ones);
    s.add(&one);
    assert_eq!(s, StateSum::default(), "2^256 - 1 + 1 wraps to 0");
    s.sub(&one);
    assert_eq!(s.to_string(), format!("state:{}", "f".repeat(64)));
    s.add(&one);
    s.sub(&ones);
    s.sub(&one);
    assert_eq!(s, StateSum::default());
}

#[test]
fn the_table_written_back_parses_to_the_same_model_in_id_order() {
    let m = model_of(&base_table());
    let t = m.to_table();
    let ids: Vec<&str> = t.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let keys: Vec<&str> = t.api_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(keys, ["ka", "op"]);
    assert_eq!(model_of(&t), m);
    assert_eq!(m.tenants_len(), 2);
    assert_eq!(m.api_keys_len(), 2);
    assert_eq!(m.upstream_users("app"), 1);
    assert_eq!(
        m.host_owner(&HostPattern::Wildcard("a.test".into())),
        Some("a")
    );
}

#[test]
fn a_one_tenant_delta_applies_and_an_earlier_clone_is_untouched() {
    let mut m = model_of(&base_table());
    let before = m.clone();
    let mut d = delta(&m);
    d.tenants
        .push(Tenant::test("c").host("c.test").route("/", "app", "public"));
    d.tenants.push(
        Tenant::test("b")
            .host("b.test")
            .route("/", "app", "public")
            .suspended(),
    );
    accept(&mut m, d);
    assert_eq!(m.version(), 2);
    assert_eq!(m.tenants_len(), 3);
    assert_eq!(m.upstream_users("app"), 3);
    assert_eq!(m.upstream_users("web"), 0);
    assert_ne!(m.tenant_digest("b"), before.tenant_digest("b"));
    assert_eq!(m.tenant_digest("a"), before.tenant_digest("a"));
    assert_eq!(before, model_of(&base_table()), "a clone keeps its state");
    // Deleting what is no longer used.
    let mut d = delta(&m);
    d.delete_upstreams.push("web".into());
    d.delete_tenants.push("c".into());
    accept(&mut m, d);
    assert_eq!((m.tenants_len(), m.upstreams_len()), (2, 1));
}

#[test]
fn delta_to_is_the_change_between_two_models() {
    let m1 = model_of(&base_table());
    let mut m2 = m1.clone();
    let mut d = delta(&m2);
    d.tenants
        .push(Tenant::test("c").host("c.test").route("/", "web", "public"));
    d.delete_api_keys.push("op".into());
    d.upstreams.insert(
        "app".into(),
        crate::wire::Upstream::test(&["127.0.0.1:9009"]),
    );
    accept(&mut m2, d);
    let back = m1.delta_to(&m2);
    assert_eq!(back.tenants.len(), 1, "only what changed: {back:?}");
    assert_eq!(back.delete_api_keys, ["op"]);
    assert_eq!(back.upstreams.len(), 1);
    assert_eq!(back.state_digest, m2.state_digest());
    let mut m = m1.clone();
    m.apply(&m1.check(&back).expect("the delta between them applies"));
    assert_eq!(m, m2);
    // Between models that share nothing too, and to the same model: nothing.
    let other = model_of(&m2.to_table());
    let again = m1.delta_to(&other);
    let mut m = m1.clone();
    m.apply(&m1.check(&again).expect("applies"));
    assert_eq!(m, m2);
    let none = m2.delta_to(&m2);
    assert!(none.tenants.is_empty() && none.delete_tenants.is_empty() && none.upstreams.is_empty());
}

#[test]
fn the_base_version_and_digest_are_checked_first() {
    let m = model_of(&base_table().version(5));
    let mut d = delta(&m);
    d.base = 4;
    assert_eq!(
        m.check(&d).expect_err("wrong base"),
        DeltaError::WrongBase {
            current: 5,
            offered_base: 4
        }
    );
    let mut d = delta(&m);
    d.version = 5;
    assert_eq!(problems(&m, &d), ["version: must be greater than base (5)"]);
    let d = delta(&m);
    match m.check(&d) {
        Err(DeltaError::Invalid(ps)) => assert_eq!(
            ps[0].to_string(),
            "state_digest: must be state: and 64 lower-case hex digits"
        ),
        other => panic!("{other:?}"),
    }
    let mut d = delta(&m);
    d.state_digest = format!("state:{}", "0".repeat(64));
    assert_eq!(
        m.check(&d).expect_err("mismatch"),
        DeltaError::DigestMismatch {
            expected: d.state_digest.clone(),
            computed: m.state_digest(),
        }
    );
    // An empty delta moves the version only.
    let (checked, digest) = m.preview(&d).expect("valid");
    assert_eq!(
        (digest.as_str(), checked.version),
        (m.state_digest().as_str(), 6)
    );
}

#[test]
fn a_delta_document_reports_every_unknown_field_and_repeat() {
    let d = parse_delta(
        br#"{"base": 1, "version": 2, "state_digest": "x", "extra": 1,
             "tenants": [{"id": "a", "hosts": [], "routes": [], "colour": "red"}],
             "assertion": {"set": null, "unset": true}}"#,
    );
    let ps: Vec<String> = d
        .expect_err("unknown")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        ps,
        [
            "extra: unknown field",
            "tenants[0].colour: unknown field",
            "assertion.unset: unknown field"
        ]
    );
    let ps = parse_delta(br#"{"base": 1, "base": 2, "version": 3, "state_digest": "", "x": 0}"#)
        .expect_err("repeat");
    let ps: Vec<String> = ps.iter().map(ToString::to_string).collect();
    assert_eq!(ps, ["base: duplicate key", "x: unknown field"]);
    let ps = parse_delta(br#"{"base": 1, "version": "#).expect_err("syntax");
    assert_eq!(ps.len(), 1);
    assert!(ps[0].message.starts_with("malformed delta JSON"), "{ps:?}");
    let ps = parse_delta(br#"{"base": 1}"#).expect_err("missing");
    assert!(ps[0].message.contains("missing field"), "{ps:?}");
    // What travels is what is read.
    let mut d = delta(&model_of(&base_table()));
    d.delete_tenants.push("b".into());
    d.assertion = Some(AssertionChange { set: None });
    let bytes = serde_json::to_vec(&d).expect("json");
    assert_eq!(parse_delta(&bytes).expect("valid"), d);
}

#[test]
fn a_refused_delta_changes_nothing_and_says_everything() {
    let m = model_of(&base_table());
    let before = m.clone();
    let mut d = delta(&m);
    d.tenants.push(Tenant::test("B").host("b..test"));
    d.delete_tenants.push("nope".into());
    d.delete_upstreams.push("app".into());
    let ps = problems(&m, &d);
    assert_eq!(ps.len(), 5, "{ps:?}");
    assert!(
        ps.iter()
            .any(|p| p == "delete_tenants[0]: no tenant \"nope\" in the table (version 1)"),
        "{ps:?}"
    );
    assert!(
        ps.iter().any(|p| p
            .starts_with("delete_upstreams[0]: upstream \"app\" is still used by tenant \"a\"")),
        "{ps:?}"
    );
    assert!(ps.iter().any(|p| p.starts_with("tenants[0].id:")), "{ps:?}");
    assert!(
        ps.iter().any(|p| p.starts_with("tenants[0].hosts[0]:")),
        "{ps:?}"
    );
    assert!(
        ps.iter()
            .any(|p| p == "tenants[0].routes: needs at least one route"),
        "{ps:?}"
    );
    assert_eq!(m, before);
    assert_eq!(m.to_table(), before.to_table());
}

#[test]
fn a_model_crosses_threads() {
    // A gateway serialises a clone in the background while deltas apply to the original.
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Model>();
    send_sync::<CheckedDelta>();
}

#[test]
fn a_paused_check_and_apply_pause_between_parts_and_give_the_unpaused_result() {
    let m = model_of(&base_table());
    let mut d = delta(&m);
    d.tenants = vec![
        Tenant::test("c").host("c.test").route("/", "app", "public"),
        Tenant::test("b")
            .host("b.test")
            .route("/", "web", "public")
            .suspended(),
    ];
    d.delete_api_keys = vec!["op".into()];
    d.state_digest = m.preview(&d).expect("accepted").1;

    let mut pauses = 0;
    let checked = m.check_pausing(&d, &mut || pauses += 1).expect("accepted");
    let in_check = pauses;
    assert!(
        in_check >= d.tenants.len(),
        "{in_check} pauses checking {} tenants",
        d.tenants.len()
    );
    let unpaused = m.check(&d).expect("accepted");
    assert_eq!(format!("{checked:?}"), format!("{unpaused:?}"));

    let mut paused = m.clone();
    paused.apply_pausing(&checked, &mut || pauses += 1);
    // One at least per tenant removed and inserted and per key removed.
    assert!(pauses - in_check > 2 * d.tenants.len());
    let mut plain = m.clone();
    plain.apply(&checked);
    assert_eq!(paused, plain);
    assert_eq!(paused.state_digest(), d.state_digest);
}

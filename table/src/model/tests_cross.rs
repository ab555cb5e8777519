//! Unit tests of the rules a delta is checked by: each part's own (those of a full table, at
//! paths in the delta) and the cross-part ones against the table as it will be.

use super::tests::{accept, base_table, delta, model_of, problems};
use super::*;
use crate::assertion::{key_pem_from_bytes, AssertionKey, KeyState, ALG};
use crate::test_certs::TestCa;
use crate::validate::MAX_ACME_CHALLENGES;
use crate::wire::{ApiKey, Upstream};

fn tenant(id: &str, host: &str, pool: &str) -> Tenant {
    Tenant::test(id).host(host).route("/", pool, "public")
}

#[test]
fn a_host_may_move_between_tenants_in_one_delta() {
    let mut m = model_of(&base_table());
    let mut d = delta(&m);
    d.tenants.push(tenant("b", "a.test", "web").host("b.test"));
    d.tenants.push(
        tenant("a", "a2.test", "app")
            .host("*.a.test")
            .realm("https://id.test/realms/a"),
    );
    accept(&mut m, d);
    assert_eq!(
        m.host_owner(&HostPattern::Exact("a.test".into())),
        Some("b")
    );
    // And to a new tenant while its owner goes.
    let mut d = delta(&m);
    d.tenants.push(tenant("n", "b.test", "web"));
    d.delete_tenants.push("b".into());
    accept(&mut m, d);
    assert_eq!(
        m.host_owner(&HostPattern::Exact("b.test".into())),
        Some("n")
    );
}

#[test]
fn a_host_of_an_unchanged_tenant_or_of_another_in_the_delta_is_refused() {
    let m = model_of(&base_table());
    let mut d = delta(&m);
    d.tenants.push(tenant("c", "c.test", "app").host("B.test."));
    assert_eq!(
        problems(&m, &d),
        ["tenants[0].hosts[1]: b.test is claimed by tenant \"b\" and tenant \"c\""]
    );
    let mut d = delta(&m);
    d.tenants.push(tenant("c", "*.x.test", "app"));
    d.tenants.push(tenant("e", "*.x.test", "app"));
    assert_eq!(
        problems(&m, &d),
        ["tenants[1].hosts[0]: *.x.test is claimed by tenant \"c\" and tenant \"e\""]
    );
    // A wildcard and an exact name are different claims.
    let mut d = delta(&m);
    d.tenants.push(tenant("c", "*.b.test", "app"));
    assert_eq!(problems(&m, &d), Vec::<String>::new());
}

#[test]
fn an_issuer_belongs_to_one_tenant() {
    let m = model_of(&base_table());
    let mut d = delta(&m);
    d.tenants
        .push(tenant("c", "c.test", "app").realm("https://id.test/realms/a"));
    let ps = problems(&m, &d);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(
        ps[0].starts_with("tenants[0].realm.issuer: issuer already used by tenant \"a\""),
        "{ps:?}"
    );
    // Moving it: a gives it up in the same delta.
    let mut m = m;
    let mut d = delta(&m);
    d.tenants
        .push(tenant("c", "c.test", "app").realm("https://id.test/realms/a"));
    d.tenants
        .push(tenant("a", "a.test", "app").host("*.a.test"));
    accept(&mut m, d);
}

#[test]
fn a_tenant_goes_only_with_its_keys() {
    let mut m = model_of(&base_table());
    let mut d = delta(&m);
    d.delete_tenants.push("a".into());
    assert_eq!(
        problems(&m, &d),
        ["delete_tenants[0]: tenant \"a\" still has API key \"ka\": delete its keys in the same delta"]
    );
    // A key upserted for a tenant that goes is a key of an unknown tenant.
    d.api_keys.push(ApiKey::test("ka", Some("a"), &["*"]));
    assert_eq!(
        problems(&m, &d),
        ["api_keys[0].tenant: unknown tenant \"a\""]
    );
    // Moved to another tenant, or deleted: fine.
    d.api_keys = vec![ApiKey::test("ka", Some("b"), &["*"])];
    let moved = d.clone();
    d.api_keys.clear();
    d.delete_api_keys.push("ka".into());
    accept(&mut m.clone(), moved);
    accept(&mut m, d);
    assert_eq!(m.tenants_len(), 1);
    // A new key for a new tenant in the same delta.
    let mut d = delta(&m);
    d.tenants.push(tenant("n", "n.test", "app"));
    d.api_keys.push(ApiKey::test("kn", Some("n"), &["@n"]));
    accept(&mut m, d);
}

#[test]
fn a_pool_goes_only_when_no_unchanged_tenant_uses_it() {
    let mut m = model_of(&base_table());
    let mut d = delta(&m);
    d.delete_upstreams.push("web".into());
    let ps = problems(&m, &d);
    assert_eq!(ps.len(), 1);
    assert!(
        ps[0].starts_with("delete_upstreams[0]: upstream \"web\" is still used by tenant \"b\" (1 tenants use it)"),
        "{ps:?}"
    );
    // An upserted tenant still routing to it: that tenant's route is the problem.
    d.tenants.push(tenant("b", "b.test", "web"));
    assert_eq!(
        problems(&m, &d),
        ["tenants[0].routes[0].upstream: unknown upstream \"web\""]
    );
    // Its routes moved in the same delta: fine.
    d.tenants = vec![tenant("b", "b.test", "app")];
    accept(&mut m, d);
    // A shell's pool is a use too.
    let mut d = delta(&m);
    d.upstreams
        .insert("shell".into(), Upstream::test(&["127.0.0.1:9003"]));
    d.tenants
        .push(tenant("b", "b.test", "app").shell_from(Some("shell"), &[]));
    accept(&mut m, d);
    let mut d = delta(&m);
    d.delete_upstreams.push("shell".into());
    assert_eq!(problems(&m, &d).len(), 1);
}

#[test]
fn deletes_name_existing_parts_once_and_not_also_upserted() {
    let m = model_of(&base_table());
    let mut d = delta(&m);
    d.delete_api_keys = vec!["op".into(), "op".into(), "none".into()];
    d.delete_tenants.push("b".into());
    d.tenants.push(tenant("b", "b.test", "web"));
    d.delete_certificates.push("c".into());
    d.delete_acme_challenges.push("tok".into());
    d.delete_upstreams.push("gone".into());
    assert_eq!(
        problems(&m, &d),
        [
            "delete_upstreams[0]: no upstream \"gone\" in the table (version 1)",
            "delete_tenants[0]: tenant \"b\" is both upserted and deleted in this delta",
            "delete_api_keys[1]: \"op\" listed twice",
            "delete_api_keys[2]: no API key \"none\" in the table (version 1)",
            "delete_certificates[0]: no certificate \"c\" in the table (version 1)",
            "delete_acme_challenges[0]: no ACME token \"tok\" in the table (version 1)",
        ]
    );
}

#[test]
fn each_part_is_checked_by_the_rules_of_a_full_table() {
    let m = model_of(&base_table());
    let mut d = delta(&m);
    d.upstreams
        .insert("Bad".into(), Upstream::test(&["nowhere"]));
    d.tenants.push(tenant("c", "c.test", "nopool"));
    d.tenants.push(tenant("c", "c2.test", "app"));
    let mut key = ApiKey::test("k2", Some("c"), &["@x", "@x"]);
    key.digest = "sha256:nope".into();
    d.api_keys.push(key);
    d.api_keys.push(ApiKey::test("k3", None, &["*"]));
    d.api_keys.push(ApiKey::test("k3", None, &["*"]));
    assert_eq!(
        problems(&m, &d),
        [
            "tenants[0].routes[0].upstream: unknown upstream \"nopool\"",
            "tenants[1].id: tenant id \"c\" already used by tenants[0]",
            "api_keys[0].digest: must be sha256: and 64 lower-case hex digits",
            "api_keys[0].namespaces[1]: \"@x\" listed twice",
            "api_keys[2].id: key id \"k3\" already used by api_keys[1]",
            "api_keys[2].digest: digest already used by api_keys[1]",
            "upstreams.Bad: upstream name must be 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            "upstreams.Bad.endpoints[0]: \"nowhere\" is not an IP:port address or https://IP:port (host names are not resolved by the gateway: give the address, and the name in server_name)",
        ]
    );
}

#[test]
fn a_key_digest_belongs_to_one_key() {
    let mut m = model_of(&base_table());
    let mut d = delta(&m);
    let mut k = ApiKey::test("k2", None, &["*"]);
    k.digest = ApiKey::test("op", None, &["*"]).digest;
    d.api_keys.push(k);
    assert_eq!(
        problems(&m, &d),
        ["api_keys[0].digest: digest already used by API key \"op\""]
    );
    // Two keys swapping digests in one delta.
    let mut d = delta(&m);
    let (mut ka, mut op) = (
        ApiKey::test("ka", Some("a"), &["*"]),
        ApiKey::test("op", None, &["*"]),
    );
    std::mem::swap(&mut ka.digest, &mut op.digest);
    d.api_keys = vec![ka, op];
    accept(&mut m, d);
}

#[test]
fn certificates_are_unique_by_name_and_host() {
    let ca = TestCa::new("test ca");
    let leaf = ca.leaf(&["x.test", "*.x.test", "y.test"]);
    let mut t = base_table();
    t.certificates
        .push(leaf.entry("x", &["x.test", "*.x.test"]));
    let mut m = model_of(&t);
    let mut d = delta(&m);
    d.certificates.push(leaf.entry("y", &["y.test", "x.test"]));
    d.certificates.push(leaf.entry("z", &["y.test"]));
    assert_eq!(
        problems(&m, &d),
        [
            "certificates[0].hosts[1]: certificate \"y\": x.test is already served by certificate \"x\": a host name has one certificate",
            "certificates[1].hosts[0]: certificate \"z\": y.test is already served by certificate \"y\": a host name has one certificate",
        ]
    );
    let mut d = delta(&m);
    d.certificates.push(leaf.entry("y", &["nope.test"]));
    d.certificates.push(leaf.entry("y", &["y.test"]));
    let ps = problems(&m, &d);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(
        ps[0].starts_with("certificates[0].hosts[0]: certificate \"y\": nope.test is not covered"),
        "{ps:?}"
    );
    assert_eq!(ps[1], "certificates[1].name: certificate \"y\": certificate name \"y\" already used by certificates[0]");
    // A host moving from one certificate to another; then the old one goes.
    let mut d = delta(&m);
    d.certificates.push(leaf.entry("y", &["y.test", "x.test"]));
    d.certificates.push(leaf.entry("x", &["*.x.test"]));
    accept(&mut m, d);
    let mut d = delta(&m);
    d.delete_certificates.push("x".into());
    accept(&mut m, d);
    assert_eq!(m.certificates_len(), 1);
}

fn challenge(token: &str) -> crate::wire::AcmeChallenge {
    crate::wire::AcmeChallenge {
        token: token.into(),
        key_authorization: format!("{token}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"),
        hosts: vec!["a.test".into()],
        expires_at: "2030-01-01T00:00:00Z".into(),
    }
}

#[test]
fn acme_answers_are_checked_unique_and_bounded() {
    let mut m = model_of(&base_table());
    let mut d = delta(&m);
    d.acme_challenges.push(challenge("short"));
    d.acme_challenges.push(challenge("token-number-000001"));
    d.acme_challenges.push(challenge("token-number-000001"));
    let ps = problems(&m, &d);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(
        ps[0].starts_with("acme_challenges[0].token: must be"),
        "{ps:?}"
    );
    assert_eq!(
        ps[1],
        "acme_challenges[2].token: token already used by acme_challenges[1]"
    );
    // Up to the table's maximum, counted as the table will be.
    let mut d = delta(&m);
    d.acme_challenges = (0..MAX_ACME_CHALLENGES)
        .map(|i| challenge(&format!("token-number-{i:06}")))
        .collect();
    accept(&mut m, d);
    let mut d = delta(&m);
    d.acme_challenges.push(challenge("token-number-999999"));
    assert_eq!(
        problems(&m, &d),
        [format!(
            "acme_challenges: more than {MAX_ACME_CHALLENGES} challenges"
        )]
    );
    d.delete_acme_challenges.push("token-number-000000".into());
    accept(&mut m, d);
    assert_eq!(m.acme_challenges_len(), MAX_ACME_CHALLENGES);
}

#[test]
fn the_assertion_section_is_set_replaced_and_removed() {
    let key = |kid: &str, seed: u8| AssertionKey {
        kid: kid.into(),
        alg: ALG.into(),
        private_key_pem: key_pem_from_bytes(&[seed; 32]).expect("scalar"),
        state: KeyState::Active,
    };
    let mut m = model_of(&base_table());
    let mut d = delta(&m);
    d.assertion = Some(AssertionChange { set: None });
    assert_eq!(
        problems(&m, &d),
        ["assertion.set: the table has no assertion section to remove"]
    );
    d.assertion = Some(AssertionChange {
        set: Some(Assertion {
            issuer: String::new(),
            keys: vec![key("a", 1)],
        }),
    });
    let ps = problems(&m, &d);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0].starts_with("assertion.set.issuer: must be"), "{ps:?}");
    d.assertion = Some(AssertionChange {
        set: Some(Assertion {
            issuer: "realmgate".into(),
            keys: vec![key("a", 1)],
        }),
    });
    accept(&mut m, d);
    assert!(m.to_table().assertion.is_some());
    let mut d = delta(&m);
    d.assertion = Some(AssertionChange { set: None });
    accept(&mut m, d);
    assert!(m.to_table().assertion.is_none());
}

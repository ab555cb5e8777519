//! The binary encoding against JSON: the same tables, the same checked result, the same
//! refusals; and every malformed encoding refused with a clear problem, never a panic.

use super::*;
use crate::assertion::{AssertionKey, KeyState};
use crate::test_certs::TestCa;
use crate::wire::{
    AuthSpec, CatalogApp, HealthCheck, Hsts, HttpsMode, RateLimit, RateLimits, Realm, Shell,
};

fn limit(requests: u64, window_s: u32) -> Option<RateLimit> {
    Some(RateLimit { requests, window_s })
}

/// A valid table with every optional field of every part set somewhere.
pub(crate) fn rich() -> Table {
    let ca = TestCa::new("binary test CA");
    let mut pool = Upstream::test(&["127.0.0.1:9001", "127.0.0.1:9002"]);
    pool.health_check = Some(HealthCheck {
        http_path: Some("/healthz".into()),
    });
    pool.connect_timeout_ms = Some(500);
    pool.read_timeout_ms = Some(9000);
    pool.write_timeout_ms = Some(8000);
    let mut tls = Upstream::test(&["https://127.0.0.1:9443"]);
    tls.server_name = Some("api.internal".into());
    tls.insecure_skip_verify = true;
    tls.h2 = true;
    let mut acme = Tenant::test("acme")
        .host("acme.test")
        .host("*.acme.test")
        .route("/", "app", "public")
        .route_any("/api/", "app", &["jwt", "api_key"])
        .ns_route("/@acme/", "tls", "api_key", "@acme")
        .limits(RateLimits {
            tenant: limit(1000, 1),
            per_key: limit(50, 10),
            per_client: limit(5, 1),
        })
        .display_name("Acme, Inc.")
        .shell_from(Some("app"), &["/api/"]);
    acme.routes[1].forward_token = true;
    acme.realm = Some(Realm {
        issuer: "https://id.test/realms/acme".into(),
        jwks_uri: Some("https://id.test/realms/acme/certs".into()),
        audiences: vec!["acme-api".into(), "acme-web".into()],
        client_id: Some("realmgate".into()),
        client_secret: Some("s3cret".into()),
    });
    acme.catalog = vec![CatalogApp {
        title: "Todos".into(),
        path: "/".into(),
        icon: Some("lucide:check-square".into()),
    }];
    acme.https = HttpsMode::Redirect;
    acme.hsts = Some(Hsts {
        max_age: 63_072_000,
        include_subdomains: true,
        preload: true,
    });
    let mut key = ApiKey::test("k1", Some("acme"), &["@acme"]);
    key.expires_at = Some("2027-01-01T00:00:00Z".into());
    key.rate_limit = limit(7, 60);
    let mut table = Table::test()
        .version(42)
        .tenant(acme)
        .tenant(
            Tenant::test("beta")
                .host("beta.test")
                .route("/", "app", "public")
                .suspended(),
        )
        .key(key)
        .key(ApiKey::test("op", None, &["*"]));
    table.upstreams.insert("app".into(), pool);
    table.upstreams.insert("tls".into(), tls);
    table.certificates = vec![ca
        .leaf(&["acme.test", "*.acme.test"])
        .entry("acme", &["acme.test", "*.acme.test"])];
    table.acme_challenges = vec![AcmeChallenge {
        token: "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0".into(),
        key_authorization: "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI".into(),
        hosts: vec!["acme.test".into()],
        expires_at: "2099-03-01T00:10:00Z".into(),
    }];
    table.assertion = Some(Assertion {
        issuer: "realmgate".into(),
        keys: vec![AssertionKey {
            kid: "a1".into(),
            alg: "ES256".into(),
            private_key_pem: crate::assertion::key_pem_from_bytes(&[7; 32]).expect("a key"),
            state: KeyState::Active,
        }],
    });
    table
}

/// `n` plain tenants on two pools: past the sharded parse's threshold for large `n`.
pub(crate) fn many(n: usize) -> Table {
    let mut t = Table::test()
        .upstream("a", &["127.0.0.1:9001"])
        .upstream("b", &["127.0.0.1:9002"]);
    t.tenants = (0..n)
        .map(|i| {
            Tenant::test(&format!("t{i}"))
                .host(&format!("t{i}.bench.test"))
                .host(&format!("*.t{i}.apps.test"))
                .route("/", if i % 2 == 0 { "a" } else { "b" }, "public")
                .route("/api/", "b", "public")
        })
        .collect();
    t
}

/// The table a binary encoding holds, decoded without any check.
fn decoded(bytes: &[u8]) -> Table {
    let (mut table, tenants) = decode(bytes).expect("decodes");
    table.tenants = tenants
        .iter()
        .map(|b| tenant(b).expect("a tenant"))
        .collect();
    table
}

fn problems(r: Result<crate::CheckedTable, Vec<Problem>>) -> Vec<String> {
    r.expect_err("refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn every_field_survives_the_encoding() {
    let mut table = rich();
    // Unchecked fields too: a staple, a pool's CA file, a catalog without icon.
    table.certificates[0].ocsp_staple = Some("AAEC".into());
    table.upstreams.get_mut("app").expect("pool").ca_file = Some("/etc/ca.pem".into());
    table.tenants[0].catalog.push(CatalogApp {
        title: "Docs".into(),
        path: "/docs".into(),
        icon: None,
    });
    table.tenants[1].shell = Some(Shell {
        enabled: false,
        upstream: None,
        excludes: vec![],
    });
    table.tenants[1].routes[0].auth = AuthSpec::AnyOf(vec!["public".into()]);
    let bytes = encode(&table);
    assert!(looks_binary(&bytes));
    assert_eq!(decoded(&bytes), table);
    assert_eq!(from_json(&table.to_json()).expect("json"), bytes);
    assert_eq!(decoded(&encode(&Table::test())), Table::test());
}

#[test]
fn both_encodings_give_the_same_checked_table() {
    for table in [rich(), many(3), many(crate::shard::MIN_TENANTS + 5)] {
        let json = crate::parse(&table.to_json()).expect("valid as JSON");
        let binary = crate::parse_binary(&encode(&table)).expect("valid as binary");
        assert_eq!(binary, json);
    }
}

#[test]
fn both_encodings_refuse_a_bad_table_with_the_same_problems() {
    let big = crate::shard::MIN_TENANTS + 5;
    type Breaks = Box<dyn Fn(&mut Table)>;
    let cases: Vec<(&str, Breaks)> = vec![
        ("version 0", Box::new(|t| t.version = 0)),
        (
            "bad host",
            Box::new(|t| t.tenants[1].hosts[0] = "bad host!".into()),
        ),
        (
            "shared host",
            Box::new(|t| t.tenants[1].hosts[0] = t.tenants[0].hosts[0].clone()),
        ),
        (
            "repeated id",
            Box::new(|t| t.tenants[1].id = t.tenants[0].id.clone()),
        ),
        ("bad id", Box::new(|t| t.tenants[1].id = "Nope".into())),
        (
            "unknown pool",
            Box::new(|t| t.tenants[1].routes[0].upstream = "nowhere".into()),
        ),
        ("no routes", Box::new(|t| t.tenants[1].routes.clear())),
        (
            "bad pool name",
            Box::new(|t| {
                t.upstreams
                    .insert("Bad Name".into(), Upstream::test(&["127.0.0.1:1"]));
            }),
        ),
        (
            "key of nobody",
            Box::new(|t| t.api_keys.push(ApiKey::test("kx", Some("nobody"), &["*"]))),
        ),
        (
            "two at once",
            Box::new(|t| {
                t.tenants[0].hosts[0] = "bad host!".into();
                let last = t.tenants.len() - 1;
                t.tenants[last].routes[0].prefix = "no-slash".into();
            }),
        ),
    ];
    for base in [rich(), many(big)] {
        for (name, break_it) in &cases {
            let mut t = base.clone();
            break_it(&mut t);
            let json = problems(crate::parse(&t.to_json()));
            let binary = problems(crate::parse_binary(&encode(&t)));
            assert!(!json.is_empty(), "{name}");
            assert_eq!(binary, json, "{name} ({} tenants)", t.tenants.len());
        }
    }
}

#[test]
fn a_malformed_encoding_is_refused_with_a_clear_problem() {
    let good = encode(&rich());
    let refused = |bytes: &[u8]| problems(crate::parse_binary(bytes)).join("\n");
    // Cut anywhere: refused, never a panic, never a table.
    for len in 0..good.len() {
        assert!(crate::parse_binary(&good[..len]).is_err(), "cut at {len}");
    }
    assert!(refused(&good[..3]).contains("not a binary routing table"));
    assert!(refused(&good[..4]).contains("malformed binary table"));
    assert!(refused(&good[..good.len() - 1]).contains("malformed binary table"));
    assert!(refused(b"{\"version\": 1}").contains("send JSON as application/json"));
    assert!(refused(b"garbage, not a table at all").contains("not a binary routing table"));
    let mut newer = good.clone();
    newer[4] = FORMAT + 1;
    assert!(refused(&newer).contains("binary table format 2: this gateway reads format 1"));
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"xx");
    assert_eq!(
        refused(&trailing),
        "malformed binary table: 2 bytes after its end"
    );
    // Garbage after a valid head: lengths that run past the end, bad discriminants.
    for seed in 0..64u8 {
        let mut g = good[..5].to_vec();
        g.extend((0..200u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        assert!(crate::parse_binary(&g).is_err(), "seed {seed}");
    }
    // One tenant whose own bytes are garbage, the rest fine.
    let table = rich();
    let body = (
        table.version,
        Pools(&table.upstreams),
        vec![Bytes(b"\x05hello")],
        Seq(&table.api_keys),
        Seq(&table.certificates),
        Seq(&table.acme_challenges),
        &table.assertion,
    );
    let mut bad = MAGIC.to_vec();
    bad.push(FORMAT);
    let bad = postcard::to_extend(&body, bad).expect("encodes");
    assert!(refused(&bad).starts_with("tenants[0]: malformed binary tenant"));
}

#[test]
fn a_pool_named_twice_is_refused_as_in_json() {
    let pool = Upstream::test(&["127.0.0.1:1"]);
    let pools = vec![("a", Ref(&pool)), ("a", Ref(&pool))];
    let none: Vec<Bytes<'_>> = Vec::new();
    let body = (1u64, pools, none, 0u8, 0u8, 0u8, None::<Assertion>);
    let mut bytes = MAGIC.to_vec();
    bytes.push(FORMAT);
    let bytes = postcard::to_extend(&body, bytes).expect("encodes");
    assert_eq!(
        problems(crate::parse_binary(&bytes)),
        ["upstreams.a: duplicate key"]
    );
    let json = br#"{"version": 1, "upstreams": {"a": {"endpoints": ["127.0.0.1:1"]}, "a": {"endpoints": ["127.0.0.1:1"]}}}"#;
    assert!(problems(crate::parse(json)).contains(&"upstreams.a: duplicate key".to_owned()));
}

#[test]
fn the_media_type_is_recognised_with_parameters() {
    assert!(is_media_type(MEDIA_TYPE));
    assert!(is_media_type(
        "Application/Vnd.Realmgate.Table+Postcard; charset=binary"
    ));
    assert!(!is_media_type("application/json"));
    assert!(!is_media_type("application/vnd.realmgate.table+json"));
}

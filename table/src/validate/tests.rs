//! Parsing and validation of whole tables.

use crate::host::HostPattern;
use crate::*;

const ISSUE_EXAMPLE: &str = r#"{"version": 1,
 "upstreams": {"app-a": {"endpoints": ["127.0.0.1:9001"]},
               "app-b": {"endpoints": ["127.0.0.1:9002", "127.0.0.1:9003"]}},
 "tenants": [
   {"id": "acme", "hosts": ["acme.test"],
    "routes": [{"prefix": "/", "upstream": "app-a", "auth": "public"}]},
   {"id": "beta", "hosts": ["beta.test", "*.beta.test"],
    "routes": [{"prefix": "/", "upstream": "app-b", "auth": "public"},
               {"prefix": "/a/", "upstream": "app-a", "auth": "public"}]}]}"#;

fn problems(json: &str) -> Vec<String> {
    match parse(json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

fn has(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[test]
fn the_minimal_table_is_valid_as_written() {
    let CheckedTable { table, hosts, .. } = parse(ISSUE_EXAMPLE.as_bytes()).expect("valid");
    assert_eq!(table.version, 1);
    assert_eq!(table.tenants.len(), 2);
    assert_eq!(
        hosts[1],
        vec![
            HostPattern::Exact("beta.test".into()),
            HostPattern::Wildcard("beta.test".into())
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = r#"{"version": 0, "colour": "red",
      "upstreams": {"app": {"endpoints": ["127.0.0.1:9001"], "weight": 3},
                    "Bad Name": {"endpoints": []},
                    "eps": {"endpoints": ["localhost:80", "127.0.0.1:0", "[::1]:81", "[::1]:81"],
                            "read_timeout_ms": 0, "health_check": {"http_path": "health"}}},
      "tenants": [
        {"id": "acme", "hosts": ["acme.test", "ACME.test"], "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]},
        {"id": "Acme!", "hosts": ["acme.test", "*.", "a..b", "*foo.test"],
         "routes": [{"prefix": "x", "upstream": "nope", "auth": "jwt"},
                    {"prefix": "/a/../b", "upstream": "app", "auth": ["public", "magic"]}]},
        {"id": "acme", "hosts": [], "routes": [], "extra": 1}]}"#;
    let p = problems(bad);
    for needle in [
        "colour: unknown field",
        "upstreams.app.weight: unknown field",
        "tenants[2].extra: unknown field",
        "version: must be at least 1",
        "upstreams.Bad Name: upstream name",
        "upstreams.Bad Name.endpoints: needs at least one endpoint",
        "upstreams.eps.endpoints[0]: \"localhost:80\" is not an IP:port",
        "upstreams.eps.endpoints[1]: \"127.0.0.1:0\": port 0",
        "upstreams.eps.endpoints[3]: \"[::1]:81\" listed twice",
        "upstreams.eps.read_timeout_ms",
        "upstreams.eps.health_check.http_path",
        "tenants[0].hosts[1]: acme.test listed twice",
        "tenants[1].id: \"Acme!\" is not a tenant id",
        "tenants[1].hosts[0]: acme.test is claimed by tenant \"acme\" and tenant \"Acme!\"",
        "tenants[1].hosts[1]: \"*.\"",
        "tenants[1].hosts[2]: \"a..b\"",
        "tenants[1].hosts[3]: \"*foo.test\"",
        "tenants[1].routes[0].prefix: \"x\"",
        "tenants[1].routes[0].upstream: unknown upstream \"nope\"",
        "tenants[1].routes[0].auth: jwt and session need the tenant to have a realm",
        "tenants[1].routes[1].prefix: \"/a/../b\"",
        "tenants[1].routes[1].auth: unknown auth policy \"magic\"",
        "tenants[2].id: tenant id \"acme\" already used by tenants[0]",
        "tenants[2].hosts: needs at least one host",
        "tenants[2].routes: needs at least one route",
    ] {
        assert!(has(&p, needle), "missing {needle:?} in {p:#?}");
    }
    assert_eq!(p.len(), 25, "{p:#?}");
}

#[test]
fn syntax_and_type_errors_are_reported() {
    assert!(has(&problems("{"), "malformed table JSON"));
    assert!(has(
        &problems(r#"{"version": "1"}"#),
        "malformed table JSON"
    ));
    assert!(has(
        &problems(r#"{"version": 1} trailing"#),
        "malformed table JSON"
    ));
    assert!(has(&problems(""), "malformed table JSON"));
    assert!(has(
        &problems(
            r#"{"version": 1, "tenants": [{"id": "a", "hosts": ["a.test"], "routes": [{"prefix": "/", "upstream": "u"}]}]}"#
        ),
        "missing field `auth`"
    ));
}

#[test]
fn an_empty_table_is_valid() {
    assert!(parse(br#"{"version": 7}"#).is_ok());
}

#[test]
fn hosts_compare_after_normalisation_across_tenants() {
    let json = r#"{"version": 2, "upstreams": {"u": {"endpoints": ["127.0.0.1:1"]}},
      "tenants": [
        {"id": "a", "hosts": ["Bücher.test"], "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}]},
        {"id": "b", "hosts": ["xn--bcher-kva.test."], "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}]},
        {"id": "c", "hosts": ["*.x.test", "x.test"], "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}]}]}"#;
    let p = problems(json);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(has(
        &p,
        "tenants[1].hosts[0]: xn--bcher-kva.test is claimed by tenant \"a\" and tenant \"b\""
    ));
}

#[test]
fn round_trips_through_serde() {
    let table = parse(ISSUE_EXAMPLE.as_bytes()).expect("valid").table;
    let again = serde_json::to_vec(&table).expect("serialise");
    let table2 = parse(&again).expect("still valid").table;
    assert_eq!(table, table2);
}

#[test]
fn digest_is_sha256_of_the_bytes() {
    assert_eq!(
        digest(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn tenant_status_defaults_to_active() {
    let json = r#"{"version": 3, "upstreams": {"u": {"endpoints": ["127.0.0.1:1"]}},
      "tenants": [
        {"id": "a", "hosts": ["a.test"], "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}]},
        {"id": "b", "hosts": ["b.test"], "status": "suspended", "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}]}]}"#;
    let t = parse(json.as_bytes()).expect("valid").table;
    assert_eq!(t.tenants[0].status, TenantStatus::Active);
    assert_eq!(t.tenants[1].status, TenantStatus::Suspended);
    let bad = json.replace("suspended", "paused");
    assert!(has(&problems(&bad), "malformed table JSON"));
}

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn keys_namespaces_and_limits_as_the_issue_writes_them() {
    let json = format!(
        r#"{{"version": 4, "upstreams": {{"u": {{"endpoints": ["127.0.0.1:1"]}}}},
      "tenants": [{{"id": "acme", "hosts": ["acme.test"],
        "rate_limits": {{"tenant": {{"requests": 1000}}, "per_key": {{"requests": 50, "window_s": 10}},
                        "per_client": {{"requests": 5}}}},
        "routes": [{{"prefix": "/", "upstream": "u", "auth": "public"}},
                   {{"prefix": "/@acme/", "upstream": "u", "auth": "api_key", "namespace": "@acme"}},
                   {{"prefix": "/@acme.v2", "upstream": "u", "auth": ["public", "api_key"], "namespace": "@acme.v2"}}]}}],
      "api_keys": [{{"id": "k1", "digest": "{DIGEST_A}", "tenant": "acme", "namespaces": ["@acme"],
                     "expires_at": "2027-01-01T00:00:00Z"}},
                   {{"id": "op", "digest": "{DIGEST_B}", "namespaces": ["*"],
                     "rate_limit": {{"requests": 7, "window_s": 60}}}}]}}"#
    );
    let CheckedTable {
        table, key_expiry, ..
    } = parse(json.as_bytes()).expect("valid");
    assert_eq!(key_expiry, [Some(1_798_761_600), None]);
    assert_eq!(table.api_keys[1].tenant, None);
    let limits = table.tenants[0].rate_limits;
    assert_eq!(
        limits.tenant,
        Some(RateLimit {
            requests: 1000,
            window_s: 1
        })
    );
    assert_eq!(limits.per_key.map(|l| l.window_s), Some(10));
    assert_eq!(
        table.tenants[0].routes[1].namespace.as_deref(),
        Some("@acme")
    );
    let again = serde_json::to_vec(&table).expect("serialise");
    assert_eq!(parse(&again).expect("round trip").table, table);
}

#[test]
fn every_key_namespace_and_limit_problem_is_listed() {
    let json = format!(
        r#"{{"version": 4, "upstreams": {{"u": {{"endpoints": ["127.0.0.1:1"]}}}},
      "tenants": [{{"id": "acme", "hosts": ["acme.test"],
        "rate_limits": {{"tenant": {{"requests": 0}}, "per_client": {{"requests": 5, "window_s": 0}}}},
        "routes": [{{"prefix": "/@acme/", "upstream": "u", "auth": "api_key"}},
                   {{"prefix": "/x/", "upstream": "u", "auth": "api_key", "namespace": "@acme"}},
                   {{"prefix": "/@Bad/", "upstream": "u", "auth": "public"}},
                   {{"prefix": "/@b/", "upstream": "u", "auth": ["api_key", "api_key"], "namespace": "@B"}}]}}],
      "api_keys": [{{"id": "K1", "digest": "sha256:ABC", "tenant": "nope", "namespaces": []}},
                   {{"id": "k2", "digest": "{DIGEST_A}", "namespaces": ["*", "@acme"], "expires_at": "tomorrow"}},
                   {{"id": "k2", "digest": "{DIGEST_A}", "namespaces": ["@acme", "@acme", "acme", "@"],
                     "rate_limit": {{"requests": 2000000000, "window_s": 7200}}}}]}}"#
    );
    let p = problems(&json);
    for needle in [
        "tenants[0].rate_limits.tenant.requests: must be between",
        "tenants[0].rate_limits.per_client.window_s: must be between",
        "tenants[0].routes[0].namespace: prefix \"/@acme/\" lies in namespace \"@acme\"",
        "tenants[0].routes[1].namespace: namespace \"@acme\" needs a prefix of /@acme",
        "tenants[0].routes[2].prefix: \"@Bad\" is not a namespace",
        "tenants[0].routes[3].auth: policy \"api_key\" listed twice",
        "tenants[0].routes[3].namespace: \"@B\" is not a namespace",
        "api_keys[0].id: \"K1\" is not a key id",
        "api_keys[0].digest: must be sha256:",
        "api_keys[0].tenant: unknown tenant \"nope\"",
        "api_keys[0].namespaces: needs at least one namespace",
        "api_keys[1].namespaces: \"*\" already covers every namespace",
        "api_keys[1].expires_at: \"tomorrow\" is not an RFC 3339",
        "api_keys[2].id: key id \"k2\" already used by api_keys[1]",
        "api_keys[2].digest: digest already used by api_keys[1]",
        "api_keys[2].namespaces[1]: \"@acme\" listed twice",
        "api_keys[2].namespaces[2]: \"acme\" is not",
        "api_keys[2].namespaces[3]: \"@\" is not",
        "api_keys[2].rate_limit.requests: must be between",
        "api_keys[2].rate_limit.window_s: must be between",
    ] {
        assert!(has(&p, needle), "missing {needle:?} in {p:#?}");
    }
    assert_eq!(p.len(), 20, "{p:#?}");
}

#[test]
fn namespace_syntax() {
    for ok in ["@acme", "@a", "@0.x_y-z", &format!("@{}", "a".repeat(63))] {
        assert!(is_namespace(ok), "{ok}");
    }
    for bad in [
        "",
        "@",
        "acme",
        "@Acme",
        "@-a",
        "@.a",
        "@a/b",
        "@a;b",
        "*",
        &format!("@{}", "a".repeat(64)),
    ] {
        assert!(!is_namespace(bad), "{bad}");
    }
    assert_eq!(first_segment("/@acme/x"), "@acme");
    assert_eq!(first_segment("/@acme"), "@acme");
    assert_eq!(first_segment("/"), "");
}

#[test]
fn shell_fields_parse_and_round_trip() {
    let json = r#"{"version": 4, "upstreams": {"u": {"endpoints": ["127.0.0.1:1"]},
                                           "shell": {"endpoints": ["127.0.0.1:2"]}},
      "tenants": [
        {"id": "acme", "hosts": ["acme.test"], "display_name": "Acme Corp",
         "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}],
         "catalog": [{"name": "Todos", "path": "/todos/", "icon": "lucide:check-square"},
                     {"name": "Notes", "path": "/notes"}],
         "shell": {"enabled": true, "upstream": "shell", "excludes": ["/api/"]}},
        {"id": "beta", "hosts": ["beta.test"],
         "routes": [{"prefix": "/", "upstream": "u", "auth": "public"}],
         "shell": {"enabled": false}}]}"#;
    let t = parse(json.as_bytes()).expect("valid").table;
    let acme = &t.tenants[0];
    assert_eq!(acme.display_name.as_deref(), Some("Acme Corp"));
    assert_eq!(acme.catalog[1].icon, None);
    let shell = acme.shell.as_ref().expect("shell");
    assert!(shell.enabled);
    assert_eq!(shell.upstream.as_deref(), Some("shell"));
    assert_eq!(shell.excludes, ["/api/"]);
    assert!(t.tenants[1]
        .shell
        .as_ref()
        .is_some_and(|s| s.excludes.is_empty()));
    let again = serde_json::to_vec(&t).expect("serialise");
    assert_eq!(parse(&again).expect("valid").table, t);
}

#[test]
fn every_shell_problem_is_reported() {
    let long = "x".repeat(101);
    let json = format!(
        r#"{{"version": 5, "upstreams": {{"u": {{"endpoints": ["127.0.0.1:1"]}}}},
      "tenants": [
        {{"id": "acme", "hosts": ["acme.test"], "display_name": "{long}",
         "routes": [{{"prefix": "/app/", "upstream": "u", "auth": "public"}}],
         "catalog": [{{"name": "", "path": "todos/", "icon": "Bad Icon"}},
                     {{"name": "A\u0007", "path": "/app/x"}},
                     {{"name": "Dup", "path": "/app/x"}},
                     {{"name": "Unrouted", "path": "/other/"}},
                     {{"name": "Dots", "path": "/app/../x"}}],
         "shell": {{"enabled": true, "upstream": "nope", "excludes": ["/api/", "api", "/api/", "/a//b"], "colour": 1}}}}]}}"#
    );
    let p = problems(&json);
    for needle in [
        "tenants[0].shell.colour: unknown field",
        "tenants[0].display_name: longer than 100 characters",
        "tenants[0].catalog[0].title: must not be empty",
        "tenants[0].catalog[0].path: \"todos/\" is not a normalised absolute path",
        "tenants[0].catalog[0].icon: \"Bad Icon\" is not an icon name",
        "tenants[0].catalog[1].title: must not contain control characters",
        "tenants[0].catalog[2].path: \"/app/x\" listed twice",
        "tenants[0].catalog[3].path: \"/other/\": no route of this tenant matches it",
        "tenants[0].catalog[4].path: \"/app/../x\" is not a normalised",
        "tenants[0].shell.upstream: unknown upstream \"nope\"",
        "tenants[0].shell.excludes[1]: \"api\" is not a normalised",
        "tenants[0].shell.excludes[2]: \"/api/\" listed twice",
        "tenants[0].shell.excludes[3]: \"/a//b\" is not a normalised",
    ] {
        assert!(has(&p, needle), "missing {needle:?} in {p:#?}");
    }
    assert_eq!(p.len(), 13, "{p:#?}");
}

#[test]
fn shell_sizes_are_bounded() {
    let apps: Vec<String> = (0..65)
        .map(|i| format!(r#"{{"name": "a{i}", "path": "/a{i}/"}}"#))
        .collect();
    let excludes: Vec<String> = (0..65).map(|i| format!(r#""/x{i}/""#)).collect();
    let long_path = format!("/{}", "p".repeat(256));
    let json = format!(
        r#"{{"version": 6, "upstreams": {{"u": {{"endpoints": ["127.0.0.1:1"]}}}},
      "tenants": [{{"id": "acme", "hosts": ["acme.test"],
         "routes": [{{"prefix": "/", "upstream": "u", "auth": "public"}}],
         "catalog": [{}, {{"name": "long", "path": "{long_path}"}}],
         "shell": {{"enabled": true, "excludes": [{}]}}}}]}}"#,
        apps.join(","),
        excludes.join(",")
    );
    let p = problems(&json);
    assert!(has(&p, "tenants[0].catalog: more than 64 apps"), "{p:#?}");
    assert!(
        has(&p, "tenants[0].shell.excludes: more than 64 prefixes"),
        "{p:#?}"
    );
    assert!(has(&p, "tenants[0].catalog[65].path"), "{p:#?}");
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn catalog_titles_parse_under_the_old_name_and_serialise_as_title() {
    let new = Table::test().upstream("u", &["127.0.0.1:1"]).tenant(
        Tenant::test("acme")
            .host("acme.test")
            .route("/", "u", "public")
            .app("Todos", "/todos/"),
    );
    let json = String::from_utf8(new.to_json()).expect("utf-8");
    assert!(json.contains(r#""title":"Todos""#), "{json}");
    let old = json.replace(r#""title":"Todos""#, r#""name":"Todos""#);
    assert_eq!(parse(old.as_bytes()).expect("old spelling").table, new);
    assert_eq!(parse(json.as_bytes()).expect("new spelling").table, new);
}

#[test]
fn the_fixture_builder_makes_valid_tables() {
    let table = Table::test()
        .version(3)
        .upstream("app", &["127.0.0.1:9001"])
        .tenant(
            Tenant::test("acme")
                .host("acme.test")
                .host("*.acme.test")
                .route("/", "app", "public")
                .ns_route("/@acme/", "app", "api_key", "@acme")
                .realm("http://127.0.0.1:8180/realms/acme")
                .route("/me", "app", "session")
                .display_name("Acme")
                .app("Todos", "/todos/")
                .shell(),
        )
        .tenant(
            Tenant::test("beta")
                .host("beta.test")
                .route("/", "app", "public")
                .suspended(),
        )
        .key(ApiKey::test("k1", Some("acme"), &["@acme"]))
        .key(ApiKey::test("op", None, &["*"]));
    let checked = parse(&table.to_json()).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(checked.table, table);
    assert_eq!(checked.hosts[0].len(), 2);
    assert_eq!(checked.key_expiry, [None, None]);
}

fn ats(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.at.as_str()).collect()
}

#[test]
fn one_tenant_is_checked_at_paths_relative_to_it() {
    let pools = |name: &str| name == "app";
    let ctx = validate::TenantContext {
        has_upstream: &pools,
        realm_supplied: false,
        skip: validate::Skip::default(),
    };
    let good = Tenant::test("acme")
        .host("ACME.test")
        .route("/", "app", "public");
    assert_eq!(validate::tenant(&good, &ctx), []);
    assert_eq!(
        validate::hosts(&good),
        [HostPattern::Exact("acme.test".into())]
    );
    let bad = Tenant::test("acme")
        .host("acme.test")
        .host("bad host")
        .host("ACME.test")
        .route("nope", "missing", "public")
        .route("/x", "app", "jwt")
        .display_name(" ")
        .app("", "/todos/");
    assert_eq!(
        ats(&validate::tenant(&bad, &ctx)),
        [
            "hosts[1]",
            "hosts[2]",
            "routes[0].prefix",
            "routes[0].upstream",
            "routes[1].auth",
            "display_name",
            "catalog[0].title",
            "catalog[0].path",
        ]
    );
    // The id is the table's to check: a tenant alone is judged without it.
    assert_eq!(
        validate::tenant(
            &Tenant {
                id: "Bad Id".into(),
                ..good.clone()
            },
            &ctx
        ),
        []
    );
}

#[test]
fn a_supplied_realm_allows_jwt_and_session_and_skipped_parts_are_left_out() {
    let pools = |_: &str| true;
    let tenant = Tenant::test("acme")
        .route("/app/", "app", "session")
        .display_name("")
        .app("\u{7}", "/elsewhere/");
    let mut ctx = validate::TenantContext {
        has_upstream: &pools,
        realm_supplied: true,
        skip: validate::Skip::default(),
    };
    assert_eq!(
        ats(&validate::tenant(&tenant, &ctx)),
        [
            "hosts",
            "display_name",
            "catalog[0].title",
            "catalog[0].path"
        ]
    );
    ctx.skip = validate::Skip {
        hosts: true,
        routes: true,
        labels: true,
    };
    assert_eq!(validate::tenant(&tenant, &ctx), []);
    ctx.skip = validate::Skip::default();
    ctx.realm_supplied = false;
    assert!(ats(&validate::tenant(&tenant, &ctx)).contains(&"routes[0].auth"));
}

#[test]
fn one_upstream_and_one_key_are_checked_at_paths_relative_to_them() {
    assert_eq!(validate::upstream(&Upstream::test(&["127.0.0.1:9001"])), []);
    let mut bad = Upstream::test(&["localhost:80", "127.0.0.1:0", "127.0.0.1:0"]);
    bad.read_timeout_ms = Some(0);
    assert_eq!(
        ats(&validate::upstream(&bad)),
        [
            "endpoints[0]",
            "endpoints[1]",
            "endpoints[2]",
            "read_timeout_ms"
        ]
    );
    assert_eq!(
        ats(&validate::upstream(&Upstream::test(&[]))),
        ["endpoints"]
    );

    let mut key = ApiKey::test("k1", Some("no-such-tenant"), &["@acme"]);
    key.expires_at = Some("2027-01-01T00:00:00Z".into());
    assert_eq!(validate::api_key(&key), Ok(Some(1_798_761_600)));
    key.namespaces = vec!["*".into(), "acme".into()];
    key.expires_at = Some("tomorrow".into());
    key.digest = "sha256:00".into();
    let problems = validate::api_key(&key).expect_err("bad key");
    assert_eq!(
        ats(&problems),
        ["digest", "namespaces", "namespaces[1]", "expires_at"]
    );
}

#[test]
fn labels_follow_one_rule() {
    use validate::{label, LabelProblem};
    assert_eq!(label("Acme Ltd", 100), Ok(()));
    assert_eq!(label(&"é".repeat(100), 100), Ok(()));
    assert_eq!(label("", 100), Err(LabelProblem::Blank));
    assert_eq!(label("  ", 100), Err(LabelProblem::Blank));
    assert_eq!(
        label(&"x".repeat(101), 100),
        Err(LabelProblem::TooLong(100))
    );
    assert_eq!(label("a\nb", 100), Err(LabelProblem::Control));
}

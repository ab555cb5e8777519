//! Validation of realms and route auth policies (jwt, session, any-of lists, forward_token).

use crate::*;

fn table(tenants: &str) -> String {
    format!(
        r#"{{"version": 1, "upstreams": {{"u": {{"endpoints": ["127.0.0.1:9001"]}}}}, "tenants": [{tenants}]}}"#
    )
}

fn problems(json: &str) -> Vec<String> {
    match parse(json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

const REALM: &str = r#"{"issuer": "http://127.0.0.1:8180/realms/acme", "audiences": ["acme-api"], "client_id": "realmgate"}"#;

#[test]
fn the_issue_realm_shape_is_valid() {
    let json = table(
        r#"{"id": "acme", "hosts": ["acme.test"], "realm": {"issuer": "http://127.0.0.1:8180/realms/acme",
             "jwks_uri": "http://127.0.0.1:8180/realms/acme/protocol/openid-connect/certs",
             "audiences": ["acme-api", "account"], "client_id": "realmgate", "client_secret": "s3cret"},
           "routes": [{"prefix": "/", "upstream": "u", "auth": "public"},
                      {"prefix": "/api/", "upstream": "u", "auth": "jwt", "forward_token": true},
                      {"prefix": "/app/", "upstream": "u", "auth": "session"},
                      {"prefix": "/both/", "upstream": "u", "auth": ["jwt", "session"]}]},
          {"id": "beta", "hosts": ["beta.test"], "realm": {"issuer": "https://id.example.dev/realms/beta", "audiences": ["beta"]},
           "routes": [{"prefix": "/", "upstream": "u", "auth": "jwt"}]}"#,
    );
    let t = parse(json.as_bytes())
        .unwrap_or_else(|p| panic!("{p:#?}"))
        .table;
    let realm = t.tenants[1].realm.as_ref().expect("realm");
    assert_eq!(
        realm.jwks_uri(),
        "https://id.example.dev/realms/beta/protocol/openid-connect/certs"
    );
    assert!(t.tenants[0].routes[1].forward_token);
    assert!(!t.tenants[0].routes[0].forward_token);
    // Defaults are not written back out.
    let out = serde_json::to_string(&t).expect("serialise");
    assert!(!out.contains("forward_token\":false"), "{out}");
}

#[test]
fn every_realm_and_policy_problem_is_listed() {
    let json = table(&format!(
        r#"{{"id": "a", "hosts": ["a.test"], "realm": {{"issuer": "ftp://x/realms/a", "jwks_uri": "not a url",
              "audiences": [], "client_secret": "s"}},
           "routes": [{{"prefix": "/", "upstream": "u", "auth": "session"}},
                      {{"prefix": "/k/", "upstream": "u", "auth": ["api_key", "jwt", "jwt"]}},
                      {{"prefix": "/p/", "upstream": "u", "auth": "public", "forward_token": true}},
                      {{"prefix": "/.realmgate/x", "upstream": "u", "auth": "public"}}]}},
          {{"id": "b", "hosts": ["b.test"],
           "routes": [{{"prefix": "/", "upstream": "u", "auth": "jwt"}}]}},
          {{"id": "c", "hosts": ["c.test"], "realm": {{"issuer": "http://h/realms/c/", "audiences": ["", "ok"],
              "client_id": "has space"}},
           "routes": [{{"prefix": "/", "upstream": "u", "auth": "public"}}]}},
          {{"id": "d", "hosts": ["d.test"], "realm": {REALM}, "routes": [{{"prefix": "/", "upstream": "u", "auth": "jwt"}}]}},
          {{"id": "e", "hosts": ["e.test"], "realm": {REALM}, "routes": [{{"prefix": "/", "upstream": "u", "auth": "jwt"}}]}},
          {{"id": "f", "hosts": ["f.test"], "realm": {{"issuer": "http://h/realms/f?x=1", "audiences": ["f"], "extra": 1}},
           "routes": [{{"prefix": "/", "upstream": "u", "auth": []}}]}}"#
    ));
    let p = problems(&json);
    for needle in [
        "tenants[5].realm.extra: unknown field",
        "tenants[0].realm.issuer: \"ftp://x/realms/a\" must be an http:// or https:// URL",
        "tenants[0].realm.jwks_uri: \"not a url\" is not an absolute URL",
        "tenants[0].realm.audiences: needs at least one audience",
        "tenants[0].realm.client_secret: a client secret without client_id",
        "tenants[0].routes[0].auth: session needs the realm's login client",
        "tenants[0].routes[1].auth: policy \"jwt\" listed twice",
        "tenants[0].routes[2].forward_token: needs a jwt or session policy",
        "tenants[0].routes[3].prefix: \"/.realmgate/x\": paths under /.realmgate/ belong to the gateway",
        "tenants[1].routes[0].auth: jwt and session need the tenant to have a realm",
        "tenants[2].realm.issuer: \"http://h/realms/c/\" ends with '/'",
        "tenants[2].realm.audiences[0]: \"\" must be 1-255 characters",
        "tenants[2].realm.client_id: must be 1-255 visible ASCII characters",
        "tenants[4].realm.issuer: issuer already used by tenant \"d\"",
        "tenants[5].realm.issuer: \"http://h/realms/f?x=1\" must not have a query",
        "tenants[5].routes[0].auth: needs at least one policy",
    ] {
        assert!(p.iter().any(|x| x.contains(needle)), "missing {needle:?} in {p:#?}");
    }
    assert_eq!(p.len(), 16, "{p:#?}");
}

#[test]
fn urls_must_be_in_normal_form() {
    for bad in [
        "HTTP://h/realms/a",
        "http://H/realms/a",
        "http://h:80/realms/a",
        "http://h/realms/../a",
        "http://user:pw@h/realms/a",
        "http:///realms/a",
    ] {
        let json = table(&format!(
            r#"{{"id": "a", "hosts": ["a.test"], "realm": {{"issuer": "{bad}", "audiences": ["a"]}},
               "routes": [{{"prefix": "/", "upstream": "u", "auth": "jwt"}}]}}"#
        ));
        let p = problems(&json);
        assert!(
            p.iter().any(|x| x.contains("tenants[0].realm.issuer")),
            "{bad}: {p:#?}"
        );
    }
}

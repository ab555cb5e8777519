//! `admit`, case by case: the policy precedence (API key, then realm identity, then public),
//! one refusal type for all of them, and the login redirect agreeing with the shell.

use super::*;
use crate::auth::{upstream_identity, AuthConfig, Identity, SessionKeys};
use crate::headers;
use crate::metrics::AuthMetrics;
use crate::snapshot::test_util::{snapshot, table, KEY_SECRET};
use crate::snapshot::Snapshot;
use http::HeaderValue;
use pingora_http::RequestHeader;
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn auth() -> Auth {
    Auth::new(
        AuthConfig::default(),
        SessionKeys::random(),
        Arc::new(AuthMetrics::detached()),
    )
    .expect("auth")
}

fn req(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, path.as_bytes(), None).expect("request");
    r.append_header("host", host).expect("host");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

/// What `admit` decided, in one line.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Public,
    Identity,
    Key(u32, Option<&'static str>),
    Refused(GatewayError),
    Answered(u16),
}

async fn admit_one(auth: &Auth, s: &Snapshot, r: &RequestHeader) -> Outcome {
    let resolved = crate::request::resolve(s, r, false).expect("resolves");
    let tenant = s.tenant(resolved.tenant);
    let rid = HeaderValue::from_static("rid");
    let request = Request {
        req: r,
        https: false,
        tenant: &tenant.id,
        realm: tenant.realm.as_ref(),
        request_id: &rid,
    };
    let admission = Admission {
        policy: resolved.policy,
        endpoint: resolved.endpoint,
        tenant: resolved.tenant,
        namespace: resolved
            .route
            .and_then(|i| tenant.routes.get(i).namespace.as_ref()),
        keys: &s.keys,
        jwks: s.assertion.as_deref().map(|a| &a.jwks),
        path: resolved.target.as_deref().unwrap_or(r.uri.path()),
    };
    let mut actx = AuthCtx::default();
    match auth.admit(&request, &admission, &mut actx).await {
        Ok(Grant::Public) => Outcome::Public,
        Ok(Grant::Identity) => Outcome::Identity,
        Ok(Grant::ApiKey(k)) => Outcome::Key(
            k.key,
            k.namespace.map(|n| match n.as_bytes() {
                b"@acme" => "@acme",
                _ => "other",
            }),
        ),
        Err(Refusal::Gateway(e)) => Outcome::Refused(e),
        Err(Refusal::Reply(reply)) => Outcome::Answered(reply.head.status.as_u16()),
    }
}

/// (host, path, headers, outcome)
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Outcome);

#[tokio::test]
async fn policies_decide_in_their_order() {
    let s = snapshot(&table());
    let auth = auth();
    let key_header = [("x-api-key", KEY_SECRET)];
    let bearer = format!("Bearer {KEY_SECRET}");
    let lower_bearer = format!("bearer   {KEY_SECRET}");
    let other_key = "rgk_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let other_bearer = format!("Bearer {other_key}");
    // (host, path, headers, outcome)
    let cases: Vec<Case<'_>> = vec![
        ("acme.test", "/", vec![], Outcome::Public),
        // A key is not looked at on a route without `api_key`.
        (
            "acme.test",
            "/",
            vec![("x-api-key", other_key)],
            Outcome::Public,
        ),
        (
            "acme.test",
            "/api/x",
            vec![],
            Outcome::Refused(GatewayError::MissingApiKey),
        ),
        (
            "acme.test",
            "/api/x",
            key_header.to_vec(),
            Outcome::Key(0, None),
        ),
        (
            "acme.test",
            "/api/x",
            vec![("authorization", &bearer)],
            Outcome::Key(0, None),
        ),
        // RFC 9110: the scheme is case-insensitive, one or more spaces before the token.
        (
            "acme.test",
            "/api/x",
            vec![("authorization", &lower_bearer)],
            Outcome::Key(0, None),
        ),
        (
            "acme.test",
            "/api/x",
            vec![("x-api-key", other_key)],
            Outcome::Refused(GatewayError::InvalidApiKey),
        ),
        (
            "acme.test",
            "/api/x",
            vec![("x-api-key", KEY_SECRET), ("authorization", &other_bearer)],
            Outcome::Refused(GatewayError::ConflictingApiKeys),
        ),
        (
            "acme.test",
            "/@acme/x",
            key_header.to_vec(),
            Outcome::Key(0, Some("@acme")),
        ),
        // `public` or `api_key`: a presented key is still checked.
        ("acme.test", "/mixed/1", vec![], Outcome::Public),
        (
            "acme.test",
            "/mixed/1",
            key_header.to_vec(),
            Outcome::Key(0, None),
        ),
        (
            "acme.test",
            "/mixed/1",
            vec![("x-api-key", other_key)],
            Outcome::Refused(GatewayError::InvalidApiKey),
        ),
        // Another tenant's key.
        (
            "shelly.test",
            "/jwt/x",
            key_header.to_vec(),
            Outcome::Refused(GatewayError::NamespaceDenied),
        ),
        // Realm policies answer with their own refusal; `public` beside `jwt` admits anyone.
        ("shelly.test", "/jwt/x", vec![], Outcome::Answered(401)),
        (
            "shelly.test",
            "/jwt/x",
            vec![("authorization", "Basic eDp5")],
            Outcome::Answered(401),
        ),
        ("shelly.test", "/maybe/x", vec![], Outcome::Public),
        (
            "shelly.test",
            "/todos/x",
            vec![("accept", "application/json")],
            Outcome::Answered(401),
        ),
        // Gateway endpoints answer themselves.
        (
            "acme.test",
            "/.realmgate/nope",
            vec![],
            Outcome::Answered(404),
        ),
    ];
    for (host, path, headers, expected) in cases {
        let r = req("GET", host, path, &headers);
        assert_eq!(
            admit_one(&auth, &s, &r).await,
            expected,
            "{host}{path} {headers:?}"
        );
    }
}

/// A verified token (here: from the cache) is accepted whatever the case of `Bearer` and
/// however many spaces follow it.
#[tokio::test]
async fn bearer_tokens_in_any_case_and_spacing() {
    let s = snapshot(&table());
    let auth = auth();
    let realm = s.tenant(2).realm.as_ref().expect("shelly has a realm");
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
    let claims = crate::auth::jwt::Claims {
        sub: "u".into(),
        roles: Vec::new(),
        exp: u64::MAX / 2,
        name: None,
    };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    auth.tokens.insert(
        digest,
        Arc::new(Identity::new(
            realm.id,
            &claims,
            None,
            crate::assertion::Via::Jwt,
        )),
    );
    for scheme in ["Bearer ", "bearer ", "BEARER ", "bearer   ", "Bearer \t "] {
        let value = format!("{scheme}{token}");
        let r = req("GET", "shelly.test", "/jwt/x", &[("authorization", &value)]);
        assert_eq!(
            admit_one(&auth, &s, &r).await,
            Outcome::Identity,
            "{value:?}"
        );
    }
}

/// The shell and the login redirect classify every request alike (DESIGN.md's rule): a
/// navigation to a session route without a session starts a login (not a 401) exactly when the
/// shell would answer it. Before one rule, `HEAD`, `Document` and a two-line `Accept` got the
/// shell from one and a 401 from the other.
#[tokio::test]
async fn the_login_redirect_and_the_shell_agree() {
    let s = snapshot(&table());
    let auth = auth();
    let shell = s.tenant(2).shell.as_deref().expect("shelly has a shell");
    // (method, headers, a navigation)
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
    let cases: &[Case] = &[
        ("GET", &[("sec-fetch-dest", "document")], true),
        ("HEAD", &[("sec-fetch-dest", "document")], true),
        ("GET", &[("sec-fetch-dest", "Document")], true),
        ("HEAD", &[("Sec-Fetch-Dest", "DOCUMENT")], true),
        (
            "GET",
            &[("accept", "application/json"), ("accept", "text/html")],
            true,
        ),
        ("HEAD", &[("accept", "text/html")], true),
        (
            "GET",
            &[("sec-fetch-dest", "iframe"), ("accept", "text/html")],
            false,
        ),
        ("GET", &[("accept", "application/json")], false),
        ("POST", &[("sec-fetch-dest", "document")], false),
        ("GET", &[], false),
    ];
    for &(method, headers, navigation) in cases {
        let r = req(method, "shelly.test", "/todos/3", headers);
        let shell_page = crate::shell::decide(shell, &r, "/todos/3").is_some();
        assert_eq!(shell_page, navigation, "shell: {method} {headers:?}");
        let outcome = admit_one(&auth, &s, &r).await;
        assert!(matches!(outcome, Outcome::Answered(_)), "{outcome:?}");
        let login = !matches!(outcome, Outcome::Answered(401));
        assert_eq!(
            login, navigation,
            "login: {method} {headers:?}: {outcome:?}"
        );
    }
}

/// Finding 11: a key went upstream when another `Authorization` value came first. Every value
/// counts: the key is checked whatever its position, and after admission no value carrying a
/// key, and no unchecked credential beside it, reaches the upstream.
#[tokio::test]
async fn keys_never_reach_the_upstream_in_any_authorization_order() {
    let s = snapshot(&table());
    let auth = auth();
    let key = format!("Bearer {KEY_SECRET}");
    let lower = format!("bearer\t{KEY_SECRET}");
    let bare = KEY_SECRET.to_owned();
    let basic = "Basic dXNlcjpwYXNz";
    // (path, Authorization values in order, outcome, Authorization the upstream gets)
    type Case<'a> = (&'a str, Vec<&'a str>, Outcome, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        ("/api/x", vec![basic, &key], Outcome::Key(0, None), vec![]),
        ("/api/x", vec![&key, basic], Outcome::Key(0, None), vec![]),
        (
            "/@acme/x",
            vec![basic, &key],
            Outcome::Key(0, Some("@acme")),
            vec![],
        ),
        (
            "/api/x",
            vec![&key, &key],
            Outcome::Refused(GatewayError::ConflictingApiKeys),
            vec![],
        ),
        // A public route does not check keys, and does not forward them either.
        ("/", vec![basic, &key], Outcome::Public, vec![basic]),
        ("/", vec![&key], Outcome::Public, vec![]),
        ("/", vec![&lower, basic], Outcome::Public, vec![basic]),
        ("/", vec![&bare], Outcome::Public, vec![]),
        ("/mixed/x", vec![basic, &key], Outcome::Key(0, None), vec![]),
        ("/mixed/x", vec![basic], Outcome::Public, vec![basic]),
    ];
    for (path, values, outcome, upstream) in cases {
        let headers: Vec<(&str, &str)> = values.iter().map(|v| ("authorization", *v)).collect();
        let r = req("GET", "acme.test", path, &headers);
        let got = admit_one(&auth, &s, &r).await;
        assert_eq!(got, outcome, "{path} {values:?}");
        let grant = match got {
            Outcome::Key(k, ns) => Grant::ApiKey(api_key::KeyGrant {
                key: k,
                namespace: ns.map(HeaderValue::from_static),
            }),
            Outcome::Public => Grant::Public,
            _ => continue,
        };
        let mut up = r.clone();
        let tenant = HeaderValue::from_static("acme");
        upstream_identity(
            &mut up,
            Some((&tenant, &s.keys)),
            &grant,
            &AuthCtx::default(),
        )
        .expect("upstream headers");
        let sent: Vec<&[u8]> = headers::authorizations(&up).collect();
        let want: Vec<&[u8]> = upstream.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(sent, want, "{path} {values:?}");
    }
}

/// Finding 12: a cross-site request must not end the session. Only a POST whose `Origin` (or,
/// without one, `Referer`) is the tenant host's own origin logs out; a GET gets a confirmation
/// page that changes nothing.
#[tokio::test]
async fn only_a_same_origin_post_logs_out() {
    let s = snapshot(&table());
    let auth = auth();
    let path = "/.realmgate/logout";
    // (method, Host, headers, status)
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        u16,
    );
    let cases: &[Case] = &[
        (
            "POST",
            "shelly.test",
            &[("origin", "http://shelly.test")],
            303,
        ),
        (
            "POST",
            "shelly.test",
            &[("origin", "HTTP://SHELLY.TEST")],
            303,
        ),
        (
            "POST",
            "shelly.test:8080",
            &[("origin", "http://shelly.test:8080")],
            303,
        ),
        (
            "POST",
            "shelly.test:80",
            &[("origin", "http://shelly.test")],
            303,
        ),
        (
            "POST",
            "shelly.test",
            &[("referer", "http://shelly.test/todos/1?x")],
            303,
        ),
        (
            "POST",
            "shelly.test",
            &[("origin", "http://evil.test")],
            403,
        ),
        ("POST", "shelly.test", &[("origin", "null")], 403),
        (
            "POST",
            "shelly.test",
            &[("origin", "https://shelly.test")],
            403,
        ),
        (
            "POST",
            "shelly.test",
            &[("origin", "http://shelly.test:8080")],
            403,
        ),
        (
            "POST",
            "shelly.test",
            &[("origin", "http://shelly.test.evil.test")],
            403,
        ),
        (
            "POST",
            "shelly.test",
            &[("origin", "http://shelly.test/")],
            403,
        ),
        (
            "POST",
            "shelly.test",
            &[("origin", "http://u@shelly.test")],
            403,
        ),
        ("POST", "shelly.test", &[("origin", "")], 403),
        (
            "POST",
            "shelly.test",
            &[
                ("origin", "http://shelly.test"),
                ("origin", "http://evil.test"),
            ],
            403,
        ),
        // Origin decides when present, whatever Referer says.
        (
            "POST",
            "shelly.test",
            &[
                ("origin", "http://evil.test"),
                ("referer", "http://shelly.test/"),
            ],
            403,
        ),
        (
            "POST",
            "shelly.test",
            &[("referer", "http://evil.test/shelly.test")],
            403,
        ),
        ("POST", "shelly.test", &[("referer", "/todos/")], 403),
        ("POST", "shelly.test", &[], 403),
        ("GET", "shelly.test", &[], 200),
        (
            "GET",
            "shelly.test",
            &[("origin", "http://shelly.test")],
            200,
        ),
        ("HEAD", "shelly.test", &[], 200),
        (
            "PUT",
            "shelly.test",
            &[("origin", "http://shelly.test")],
            405,
        ),
        (
            "DELETE",
            "shelly.test",
            &[("origin", "http://shelly.test")],
            405,
        ),
    ];
    for &(method, host, headers, status) in cases {
        let r = req(method, host, path, headers);
        assert_eq!(
            admit_one(&auth, &s, &r).await,
            Outcome::Answered(status),
            "{method} {host} {headers:?}"
        );
    }
}

//! Attack tables for the credential classes of issue 13 (findings 10–12 and the upstream
//! `Set-Cookie` one), against the real gateway: each class is a table of request variants and
//! what must come of them.
//!
//! - the gateway's cookies (`rg_session*`, `rg_tx_*`) never reach an upstream, whatever bytes
//!   surround them in `Cookie` — and the session is still read;
//! - an API key is checked and never reaches an upstream, whatever the order, number and
//!   spelling of `Authorization` values;
//! - only a same-origin POST ends a session;
//! - no upstream can set the gateway's cookies, or any cookie with a `Domain`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use realmgate_e2e::{
    Canned, Echo, Gateway, GatewayOpts, JwksServer, RawResponse, Scripted, Table, TempDir, TestKey,
    Upstream,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

const ISS: &str = "http://id.test/realms/acme";
const SESSION_KEY: [u8; 32] = [0xab; 32];
const KEY: &str = "rgk_acmeacmeacmeacmeacmeacmeacmeacmeacmeacmeacm";
const UNKNOWN_KEY: &str = "rgk_unknownunknownunknownunknownunknownunknownx";
const BASIC: &str = "Basic dXNlcjpwYXNz";

struct F {
    gw: Gateway,
    _up: Upstream,
    hostile: Scripted,
    _jwks: JwksServer,
    _keys: TempDir,
    token: TestKey,
}

async fn fixture() -> F {
    let up = Upstream::start("app").await;
    let hostile = Scripted::start().await;
    let jwks = JwksServer::start().await;
    let token = TestKey::rs256("k1");
    jwks.set_keys("/certs", vec![token.jwk()]);
    let keys = TempDir::new("session-key");
    let key_file = keys.write("session-key", hex::encode(SESSION_KEY));
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: format!("  session_key_file: \"{}\"\n", key_file.display()),
        ..GatewayOpts::default()
    })
    .await;
    let route = |prefix: &str, upstream: &str, auth: Value| json!({"prefix": prefix, "upstream": upstream, "auth": auth});
    let realm = json!({"issuer": ISS, "jwks_uri": jwks.url("/certs"), "audiences": ["acme-api"],
                       "client_id": "gateway"});
    let mut table = Table::new(1)
        .upstream("app", [up.addr()])
        .upstream("hostile", [hostile.addr()])
        .tenant_json(
            json!({"id": "acme", "hosts": ["acme.test"], "realm": realm, "routes": [
                route("/", "app", json!("public")),
                route("/s/", "app", json!("session")),
                route("/a/", "app", json!("api_key")),
                route("/k/", "app", json!(["api_key", "jwt"])),
                route("/j/", "app", json!("jwt")),
                route("/h/", "hostile", json!("public")),
            ]}),
        )
        .tenant_json(json!({"id": "own", "hosts": ["own.test"],
            "shell": {"enabled": true, "upstream": "hostile"},
            "catalog": [{"name": "Todos", "path": "/todos/"}],
            "routes": [route("/", "app", json!("public"))]}))
        .build();
    table["api_keys"] = json!([{
        "id": "k-acme", "tenant": "acme", "namespaces": ["*"],
        "digest": format!("sha256:{}", hex::encode(Sha256::digest(KEY.as_bytes()))),
    }]);
    gw.push_ok(&table).await;
    F {
        gw,
        _up: up,
        hostile,
        _jwks: jwks,
        _keys: keys,
        token,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A session cookie value as the gateway seals it for tenant `acme` (see
/// `gateway/src/auth/session.rs`): chunk count `1`, then base64url(version ‖ nonce ‖ sealed).
fn session_value(sub: &str) -> String {
    let data = json!({"t": "acme", "sub": sub, "roles": ["user"], "at": "opaque",
                      "aexp": now() + 3600});
    let cipher = Aes256Gcm::new((&SESSION_KEY).into());
    let nonce: [u8; 12] = std::array::from_fn(|_| fastrand::u8(..));
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: data.to_string().as_bytes(),
                aad: b"realmgate/v1/session/acme",
            },
        )
        .expect("seal");
    let mut raw = vec![1u8];
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&sealed);
    format!("1{}", URL_SAFE_NO_PAD.encode(raw))
}

/// A request with raw header bytes (reqwest would refuse some of them).
fn request(method: &str, host: &str, path: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    for (name, value) in headers {
        r.extend_from_slice(name.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(value);
        r.extend_from_slice(b"\r\n");
    }
    if method == "POST" || method == "PUT" {
        r.extend_from_slice(b"Content-Length: 0\r\n");
    }
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    r
}

fn echo(r: &RawResponse, what: &str) -> Echo {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    Echo::from_json(&r.json())
}

fn set_cookies(r: &RawResponse) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Every header value the upstream saw, lower-cased, for "never contains" checks.
fn everything(e: &Echo) -> String {
    format!("{:?}", e.headers).to_ascii_lowercase()
}

/// Finding 10: a non-ASCII (obs-text) byte anywhere in `Cookie` used to disable the filter.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_cookies_never_reach_the_upstream() {
    let f = fixture().await;
    let s = session_value("alice");
    let sess = format!("rg_session={s}");
    let cat = |parts: &[&[u8]]| parts.concat();
    // (Cookie lines, a cookie of the client's own that must still arrive)
    let cases: Vec<(Vec<Vec<u8>>, Option<&str>)> = vec![
        (vec![cat(&[b"a=\xe9; ", sess.as_bytes()])], None),
        (
            vec![cat(&[sess.as_bytes(), b"; b=\xff\xfe; c=2"])],
            Some("c=2"),
        ),
        (
            vec![cat(&[
                b"x=\x80; ",
                sess.as_bytes(),
                b"; rg_tx_abc=q; y=\xc3\xa9; z=1",
            ])],
            Some("z=1"),
        ),
        (
            vec![cat(&[b"caf\xe9=1;", sess.as_bytes(), b";rg_tx_x=2;d=4"])],
            Some("d=4"),
        ),
        (
            vec![cat(&[b"   ", sess.as_bytes(), b"   ;   e=5   "])],
            Some("e=5"),
        ),
        (
            vec![cat(&[
                b"q=\"v\xe9\"; ",
                sess.as_bytes(),
                b"; rg_tx_q=\"w\"; g=\"7\"",
            ])],
            Some("g=\"7\""),
        ),
        (
            vec![
                b"h=\xe9".to_vec(),
                cat(&[sess.as_bytes(), b"; rg_tx_1=a"]),
                b"i=9".to_vec(),
            ],
            Some("i=9"),
        ),
        (
            vec![b"rg_tx_zz=\xe9\xe9".to_vec(), sess.as_bytes().to_vec()],
            None,
        ),
        (
            vec![cat(&[
                b"RG_SESSION=x; __Secure-rg_session=y; Rg_Tx_A=\xe9; ",
                sess.as_bytes(),
                b"; j=1",
            ])],
            Some("j=1"),
        ),
    ];
    for (lines, kept) in &cases {
        let headers: Vec<(&str, &[u8])> = lines.iter().map(|l| ("cookie", l.as_slice())).collect();
        let what = format!(
            "{:?}",
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l))
                .collect::<Vec<_>>()
        );
        for path in ["/s/x", "/x"] {
            let e = echo(
                &f.gw.raw(request("GET", "acme.test", path, &headers)).await,
                &what,
            );
            let seen = everything(&e);
            assert!(
                !seen.contains("rg_session") && !seen.contains("rg_tx_"),
                "{path} {what}: the upstream saw {:?}",
                e.header_all("cookie")
            );
            if let Some(kept) = kept {
                assert!(
                    e.header_all("cookie").iter().any(|c| c.contains(kept)),
                    "{path} {what}: {kept} lost: {:?}",
                    e.header_all("cookie")
                );
            }
            if path == "/s/x" {
                // The session itself is read past the same bytes.
                assert_eq!(e.header_all("x-realmgate-subject"), ["alice"], "{what}");
            }
        }
    }
}

/// Finding 11: a key went upstream when `Authorization: Basic` came first.
#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_checked_and_never_reach_the_upstream() {
    let f = fixture().await;
    let jwt = f.token.sign(&realmgate_e2e::tokens::access_claims(
        ISS, "bob", "acme-api",
    ));
    let key = format!("Bearer {KEY}");
    let unknown = format!("Bearer {UNKNOWN_KEY}");
    let lower = format!("bearer {KEY}");
    let spaced = format!("BEARER   {KEY}");
    let tab = format!("Bearer\t{KEY}");
    let bearer_jwt = format!("Bearer {jwt}");
    // (path, headers, status, key id upstream, Authorization upstream)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, bool, Vec<&'a str>);
    let a = "authorization";
    let cases: Vec<Case<'_>> = vec![
        ("/a/x", vec![(a, BASIC), (a, &key)], 200, true, vec![]),
        ("/a/x", vec![(a, &key), (a, BASIC)], 200, true, vec![]),
        ("/a/x", vec![(a, &lower)], 200, true, vec![]),
        ("/a/x", vec![(a, BASIC), (a, &spaced)], 200, true, vec![]),
        ("/a/x", vec![(a, &key), (a, &key)], 400, false, vec![]),
        ("/a/x", vec![(a, &key), (a, &unknown)], 400, false, vec![]),
        ("/a/x", vec![(a, BASIC), (a, &unknown)], 401, false, vec![]),
        (
            "/a/x",
            vec![("x-api-key", KEY), (a, BASIC)],
            200,
            true,
            vec![],
        ),
        ("/k/x", vec![(a, BASIC), (a, &key)], 200, true, vec![]),
        // The key decides; the JWT beside it was not checked and does not go upstream.
        ("/k/x", vec![(a, &bearer_jwt), (a, &key)], 200, true, vec![]),
        ("/k/x", vec![(a, &bearer_jwt)], 200, false, vec![]),
        // Two Authorization values on a jwt route: refused, not a guess at which one counts.
        (
            "/j/x",
            vec![(a, BASIC), (a, &bearer_jwt)],
            400,
            false,
            vec![],
        ),
        (
            "/j/x",
            vec![(a, &bearer_jwt), (a, &key)],
            400,
            false,
            vec![],
        ),
        // A public route checks no key and forwards none, in any spelling.
        ("/x", vec![(a, BASIC), (a, &key)], 200, false, vec![BASIC]),
        ("/x", vec![(a, &tab), (a, BASIC)], 200, false, vec![BASIC]),
        ("/x", vec![(a, KEY)], 200, false, vec![]),
        ("/x", vec![("x-api-key", KEY)], 200, false, vec![]),
    ];
    for (path, headers, status, key_id, upstream) in cases {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let r = f.gw.raw(request("GET", "acme.test", path, &raw)).await;
        let what = format!("{path} {headers:?}");
        assert_eq!(r.status, status, "{what}: {}", r.text());
        if status != 200 {
            continue;
        }
        let e = Echo::from_json(&r.json());
        assert!(!everything(&e).contains("rgk_"), "{what}: {:?}", e.headers);
        assert_eq!(
            e.header_all("x-realmgate-key-id") == ["k-acme"],
            key_id,
            "{what}: {:?}",
            e.headers
        );
        assert_eq!(e.header_all("authorization"), upstream, "{what}");
    }
}

/// Finding 12: logout CSRF. Only a same-origin POST ends the session; everything else leaves
/// it alone and says why.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_same_origin_post_logs_out() {
    let f = fixture().await;
    let cookie = format!("rg_session={}", session_value("alice"));
    let c: (&str, &[u8]) = ("cookie", cookie.as_bytes());
    // (method, headers besides the session cookie, status)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, u16);
    let cases: Vec<Case<'_>> = vec![
        ("POST", vec![("origin", b"http://evil.test")], 403),
        ("POST", vec![], 403),
        ("POST", vec![("origin", b"null")], 403),
        (
            "POST",
            vec![("origin", b"null"), ("referer", b"http://acme.test/")],
            403,
        ),
        ("POST", vec![("origin", b"https://acme.test")], 403),
        ("POST", vec![("origin", b"http://acme.test.evil.test")], 403),
        ("POST", vec![("origin", b"http://acme.test:8080")], 403),
        (
            "POST",
            vec![("referer", b"http://evil.test/acme.test")],
            403,
        ),
        (
            "POST",
            vec![
                ("origin", b"http://evil.test"),
                ("referer", b"http://acme.test/"),
            ],
            403,
        ),
        (
            "POST",
            vec![
                ("origin", b"http://acme.test"),
                ("origin", b"http://evil.test"),
            ],
            403,
        ),
        ("GET", vec![], 200),
        ("GET", vec![("origin", b"http://acme.test")], 200),
        ("PUT", vec![("origin", b"http://acme.test")], 405),
        (
            "POST",
            vec![("referer", b"http://acme.test/s/page?x=1")],
            303,
        ),
        ("POST", vec![("origin", b"http://acme.test")], 303),
    ];
    let mut ended = 0.0;
    for (method, mut headers, status) in cases {
        let what = format!("{method} {headers:?}");
        headers.push(c);
        let r =
            f.gw.raw(request(method, "acme.test", "/.realmgate/logout", &headers))
                .await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let cleared = set_cookies(&r)
            .iter()
            .any(|v| v.starts_with("rg_session=;") && v.contains("Max-Age=0"));
        assert_eq!(cleared, status == 303, "{what}: {:?}", r.headers);
        match status {
            303 => ended += 1.0,
            403 => {
                r.assert_error(403, "forbidden");
                assert!(r.text().contains("Origin"), "{what}: {}", r.text());
            }
            200 => {
                assert!(set_cookies(&r).is_empty(), "{what}");
                let csp = r.header("content-security-policy").unwrap_or("");
                assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
                if method == "GET" {
                    let page = r.text();
                    assert!(
                        page.contains("method=\"post\"")
                            && page.contains("action=\"/.realmgate/logout\""),
                        "{what}: {page}"
                    );
                }
            }
            _ => assert_eq!(r.header("allow"), Some("GET, HEAD, POST"), "{what}"),
        }
        let m = f.gw.metrics().await;
        assert_eq!(m.value("realmgate_logouts_total", &[]), ended, "{what}");
    }
}

/// A tenant's upstream (an app, or its shell upstream) must not plant a session or login state,
/// nor a cookie for a parent domain that sibling tenants share.
#[tokio::test(flavor = "multi_thread")]
async fn upstreams_cannot_set_the_gateways_cookies_or_domain_cookies() {
    let f = fixture().await;
    let forged = session_value("mallory");
    let session_cookie = format!("rg_session={forged}; Path=/; HttpOnly");
    // (Set-Cookie, reaches the client)
    let cases: Vec<(&str, bool)> = vec![
        (&session_cookie, false),
        ("RG_SESSION=1abc; Path=/", false),
        ("Rg_Session_1=abc", false),
        ("__Host-rg_session=1abc; Path=/; Secure", false),
        ("rg_tx_abc=q; Path=/.realmgate/callback", false),
        ("x=1; Domain=parent.test", false),
        ("x=1; domain=.acme.test", false),
        ("x=1; Path=/; DOMAIN=acme.test; HttpOnly", false),
        ("a=1; Path=/", true),
        ("b=2; Path=/; HttpOnly; SameSite=Lax", true),
    ];
    for (i, (value, passes)) in cases.iter().enumerate() {
        let path = format!("/h/{i}");
        f.hostile.route(
            &path,
            Canned::new("text/plain", "ok").header("set-cookie", value),
        );
        let r = f.gw.raw(request("GET", "acme.test", &path, &[])).await;
        assert_eq!(r.status, 200, "{value}: {}", r.text());
        assert_eq!(
            set_cookies(&r) == [*value],
            *passes,
            "{value}: {:?}",
            r.headers
        );
        if !passes {
            assert!(set_cookies(&r).is_empty(), "{value}: {:?}", r.headers);
        }
    }
    // All in one response: exactly the ordinary ones remain, in order.
    let mut all = Canned::new("text/plain", "ok");
    for (value, _) in &cases {
        all = all.header("set-cookie", value);
    }
    f.hostile.route("/h/all", all);
    let r = f.gw.raw(request("GET", "acme.test", "/h/all", &[])).await;
    let want: Vec<&str> = cases.iter().filter(|c| c.1).map(|c| c.0).collect();
    assert_eq!(set_cookies(&r), want);
    // A tenant's shell upstream is held to the same rule.
    f.hostile.route(
        "/",
        Canned::new("text/html", "<html><head></head><body>shell</body></html>")
            .header("set-cookie", &session_cookie)
            .header("set-cookie", "s=1; Domain=test")
            .header("set-cookie", "a=1; Path=/"),
    );
    let r =
        f.gw.raw(request(
            "GET",
            "own.test",
            "/",
            &[("sec-fetch-dest", b"document"), ("accept", b"text/html")],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("realmgate-context"),
        "not the shell: {}",
        r.text()
    );
    assert_eq!(set_cookies(&r), ["a=1; Path=/"]);
}

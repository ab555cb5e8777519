//! Attacks on the edge, as tables of requests and expected outcomes, through the real gateway
//! over raw sockets. Each class is tried with several variants: a fix must close the class
//! (how paths are read, which headers are ours, what is read before auth), not one request.

use realmgate_e2e::{Echo, Gateway, GatewayOpts, RawResponse, Table, Upstream};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ACME_KEY: &str = "rgk_attackattackattackattackattackattackattackx";

struct Edge {
    gw: Gateway,
    _up: Upstream,
}

/// One tenant with a public tree, protected trees under it and beside it, and two namespaces.
async fn edge() -> Edge {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let route = |prefix: &str, auth: &str, ns: Option<&str>| {
        let mut r = json!({"prefix": prefix, "upstream": "app", "auth": auth});
        if let Some(ns) = ns {
            r["namespace"] = json!(ns);
        }
        r
    };
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(ACME_KEY.as_bytes()))
    );
    let mut table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant_json(json!({"id": "acme", "hosts": ["acme.test"], "routes": [
            route("/", "public", None),
            route("/w/", "public", None),
            route("/w/admin/", "api_key", None),
            route("/admin/", "api_key", None),
            route("/public/", "public", None),
            route("/@acme/", "api_key", Some("@acme")),
            route("/@other/", "api_key", Some("@other")),
        ]}))
        .build();
    table["api_keys"] =
        json!([{"id": "k-acme", "tenant": "acme", "digest": digest, "namespaces": ["@acme"]}]);
    gw.push_ok(&table).await;
    Edge { gw, _up: up }
}

fn request(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: acme.test\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// The expected outcome of one attack.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Refused with this status and error code.
    Refused(u16, &'static str),
    /// Proxied, and the upstream saw exactly this target.
    Forwarded(&'static str),
}

fn check(what: &str, resp: &RawResponse, want: Want) {
    match want {
        Want::Refused(status, code) => {
            assert_eq!(
                resp.status,
                status,
                "{what}: expected {status} {code}, got {} {}",
                resp.status,
                resp.text()
            );
            resp.assert_error(status, code);
        }
        Want::Forwarded(path) => {
            assert_eq!(resp.status, 200, "{what}: {}", resp.text());
            let v: Value = resp.json();
            let echo = Echo::from_json(&v);
            assert_eq!(echo.path, path, "{what}: the upstream saw another target");
        }
    }
}

/// Findings 2 and 3: no path reaches an upstream in a form that a common server would
/// resolve to another route or namespace than the one the gateway checked — encoded slashes
/// and backslashes (any case), raw backslashes, `;params` (servlets cut them; `..;` is `..`),
/// double encoding. Paths whose every reading stays on the checked route pass unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn paths_are_checked_as_every_server_reads_them() {
    let e = edge().await;
    let key = format!("X-API-Key: {ACME_KEY}\r\n");
    let ambiguous = Want::Refused(400, "ambiguous_path");
    let cases: Vec<(&str, &str, Want)> = vec![
        // Encoded slash into a protected subtree.
        ("/w/admin%2Fsecret", "", ambiguous),
        ("/w/admin%2fsecret", "", ambiguous),
        ("/w%2Fadmin/secret", "", ambiguous),
        ("/w%2fadmin%2fsecret", "", ambiguous),
        // Backslashes, raw and encoded.
        ("/w/admin%5Csecret", "", ambiguous),
        ("/w/admin%5csecret", "", ambiguous),
        ("/w\\admin\\secret", "", ambiguous),
        ("/public\\..\\admin\\secret", "", ambiguous),
        // Path parameters, as servlet containers read them.
        ("/admin;x/secret", "", ambiguous),
        ("/admin;jsessionid=1/secret", "", ambiguous),
        ("/public/..;/admin/secret", "", ambiguous),
        ("/public/%2e%2e;/admin/secret", "", ambiguous),
        ("/public/..;a=b/admin/secret", "", ambiguous),
        ("/public/..%3B/admin/secret", "", ambiguous),
        ("/public/..%3b/admin/secret", "", ambiguous),
        // Double encoding.
        ("/w/admin%252Fsecret", "", ambiguous),
        ("/public/%252e%252e/admin/secret", "", ambiguous),
        ("/public/%25%32%65%25%32%65/admin/secret", "", ambiguous),
        // Namespace boundaries, with a key for @acme.
        ("/@acme/..;/@other/x", &key, ambiguous),
        ("/@acme/%2e%2e;/@other/x", &key, ambiguous),
        ("/@acme/x/..;/..;/@other/x", &key, ambiguous),
        ("/@acme\\..\\@other/x", &key, ambiguous),
        (
            "/@acme%2F..%2F@other/x",
            &key,
            Want::Refused(400, "bad_path"),
        ),
        ("/..;/admin/secret", "", ambiguous),
        // An escaped `@` that an upstream decodes reaches a namespace route.
        ("/%40acme/x", "", ambiguous),
        ("/%40other/x", &key, ambiguous),
        // Unreserved escapes are decoded by the gateway itself: the guarded route applies.
        (
            "/w/%61dmin/secret",
            "",
            Want::Refused(401, "missing_api_key"),
        ),
        ("/%61dmin/secret", "", Want::Refused(401, "missing_api_key")),
        // Controls: every reading stays on the checked route, so they pass as sent.
        ("/w/files%2Fname", "", Want::Forwarded("/w/files%2Fname")),
        ("/public/a;b=c", "", Want::Forwarded("/public/a;b=c")),
        ("/w/x%20y", "", Want::Forwarded("/w/x%20y")),
        ("/@acme/x;y", &key, Want::Forwarded("/@acme/x;y")),
        ("/@acme/a%2Fb", &key, Want::Forwarded("/@acme/a%2Fb")),
        ("/admin/secret", &key, Want::Forwarded("/admin/secret")),
    ];
    for (target, extra, want) in cases {
        let resp = e.gw.raw(request(target, extra)).await;
        check(&format!("GET {target}"), &resp, want);
    }
}

/// Findings 4 and 13: headers the gateway owns — identity, forwarding, client address and
/// original URL — never reach an upstream from a client, whatever their case or `_`/`-`
/// spelling (CGI/WSGI read `X_Realmgate_Subject` as `HTTP_X_REALMGATE_SUBJECT`). What the
/// upstream sees of them is what the gateway set.
#[tokio::test(flavor = "multi_thread")]
async fn owned_headers_never_come_from_the_client() {
    let e = edge().await;
    let spoofed = [
        "X_Realmgate_Subject: admin",
        "x_realmgate_roles: admin",
        "X-Realmgate_Tenant: other",
        "x-realmgate-key-id: k-root",
        "X_REALMGATE_NAMESPACE: @other",
        "X_Forwarded_For: 10.9.9.9",
        "x-forwarded_proto: https",
        "X-Forwarded-Host: evil.test",
        "X-Forwarded-Port: 1",
        "Forwarded: for=10.9.9.9;proto=https",
        "X-Real-IP: 10.9.9.9",
        "X_Real_IP: 10.9.9.9",
        "True-Client-IP: 10.9.9.9",
        "X-Client-IP: 10.9.9.9",
        "X-Cluster-Client-IP: 10.9.9.9",
        "X-Original-URL: /admin/secret",
        "X_Rewrite_URL: /admin/secret",
    ];
    for (target, extra) in [
        ("/public/x", String::new()),
        ("/@acme/x", format!("X-API-Key: {ACME_KEY}\r\n")),
    ] {
        let mut head = extra.clone();
        for h in spoofed {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("X-Custom_Header: kept\r\n");
        let resp = e.gw.raw(request(target, &head)).await;
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        let echo = Echo::from_json(&resp.json());
        let leaked: Vec<&String> = echo
            .headers
            .keys()
            .filter(|n| {
                let n = n.replace('_', "-");
                n.starts_with("x-realmgate-")
                    || n.starts_with("x-forwarded-")
                    || [
                        "forwarded",
                        "x-real-ip",
                        "true-client-ip",
                        "x-client-ip",
                        "x-cluster-client-ip",
                        "x-original-url",
                        "x-rewrite-url",
                    ]
                    .contains(&n.as_str())
            })
            .filter(|n| {
                !matches!(
                    n.as_str(),
                    "x-forwarded-for"
                        | "x-forwarded-proto"
                        | "x-forwarded-host"
                        | "x-realmgate-tenant"
                        | "x-realmgate-key-id"
                        | "x-realmgate-namespace"
                )
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{target}: client headers reached the upstream: {leaked:?}"
        );
        // The ones the gateway sets are its own, single-valued.
        assert_eq!(echo.headers["x-forwarded-for"], ["127.0.0.1"], "{target}");
        assert_eq!(echo.headers["x-forwarded-proto"], ["http"], "{target}");
        assert_eq!(echo.headers["x-forwarded-host"], ["acme.test"], "{target}");
        assert_eq!(echo.headers["x-realmgate-tenant"], ["acme"], "{target}");
        assert!(
            !echo.headers.contains_key("x-realmgate-subject"),
            "{target}"
        );
        assert_eq!(echo.headers["x-custom_header"], ["kept"], "{target}");
    }
    // On a namespace route the namespace is the route's, not the client's.
    let resp =
        e.gw.raw(request(
            "/@acme/x",
            &format!("X-API-Key: {ACME_KEY}\r\nX_Realmgate_Namespace: @other\r\n"),
        ))
        .await;
    let echo = Echo::from_json(&resp.json());
    assert_eq!(echo.headers["x-realmgate-namespace"], ["@acme"]);
}

/// Finding 14: a request whose body length is stated more than once, or in a form other
/// than one decimal number, or beside `Transfer-Encoding`, is refused — never forwarded for
/// an upstream to read the body's end elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused() {
    let e = edge().await;
    let before = e._up.hits();
    let heads = [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 5 \r\nContent-length: 5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ];
    for head in heads {
        let raw = format!(
            "POST /public/x HTTP/1.1\r\nHost: acme.test\r\n{head}Connection: close\r\n\r\nhello"
        );
        let resp = e.gw.raw(raw).await;
        assert_eq!(
            resp.status,
            400,
            "{head:?}: {} {}",
            resp.status,
            resp.text()
        );
    }
    assert_eq!(
        e._up.hits(),
        before,
        "a request with ambiguous framing reached the upstream"
    );
    // One plain length is forwarded.
    let raw = "POST /public/x HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(e.gw.raw(raw).await.status, 200);
}

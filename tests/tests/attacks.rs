//! Attacks on the edge, as tables of requests and expected outcomes, through the real gateway
//! over raw sockets. Each class is tried with several variants: a fix must close the class
//! (how paths are read, which headers are ours, what is read before auth), not one request.

use realmgate_e2e::{Echo, Gateway, GatewayOpts, RawResponse, Table, Upstream};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A gateway with short client timeouts and small connection limits, routing acme.test.
async fn strict_edge(client_yaml: &str) -> Edge {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: format!("  client:\n{client_yaml}"),
        ..GatewayOpts::default()
    })
    .await;
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app")])
        .build();
    gw.push_ok(&table).await;
    Edge { gw, _up: up }
}

/// Does the gateway close `s` within `within` (EOF or reset; any response before is read)?
async fn closes(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Finding 6: a client that sends nothing, half a request line, a head one line at a time,
/// or half a body, or that keeps a connection idle, is cut off by the head, body and idle
/// timeouts — not after minutes.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_are_cut_off() {
    let e = strict_edge(
        "    header_read_timeout_ms: 1000\n    keepalive_idle_timeout_ms: 1000\n    body_read_timeout_ms: 1000\n",
    )
    .await;
    let addr = e.gw.listen_addr();
    let limit = Duration::from_secs(6);
    // Nothing at all, and a half-sent request line.
    for prefix in [
        &b""[..],
        b"GET / HT",
        b"GET / HTTP/1.1\r\nHost: acme.test\r\n",
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(prefix).await.expect("write");
        assert!(
            closes(&mut s, limit).await,
            "{:?} left open",
            String::from_utf8_lossy(prefix)
        );
    }
    // A head dribbled one line every 300 ms never completes in time: cut off mid-head.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n")
        .await
        .expect("write");
    let mut cut = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(format!("X-Drip-{i}: x\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut || closes(&mut s, limit).await,
        "a dribbled head kept the connection for 12 s"
    );
    // Half a body, then silence.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    assert!(
        closes(&mut s, limit).await,
        "a stalled body kept the connection"
    );
    // Idle after a complete request on a keep-alive connection.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closes(&mut s, limit).await,
        "an idle keep-alive connection stayed open"
    );
    // A well-behaved client is unaffected.
    e.gw.echo("acme.test", "/").await;
}

/// Finding 6: one client cannot hold more than its share of connections, and at the global
/// limit the newest idle connection makes room for a new client instead of everyone being
/// locked out.
#[tokio::test(flavor = "multi_thread")]
async fn connection_limits_per_client_and_shedding() {
    let e = strict_edge(
        "    header_read_timeout_ms: 60000\n    keepalive_idle_timeout_ms: 60000\n    max_connections_per_client: 4\n    max_connections: 100\n",
    )
    .await;
    let addr = e.gw.listen_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
        // Accepted connections are admitted on their own tasks: let each take its place.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The fifth from the same address is closed at once; the four held stay usable.
    let mut fifth = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closes(&mut fifth, Duration::from_secs(5)).await,
        "fifth connection accepted"
    );
    let s = &mut held[3];
    s.write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    held.clear();
    // Room again once they close.
    realmgate_e2e::eventually(
        Duration::from_secs(10),
        "a new connection is served",
        || async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(&request("/", "")).await.ok()?;
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.ok()?;
            buf[..n].starts_with(b"HTTP/1.1 200").then_some(())
        },
    )
    .await;

    let e = strict_edge(
        "    header_read_timeout_ms: 60000\n    keepalive_idle_timeout_ms: 60000\n    max_connections_per_client: 100\n    max_connections: 6\n",
    )
    .await;
    let addr = e.gw.listen_addr();
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Full of idle connections: a new client is still served, and the newest idle one goes.
    let r = e.gw.raw(request("/", "")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let newest = idle.last_mut().expect("six");
    assert!(
        closes(newest, Duration::from_secs(5)).await,
        "the newest idle connection was kept"
    );
    let oldest = &mut idle[0];
    oldest
        .write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n")
        .await
        .expect("write");
    let n = oldest.read(&mut buf).await.expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "oldest idle connection was shed"
    );
}

/// Finding 9: a realm whose JWKS endpoint accepts and never answers. Every first request
/// waits at most the realm timeout from its own start (not behind each other's fetches), and
/// the realm is asked once for all of them, not once per waiter.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_realm_is_asked_once_and_waited_for_boundedly() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hang_addr = hang.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: "  auth:\n    realm_timeout_ms: 1200\n    jwks_refetch_interval_ms: 60000\n"
            .into(),
        ..GatewayOpts::default()
    })
    .await;
    let issuer = "http://id.test/realms/hang";
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test"],
            "realm": {"issuer": issuer, "jwks_uri": format!("http://{hang_addr}/certs"), "audiences": ["api"]},
            "routes": [{"prefix": "/", "upstream": "app", "auth": "jwt"}]}))
        .build();
    gw.push_ok(&table).await;
    let key = realmgate_e2e::TestKey::rs256("k1");
    let token = key.sign(&realmgate_e2e::tokens::access_claims(issuer, "u1", "api"));
    let gw = Arc::new(gw);
    let mut waiters = Vec::new();
    for _ in 0..6 {
        let (gw, token) = (Arc::clone(&gw), token.clone());
        waiters.push(tokio::spawn(async move {
            let start = std::time::Instant::now();
            let r = gw
                .raw(request("/x", &format!("Authorization: Bearer {token}\r\n")))
                .await;
            (r.status, start.elapsed())
        }));
    }
    for w in waiters {
        let (status, took) = w.await.expect("waiter");
        assert_eq!(status, 503, "a realm that does not answer is 503");
        // Bounded by the realm timeout (1.2 s) plus slack, never by the queue in front
        // (six fetches in a row would take 7.2 s).
        assert!(took < Duration::from_millis(3000), "a waiter took {took:?}");
    }
    let asked = accepted.load(Ordering::SeqCst);
    assert!(
        asked <= 2,
        "the hanging realm was asked {asked} times for one burst"
    );
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

/// Reads a whole response from a fresh connection until the gateway closes it: the status
/// and whether the body ended properly (the chunked terminator, or the announced length).
async fn fetch_to_close(addr: std::net::SocketAddr, req: &[u8]) -> (u16, bool, usize) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req).await.expect("write");
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the gateway neither finished nor cut the response"),
        }
    }
    let text = String::from_utf8_lossy(&all);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let head_end = text.find("\r\n\r\n").map_or(all.len(), |i| i + 4);
    let head = text[..head_end].to_ascii_lowercase();
    let body = &all[head_end..];
    let complete = if head.contains("transfer-encoding: chunked") {
        body.ends_with(b"0\r\n\r\n")
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.len() == len
    } else {
        true
    };
    (status, complete, body.len())
}

/// Finding 5: a tenant's shell upstream shares the gateway's memory. A gzip bomb (a few KiB
/// that inflate to 32 MiB, four times the document budget) and markup that never ends (an attribute left open in a
/// tag the rewriter matches) fail that one response — a 502, or a response cut short, never
/// a complete page — while other tenants keep being served, and readers in parallel do not
/// add up to the bomb's size.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_shell_upstream_costs_one_response() {
    use flate2::write::GzEncoder;
    use realmgate_e2e::{Canned, Scripted};
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"<!doctype html><html><head><title>b</title></head><body>")
        .expect("gzip");
    let block = vec![b'a'; 1 << 20];
    for _ in 0..32 {
        gz.write_all(&block).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    let mut open_attr = b"<!doctype html><html><head data-x=\"".to_vec();
    open_attr.extend(std::iter::repeat_n(b'a', 4 << 20));
    let shell = Scripted::start().await;
    shell.route(
        "/",
        Canned::new("text/html", bomb.clone()).header("content-encoding", "gzip"),
    );
    let chunks: Vec<Vec<u8>> = open_attr.chunks(256 << 10).map(<[u8]>::to_vec).collect();
    shell.route(
        "/open/",
        Canned::new("text/html", Vec::new()).in_chunks(chunks, Duration::ZERO),
    );
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        .upstream("shell", [shell.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app")])
        .with("shell", json!({"enabled": true, "upstream": "shell"}))
        .with("catalog", json!([{"title": "Open", "path": "/open/"}]))
        .tenant("beta", &["beta.test"], &[("/", "app")])
        .build();
    gw.push_ok(&table).await;
    let nav = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: acme.test\r\nSec-Fetch-Dest: document\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
            .into_bytes()
    };
    let addr = gw.listen_addr();
    let mut readers = Vec::new();
    for path in ["/", "/", "/", "/open/", "/open/", "/"] {
        let req = nav(path);
        readers.push(tokio::spawn(async move {
            (path, fetch_to_close(addr, &req).await)
        }));
    }
    for r in readers {
        let (path, (status, complete, len)) = r.await.expect("reader");
        assert!(
            status == 502 || (status == 200 && !complete),
            "{path}: a hostile shell page was served whole ({status}, {len} bytes)"
        );
        assert!(
            len <= 9 << 20,
            "{path}: {len} bytes came out of the injector"
        );
    }
    // Everyone else is unaffected.
    let e = gw.echo("beta.test", "/").await;
    assert_eq!(e.upstream, "app");
}

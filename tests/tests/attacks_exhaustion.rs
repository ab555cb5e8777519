//! Attacks that try to exhaust the shared gateway, through the real binary over raw sockets:
//! slow, idle and hoarding clients (finding 6), a realm that never answers (9), a tenant's
//! shell upstream sending a gzip bomb or markup that never ends (5). The request tables of the
//! other classes are in `attacks.rs`.

use realmgate_e2e::{get_request, Gateway, GatewayOpts, Table, Upstream};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Edge {
    gw: Gateway,
    _up: Upstream,
}

/// `GET target` on acme.test with `Connection: close`.
fn request(target: &str) -> Vec<u8> {
    get_request(Some(b"acme.test"), target, &[])
}

/// Does a keep-alive connection still serve: a GET on it answered 200?
async fn serves_get(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 1024];
    matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
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
    assert!(
        serves_get(&mut s).await,
        "a complete request was not served"
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
    assert!(
        serves_get(&mut held[3]).await,
        "a held connection stopped serving"
    );
    held.clear();
    // Room again once they close.
    realmgate_e2e::eventually(
        Duration::from_secs(10),
        "a new connection is served",
        || async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            serves_get(&mut s).await.then_some(())
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
    let r = e.gw.raw(request("/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let newest = idle.last_mut().expect("six");
    assert!(
        closes(newest, Duration::from_secs(5)).await,
        "the newest idle connection was kept"
    );
    assert!(
        serves_get(&mut idle[0]).await,
        "the oldest idle connection was shed"
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
                .raw(get_request(
                    Some(b"acme.test"),
                    "/x",
                    &[("Authorization", &format!("Bearer {token}"))],
                ))
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

//! Self-tests of the harness (no gateway needed): the echo upstream, the raw client, reqwest's Host.

use std::time::{Duration, Instant};

use realmgate_e2e::gateway::http_client;
use realmgate_e2e::{
    get_request, json_contains, raw_request, Echo, Metrics, RawConn, Table, Upstream,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn upstream_echoes_target_and_headers_verbatim() {
    let up = Upstream::start("u1").await;
    let r = raw_request(
        up.addr(),
        b"GET /a/../%61//x?q=1 HTTP/1.1\r\nHost: Example.TEST:81\r\nX-Dup: 1\r\nx-dup: 2\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let e = Echo::from_json(&r.json());
    assert_eq!(e.upstream, "u1");
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/a/../%61//x?q=1");
    assert_eq!(e.header("host"), Some("Example.TEST:81"));
    assert_eq!(e.header_all("x-dup"), ["1", "2"]);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_keeps_alive_and_reads_bodies() {
    let up = Upstream::start("u1").await;
    let mut conn = RawConn::connect(up.addr()).await;
    let r1 = conn
        .send(b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let r2 = conn
        .send(b"POST /two HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    assert_eq!(r1.json()["body"], "hello");
    assert_eq!(r2.json()["path"], "/two");
    assert_eq!(r2.json()["body"], "abc");
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_health_delay_stop_and_resume() {
    let up = Upstream::start("u1").await;
    let health = |up: &Upstream| {
        let addr = up.addr();
        async move { raw_request(addr, get_request(Some(b"h"), "/healthz", &[])).await }
    };
    assert_eq!(health(&up).await.status, 200);
    up.set_health(503);
    assert_eq!(health(&up).await.status, 503);
    assert_eq!(up.health_hits(), 2);
    assert_eq!(up.hits(), 0);

    up.set_delay(Duration::from_millis(300));
    let t = Instant::now();
    raw_request(up.addr(), get_request(Some(b"h"), "/", &[])).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    up.set_delay(Duration::ZERO);

    // An open keep-alive connection is closed by stop, and new ones are refused.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(up.addr())
        .await
        .expect("connect");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    assert!(conn.read(&mut buf).await.expect("read response") > 0);
    up.stop().await;
    assert!(tokio::net::TcpStream::connect(up.addr()).await.is_err());
    assert_eq!(
        conn.read(&mut buf).await.unwrap_or(0),
        0,
        "keep-alive connection survived stop"
    );

    up.resume().await;
    assert_eq!(health(&up).await.status, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn reqwest_sends_the_host_header_we_set() {
    let up = Upstream::start("u1").await;
    let body: serde_json::Value = http_client()
        .get(format!("http://{}/x", up.addr()))
        .header("host", "acme.test")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let e = Echo::from_json(&body);
    assert_eq!(e.header_all("host"), ["acme.test"]);
}

#[test]
fn table_builder_and_helpers() {
    let t = Table::new(7)
        .upstream("app-a", ["127.0.0.1:1"])
        .tenant("acme", &["acme.test"], &[("/", "app-a")])
        .build();
    assert!(json_contains(
        &t,
        &json!({"version": 7, "upstreams": {"app-a": {"endpoints": ["127.0.0.1:1"]}},
                "tenants": [{"id": "acme", "hosts": ["acme.test"],
                             "routes": [{"prefix": "/", "upstream": "app-a", "auth": "public"}]}]})
    ));
    assert!(!json_contains(&json!({"a": [1, 2]}), &json!({"a": [1]})));
    let m = Metrics::parse(
        "# HELP x y\nreq_total{tenant=\"acme\",class=\"2xx\"} 3\nreq_total{class=\"4xx\",tenant=\"\"} 2\nv 5\n",
    );
    assert_eq!(m.sum("req_total", &[("tenant", "acme")]), Some(3.0));
    assert_eq!(m.sum("req_total", &[]), Some(5.0));
    assert_eq!(m.sum("req_total", &[("tenant", "")]), Some(2.0));
    assert_eq!(m.sum("v", &[]), Some(5.0));
    assert_eq!(m.sum("nope", &[]), None);
    assert!(realmgate_e2e::is_valid_request_id("a-B.c_d:9"));
    assert!(!realmgate_e2e::is_valid_request_id("a b"));
    assert!(!realmgate_e2e::is_valid_request_id(&"a".repeat(129)));
}

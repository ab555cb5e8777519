//! HTTP/2 on the TLS listeners against abusive clients: rapid reset (CVE-2023-44487) and
//! streams opened past the concurrency limit get the connection closed; others are served.

use std::time::Duration;

use realmgate_e2e::tls::curl;
use realmgate_e2e::tls::fixtures::{
    all_certs, certs, frame, h2_connect, table, tls_gateway, tls_h2,
};
use realmgate_e2e::Upstream;

#[tokio::test(flavor = "multi_thread")]
async fn h2_rapid_reset_gets_the_connection_closed_others_keep_being_served() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("").await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let tls = gw.tls_addr();
    let (mut send, conn) = h2_connect(tls, "acme.test", &c.ca.pem).await;
    // One ordinary request first: the connection works and the server's limit is known.
    let req = http::Request::get("https://acme.test/first")
        .body(())
        .expect("request");
    let (resp, _) = send.send_request(req, true).expect("send");
    assert_eq!(resp.await.expect("response").status(), 200);
    // Then open and cancel streams as fast as the client library lets us.
    let mut sent = 0;
    let mut cut = false;
    for _ in 0..10_000 {
        send = match send.ready().await {
            Ok(s) => s,
            Err(_) => {
                cut = true;
                break;
            }
        };
        let req = http::Request::get("https://acme.test/reset")
            .body(())
            .expect("request");
        match send.send_request(req, false) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => {
                cut = true;
                break;
            }
        }
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        cut,
        "the abusive connection stayed open through {sent} rapid resets"
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), conn).await;
    // Others are served, over h2 and h1.
    let (mut other, _conn) = h2_connect(tls, "acme.test", &c.ca.pem).await;
    let req = http::Request::get("https://acme.test/other")
        .body(())
        .expect("request");
    other = other.ready().await.expect("ready");
    let (resp, _) = other.send_request(req, true).expect("send");
    assert_eq!(resp.await.expect("response").status(), 200);
    let r = curl(tls, "www.beta.test", "/", &c.ca_file, false).await;
    assert_eq!(r.status, 200, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_client_opening_10000_streams_past_the_limit_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = certs();
    let up = Upstream::start("app").await;
    // Streams stay open while the upstream takes its time.
    up.set_delay(Duration::from_secs(3));
    let gw = tls_gateway("  h2:\n    max_concurrent_streams: 7\n").await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let tls = gw.tls_addr();
    // A client that ignores it: 10 000 GET streams (HPACK: :method GET, :scheme https,
    // :path /, :authority acme.test as a literal), written at once.
    let mut s = tls_h2(tls, "acme.test", &c.ca.pem).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    let mut block = vec![0x82, 0x87, 0x84, 0x01, 9];
    block.extend_from_slice(b"acme.test");
    for i in 0..10_000u32 {
        out.extend(frame(0x1, 0x4 | 0x1, 2 * i + 1, &block));
    }
    let _ = s.write_all(&out).await;
    let _ = s.flush().await;
    // Read what comes back until the server closes; find its GOAWAY.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let mut goaway = None;
    let mut refused = 0;
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        let typ = got[at + 3];
        let payload = &got[(at + 9).min(got.len())..(at + 9 + len).min(got.len())];
        if typ == 0x7 && payload.len() >= 8 {
            goaway = Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
        if typ == 0x3 {
            refused += 1;
        }
        at += 9 + len;
    }
    assert!(closed, "the connection was left open");
    // ENHANCE_YOUR_CALM (0xb) or PROTOCOL_ERROR (0x1): either way, cut off.
    assert!(
        matches!(goaway, Some(0xb) | Some(0x1)),
        "GOAWAY {goaway:?} after {refused} refused streams"
    );
    assert!(refused < 10_000, "every stream was answered one by one");
    // Others are served meanwhile.
    up.set_delay(Duration::ZERO);
    let r = curl(tls, "acme.test", "/", &c.ca_file, true).await;
    assert_eq!(r.status, 200, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_h2_connection_is_closed_after_the_keepalive_idle_time() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("  client:\n    keepalive_idle_timeout_ms: 500\n").await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let (mut send, conn) = h2_connect(gw.tls_addr(), "acme.test", &c.ca.pem).await;
    let req = http::Request::get("https://acme.test/once")
        .body(())
        .expect("request");
    send = send.ready().await.expect("ready");
    let (resp, _) = send.send_request(req, true).expect("send");
    assert_eq!(resp.await.expect("response").status(), 200);
    // No stream open from here on: the gateway ends the connection (the client holds it).
    let ended = tokio::time::timeout(Duration::from_secs(15), conn).await;
    assert!(ended.is_ok(), "an idle h2 connection was kept open");
    drop(send);
}

//! Upstream pools through the real gateway: round-robin, retry, health checks, 502 and 504.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use realmgate_e2e::{eventually, free_addrs, Gateway, GatewayOpts, Pool, Table, Upstream};

const HOST: &str = "acme.test";

async fn gateway_with(pool: Pool) -> Gateway {
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .pool("pool", pool)
        .tenant("acme", &[HOST], &[("/", "pool")])
        .build();
    gw.push_ok(&table).await;
    gw
}

/// Sends `n` sequential requests; the upstream name of each, or `"<status>:<error>"`.
async fn spray(gw: &Gateway, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = gw.request(HOST, &format!("/spray/{i}")).await;
        if r.status == 200 {
            out.push(r.echo().upstream);
        } else {
            let code = serde_json::from_str::<serde_json::Value>(&r.text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            out.push(format!("{}:{code}", r.status));
        }
    }
    out
}

fn counts(seen: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for s in seen {
        *m.entry(s.as_str()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_over_endpoints() {
    let b1 = Upstream::start("b1").await;
    let b2 = Upstream::start("b2").await;
    let gw = gateway_with(Pool::new([b1.addr(), b2.addr()])).await;
    let seen = spray(&gw, 20).await;
    let c = counts(&seen);
    assert_eq!(c.len(), 2, "only these answered: {seen:?}");
    assert!(
        c["b1"] >= 6 && c["b2"] >= 6,
        "not round-robin: {c:?} ({seen:?})"
    );
    assert_eq!(
        b1.hits() + b2.hits(),
        20,
        "each request reaches exactly one endpoint"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failure_is_retried_on_another_endpoint() {
    let u1 = Upstream::start("u1").await;
    let u2 = Upstream::start("u2").await;
    let gw = gateway_with(Pool::new([u1.addr(), u2.addr()])).await;
    // Warm up: both endpoints serve, and the gateway holds pooled connections to both.
    let warm = spray(&gw, 6).await;
    assert_eq!(counts(&warm).len(), 2, "warm-up: {warm:?}");

    u2.stop().await;
    // Right after the stop, before any health check can notice, nothing may fail.
    let seen = spray(&gw, 20).await;
    assert!(
        seen.iter().all(|s| s == "u1"),
        "requests failed or went to a stopped endpoint: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_takes_stopped_endpoints_out_and_back_in() {
    let u1 = Upstream::start("u1").await;
    let u2 = Upstream::start("u2").await;
    let u3 = Upstream::start("u3").await;
    let gw = gateway_with(Pool::new([u1.addr(), u2.addr(), u3.addr()])).await;
    assert_eq!(counts(&spray(&gw, 9).await).len(), 3);

    u2.stop().await;
    u3.stop().await;
    // With two of three endpoints down, one retry cannot always save a request; once the
    // TCP health check has marked both down, every request must go to u1.
    eventually(
        Duration::from_secs(5),
        "30 requests in a row all served by u1",
        || async {
            let seen = spray(&gw, 30).await;
            seen.iter().all(|s| s == "u1").then_some(())
        },
    )
    .await;

    u2.resume().await;
    eventually(
        Duration::from_secs(5),
        "u2 back in rotation after it came back",
        || async {
            let before = u2.hits();
            let seen = spray(&gw, 10).await;
            assert!(
                seen.iter().all(|s| s == "u1" || s == "u2"),
                "failures while u1 and u2 are up: {seen:?}"
            );
            (u2.hits() > before).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_endpoints_down_is_502() {
    let u1 = Upstream::start("u1").await;
    let u2 = Upstream::start("u2").await;
    let gw = gateway_with(Pool::new([u1.addr(), u2.addr()])).await;
    assert_eq!(spray(&gw, 2).await.len(), 2);
    u1.stop().await;
    u2.stop().await;

    let r = gw.request(HOST, "/").await;
    assert_eq!(r.status, 502, "{}", r.text);
    let code = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        code == "no_healthy_upstream" || code == "upstream_error",
        "error code {code:?}"
    );
    r.assert_error(502, &code);

    // Once the health check has seen both down, the answer says so.
    eventually(
        Duration::from_secs(5),
        "502 no_healthy_upstream",
        || async {
            let r = gw.request(HOST, "/").await;
            assert_eq!(r.status, 502, "{}", r.text);
            (r.json()["error"] == "no_healthy_upstream").then_some(())
        },
    )
    .await;
    gw.request(HOST, "/")
        .await
        .assert_error(502, "no_healthy_upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_that_never_listened_is_502() {
    let nobody = free_addrs(1)[0];
    let gw = gateway_with(Pool::new([nobody])).await;
    let r = gw.request(HOST, "/").await;
    assert_eq!(r.status, 502, "{}", r.text);
    let code = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        code == "no_healthy_upstream" || code == "upstream_error",
        "{code:?}"
    );
    r.assert_error(502, &code);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_health_check_takes_failing_endpoint_out_and_back_in() {
    let u1 = Upstream::start("u1").await;
    let u2 = Upstream::start("u2").await;
    let gw = gateway_with(Pool::new([u1.addr(), u2.addr()]).http_check("/healthz")).await;

    eventually(
        Duration::from_secs(5),
        "both endpoints health-checked over HTTP",
        || async { (u1.health_hits() > 0 && u2.health_hits() > 0).then_some(()) },
    )
    .await;

    u2.set_health(503);
    eventually(
        Duration::from_secs(5),
        "20 requests in a row all served by u1",
        || async {
            let seen = spray(&gw, 20).await;
            assert!(
                seen.iter().all(|s| s == "u1" || s == "u2"),
                "failures while both endpoints accept requests: {seen:?}"
            );
            seen.iter().all(|s| s == "u1").then_some(())
        },
    )
    .await;
    let before = u2.hits();
    let seen = spray(&gw, 20).await;
    assert!(seen.iter().all(|s| s == "u1"), "{seen:?}");
    assert_eq!(
        u2.hits(),
        before,
        "an endpoint failing its HTTP check got traffic"
    );

    u2.set_health(200);
    eventually(
        Duration::from_secs(5),
        "u2 back in rotation after /healthz is 200",
        || async {
            let before = u2.hits();
            spray(&gw, 10).await;
            (u2.hits() > before).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_health_check_does_not_call_http() {
    let u1 = Upstream::start("u1").await;
    let gw = gateway_with(Pool::new([u1.addr()])).await;
    gw.echo(HOST, "/").await;
    // Three health-check intervals: an HTTP check would have called /healthz by now.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        u1.health_hits(),
        0,
        "a pool without health_check must use a TCP check"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_504_after_read_timeout() {
    let slow = Upstream::start("slow").await;
    let patient = Upstream::start("patient").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .pool("slow", Pool::new([slow.addr()]).read_timeout_ms(300))
        .pool("patient", Pool::new([patient.addr()]).read_timeout_ms(3000))
        .tenant("acme", &[HOST], &[("/", "slow"), ("/patient/", "patient")])
        .build();
    gw.push_ok(&table).await;

    slow.set_delay(Duration::from_millis(2500));
    let t = Instant::now();
    let r = gw.request(HOST, "/").await;
    let took = t.elapsed();
    r.assert_error(504, "upstream_timeout");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2000),
        "504 after {took:?}; read_timeout_ms is 300"
    );

    // A delay under the pool's timeout is fine.
    patient.set_delay(Duration::from_millis(600));
    let e = gw.echo(HOST, "/patient/x").await;
    assert_eq!(e.upstream, "patient");

    slow.set_delay(Duration::ZERO);
    assert_eq!(gw.echo(HOST, "/").await.upstream, "slow");
}

/// An endpoint that accepts, reads the request and closes without answering (a crash
/// mid-request). With the health check unaware (TCP connects still succeed), a GET that met it
/// goes once more to the other endpoint; a POST is never sent twice: it gets 502.
#[tokio::test(flavor = "multi_thread")]
async fn idempotent_requests_are_replayed_once_and_posts_never() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    let dying = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dying_addr = dying.local_addr().expect("addr");
    let met = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&met);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = dying.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                // Dropped: the connection closes without a response.
            });
        }
    });
    let good = Upstream::start("good").await;
    let gw = gateway_with(Pool::new([dying_addr.to_string(), good.addr().to_string()])).await;
    for i in 0..8 {
        let r = gw.request(HOST, &format!("/get/{i}")).await;
        assert_eq!(r.status, 200, "GET {i}: {}", r.text);
        assert_eq!(r.echo().upstream, "good");
    }
    assert!(
        met.load(Ordering::SeqCst) > 0,
        "the dying endpoint was never tried"
    );
    let (before_met, before_good) = (met.load(Ordering::SeqCst), good.hits());
    let mut refused = 0;
    for i in 0..8 {
        let r = gw
            .fetch(
                gw.client()
                    .post(gw.url(&format!("/post/{i}")))
                    .header("host", HOST)
                    .body("x"),
            )
            .await;
        match r.status {
            200 => assert_eq!(r.echo().upstream, "good"),
            502 => refused += 1,
            s => panic!("POST {i}: {s} {}", r.text),
        }
    }
    let met_posts = met.load(Ordering::SeqCst) - before_met;
    assert_eq!(
        refused, met_posts,
        "every POST the dying endpoint read failed, none was replayed"
    );
    assert_eq!(
        good.hits() - before_good,
        8 - met_posts,
        "no POST reached two endpoints"
    );
}

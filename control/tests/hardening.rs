//! Issue 13 against the real binaries: bodies are never read before authentication, a
//! restored realmctl moves past the versions its gateways serve (so a revocation reaches
//! them), and key minting is rate limited per caller and batched into few table versions.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WITHIN: Duration = Duration::from_secs(10);

/// Send only a request head announcing a 200 MiB body (and its first byte), and return the
/// status line's code and how long the answer took; `None` if none came within 5 s.
async fn head_only(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let auth = auth.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: realmctl\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        200u64 << 20
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    let read = async {
        while !buf.contains(&b'\n') {
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()??;
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_are_refused_from_the_head_alone_on_every_endpoint() {
    let dir = TempDir::new("auth-first");
    let ctl = Realmctl::start(&dir, &[]).await;
    // Every route, with the methods that take a body and those that do not: none reads it.
    let endpoints = [
        ("POST", "/v1/tenants"),
        ("PATCH", "/v1/tenants/acme"),
        ("DELETE", "/v1/tenants/acme"),
        ("POST", "/v1/tenants/acme/retry"),
        ("POST", "/v1/tenants/acme/credentials"),
        ("GET", "/v1/tenants/acme/events"),
        ("PUT", "/v1/upstreams/app"),
        ("DELETE", "/v1/upstreams/app"),
        ("GET", "/v1/upstreams"),
        ("POST", "/v1/keys"),
        ("DELETE", "/v1/keys/k0"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/gateways"),
        ("GET", "/v1/table"),
    ];
    // Credentials that are not accepted, each a variant the auth layer must refuse.
    let refused = [
        None,
        Some("Bearer wrong-token-0123456789".to_owned()),
        Some("Bearer rgk_not-a-live-key".to_owned()),
        Some(format!("Basic {OPERATOR_TOKEN}")),
        Some(format!("Bearer {OPERATOR_TOKEN}x")),
    ];
    for (method, path) in endpoints {
        for auth in &refused {
            let started = Instant::now();
            let status = head_only(ctl.addr, method, path, auth.as_deref()).await;
            let took = started.elapsed();
            assert_eq!(status, Some(401), "{method} {path} with {auth:?}");
            assert!(took < Duration::from_secs(2), "{method} {path}: {took:?}");
        }
    }
    // The UI and the open endpoints take no body: answered from the head too.
    for (method, path) in [
        ("POST", "/"),
        ("PUT", "/ui/ui.js"),
        ("POST", "/healthz"),
        ("POST", "/metrics"),
        ("POST", "/v1/openapi.json"),
        ("POST", "/v1/nothing-here"),
        ("PUT", "/v1/tenants/acme"),
        ("PUT", "/v1/table"),
    ] {
        let status = head_only(ctl.addr, method, path, None).await;
        assert!(
            matches!(status, Some(404 | 405)),
            "{method} {path}: {status:?}"
        );
    }
    // And realmctl still serves.
    let (s, _) = ctl.api().call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(s, StatusCode::OK);
}

/// `GET /` at a gateway with `Host: acme.test` and `X-API-Key: key`: the status.
async fn with_key(gw: &Gateway, key: &str) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let r = http
        .get(format!("http://{}/", gw.listen))
        .header(reqwest::header::HOST, "acme.test")
        .header("x-api-key", key)
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

async fn table_version(api: &Api) -> u64 {
    let (_, summary) = api.call(Method::GET, "/v1/table?summary=1", None).await;
    summary["version"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_realmctl_moves_past_its_gateways_version_and_a_revocation_reaches_them() {
    let dir = TempDir::new("restore");
    let data = dir.path().join("realmctl-data");
    let backup = dir.path().join("backup");
    let up = Upstream::start("a").await;
    let g = Gateway::start(&dir, "g1", None).await;
    let mut ctl = Realmctl::start(&dir, &[&g]).await;
    let api = ctl.api();
    api.put_pool("app", up.addr).await;
    let (s, t) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "hosts": ["acme.test"],
                "routes": [{"prefix": "/", "upstream": "app", "auth": "api_key"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let (s, k) = api
        .call(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant": "acme", "namespaces": ["*"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let secret = k["key"].as_str().expect("secret").to_owned();
    let id = k["id"].as_str().expect("id").to_owned();
    ctl.wait_in_sync(k["table_version"].as_u64().expect("v"), WITHIN)
        .await;
    eventually(WITHIN, "the key admitted", || async {
        (with_key(&g, &secret).await == Some(200)).then_some(())
    })
    .await;

    // The backup, then changes it does not have.
    ctl.proc.kill();
    copy_dir(&data, &backup);
    ctl.restart().await;
    let api = ctl.api();
    let mut high = 0;
    for (id, host) in [("beta", "beta.test"), ("gamma", "gamma.test")] {
        let (s, t) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(tenant_body(id, &[host], "app")),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        high = t["table_version"].as_u64().expect("v");
    }
    ctl.wait_in_sync(high, WITHIN).await;
    until_answers(&g, "beta.test", 200, Some("upstream a"), WITHIN).await;

    // Restore the backup: realmctl is now behind the gateway.
    ctl.proc.kill();
    std::fs::remove_dir_all(&data).expect("remove data");
    copy_dir(&backup, &data);
    ctl.restart().await;
    let api = ctl.api();
    eventually(WITHIN, "realmctl past the gateway's version", || async {
        (table_version(&api).await > high).then_some(())
    })
    .await;

    let (s, r) = api
        .call(Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let revoked_in = r["table_version"].as_u64().expect("v");
    assert!(revoked_in > high, "{revoked_in} > {high}");
    eventually(WITHIN, "the revoked key refused", || async {
        (with_key(&g, &secret).await == Some(401)).then_some(())
    })
    .await;
    // The tenants the restored registry does not know are gone from the gateway too.
    until_answers(&g, "beta.test", 404, None, WITHIN).await;
    eventually(
        WITHIN,
        "the gateway in sync at realmctl's version",
        || async {
            let (_, v) = api.call(Method::GET, "/v1/gateways", None).await;
            let gw = v["gateways"].as_array()?.first()?.clone();
            (gw["in_sync"] == true
                && gw["last_result"] == "applied"
                && gw["applied_version"].as_u64()? >= revoked_in)
                .then_some(())
        },
    )
    .await;
    assert!(g.version().await.is_some_and(|v| v >= revoked_in));

    // The jump was persisted: a restart does not go back.
    let now = table_version(&api).await;
    ctl.restart().await;
    assert!(table_version(&ctl.api()).await >= now);
}

/// `realmctl_pushes_total` for `result`, all gateways together.
async fn pushes(ctl: &Realmctl, result: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", ctl.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| {
            l.starts_with("realmctl_pushes_total{") && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_mints_is_batched_into_few_pushes_and_limited_per_caller() {
    const BURST: usize = 30;
    let dir = TempDir::new("mint-burst");
    let up = Upstream::start("a").await;
    let g = Gateway::start(&dir, "g1", None).await;
    let ctl = Realmctl::start_with(
        &dir,
        &[&g],
        &format!("key_minting: {{per_minute: 6, burst: {BURST}}}\n"),
        &[],
    )
    .await;
    let api = ctl.api();
    api.put_pool("app", up.addr).await;
    let (s, t) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "hosts": ["acme.test"],
                "routes": [{"prefix": "/", "upstream": "app", "auth": "api_key"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    ctl.wait_in_sync(t["table_version"].as_u64().expect("v"), WITHIN)
        .await;
    let before = pushes(&ctl, "applied").await;

    // The operator's burst, sent at once (a script's parallel mints): every key its own
    // table version, few tables pushed. Sent together, the burst's batching does not depend
    // on how fast this machine answers one mint after another.
    let minted = futures_util::future::join_all((0..BURST).map(|_| {
        api.call(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant": "acme", "namespaces": ["*"]})),
        )
    }))
    .await;
    let mut last = 0;
    let mut parent: Option<Value> = None;
    for (s, k) in minted {
        assert_eq!(s, StatusCode::CREATED, "{k}");
        last = last.max(k["table_version"].as_u64().expect("v"));
        parent.get_or_insert(k);
    }
    ctl.wait_in_sync(last, WITHIN).await;
    let pushed = pushes(&ctl, "applied").await - before;
    assert!(
        pushed <= (BURST / 5) as u64,
        "{BURST} mints took {pushed} pushes"
    );

    // Over the burst: 429 with Retry-After, and nothing minted.
    let r = api
        .http
        .post(format!("{}/v1/keys", ctl.url()))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"tenant": "acme", "namespaces": ["*"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    let (_, list) = api.call(Method::GET, "/v1/keys", None).await;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(BURST));

    // Each calling key has a bucket of its own, and mints within its own limit only.
    let key = parent.expect("a key")["key"]
        .as_str()
        .expect("secret")
        .to_owned();
    let as_key = Api {
        token: key,
        ..api.clone()
    };
    let (s, k) = as_key
        .call(
            Method::POST,
            "/v1/keys",
            Some(json!({"namespaces": ["*"], "rate_limit": {"requests": 2, "window_s": 60}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let child = Api {
        token: k["key"].as_str().expect("secret").to_owned(),
        ..api.clone()
    };
    for (limit, status) in [
        (
            json!({"requests": 1000000000, "window_s": 1}),
            StatusCode::FORBIDDEN,
        ),
        (json!({"requests": 2, "window_s": 1}), StatusCode::FORBIDDEN),
        (json!({"requests": 1, "window_s": 60}), StatusCode::CREATED),
    ] {
        let (s, v) = child
            .call(
                Method::POST,
                "/v1/keys",
                Some(json!({"namespaces": ["*"], "rate_limit": limit})),
            )
            .await;
        assert_eq!(s, status, "{limit}: {v}");
    }
    let (s, v) = child
        .call(Method::POST, "/v1/keys", Some(json!({"namespaces": ["*"]})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["rate_limit"],
        json!({"requests": 2, "window_s": 60}),
        "inherited"
    );
}

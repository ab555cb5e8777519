//! The command line and config file: `realmgate check`, flags-only start, flags over the file.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use realmgate_e2e::{
    free_addrs, realmgate_bin, run_to_completion, Finished, Gateway, Launch, Table, TempDir,
    Upstream,
};
use serde_json::json;

fn realmgate(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Finished {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    run_to_completion(&realmgate_bin(), &args, Duration::from_secs(20))
}

fn good_config(dir: &TempDir) -> std::path::PathBuf {
    let token = dir.write("token", "check-token-0123456789\n");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir state");
    dir.write(
        "good.yaml",
        format!(
            "pingora:\n  threads: 2\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n\
             gateway:\n  listen: \"127.0.0.1:18080\"\n  admin_listen: \"127.0.0.1:19080\"\n  \
             admin_token_file: \"{}\"\n  state_dir: \"{}\"\n  health_check_interval_ms: 200\n",
            token.display(),
            state.display()
        ),
    )
}

fn assert_lists(out: &Finished, needles: &[&str]) {
    let text = out.output();
    let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "problems {missing:?} not reported; output:\n{text}"
    );
}

fn assert_failed(out: &Finished) {
    assert!(!out.timed_out, "did not exit on its own: {out:?}");
    assert!(
        out.code.is_some_and(|c| c != 0),
        "expected a non-zero exit, got {:?}; output:\n{}",
        out.code,
        out.output()
    );
}

fn assert_succeeded(out: &Finished) {
    assert!(!out.timed_out, "did not exit on its own: {out:?}");
    assert_eq!(out.code, Some(0), "output:\n{}", out.output());
}

#[test]
fn check_accepts_a_good_config() {
    let dir = TempDir::new("conf");
    let conf = good_config(&dir);
    assert_succeeded(&realmgate(&[&"check", &"--conf", &conf]));
    assert_succeeded(&realmgate(&[&"--check", &"--conf", &conf]));
}

fn bad_config(dir: &TempDir) -> std::path::PathBuf {
    dir.write(
        "bad.yaml",
        format!(
            "pingora:\n  threads: 2\n\
             gateway:\n  listen: \"not-an-address\"\n  admin_listen: \"127.0.0.1:99999\"\n  \
             admin_token_file: \"/nonexistent/realmgate-e2e/token\"\n  state_dir: \"{}\"\n  \
             listn: \"0.0.0.0:1\"\n\
             bogus_section:\n  x: 1\n",
            dir.join("state").display()
        ),
    )
}

const BAD_CONFIG_NEEDLES: &[&str] = &[
    "not-an-address",
    "99999",
    "/nonexistent/realmgate-e2e/token",
    "listn",
    "bogus_section",
];

#[test]
fn check_lists_every_problem_of_a_bad_config() {
    let dir = TempDir::new("conf");
    let conf = bad_config(&dir);
    for out in [
        realmgate(&[&"check", &"--conf", &conf]),
        realmgate(&[&"--check", &"--conf", &conf]),
    ] {
        assert_failed(&out);
        assert_lists(&out, BAD_CONFIG_NEEDLES);
    }
    // A config that is not YAML at all, and a missing file.
    let garbage = dir.write("garbage.yaml", "gateway: [unclosed\n");
    assert_failed(&realmgate(&[&"check", &"--conf", &garbage]));
    let missing = dir.join("missing.yaml");
    let out = realmgate(&[&"check", &"--conf", &missing]);
    assert_failed(&out);
    assert_lists(&out, &["missing.yaml"]);
}

#[test]
fn gateway_refuses_to_start_on_a_bad_config() {
    let dir = TempDir::new("conf");
    let conf = bad_config(&dir);
    let out = realmgate(&[&"--conf", &conf]);
    assert_failed(&out);
    assert_lists(&out, &["not-an-address"]);
}

/// The issue's minimal table, verbatim.
const ISSUE_TABLE: &str = r#"{"version": 1,
 "upstreams": {"app-a": {"endpoints": ["127.0.0.1:9001"]},
               "app-b": {"endpoints": ["127.0.0.1:9002", "127.0.0.1:9003"]}},
 "tenants": [
   {"id": "acme", "hosts": ["acme.test"],
    "routes": [{"prefix": "/", "upstream": "app-a", "auth": "public"}]},
   {"id": "beta", "hosts": ["beta.test", "*.beta.test"],
    "routes": [{"prefix": "/", "upstream": "app-b", "auth": "public"},
               {"prefix": "/a/", "upstream": "app-a", "auth": "public"}]}]}"#;

#[test]
fn check_table_accepts_the_minimal_table_and_lists_every_problem_of_a_bad_one() {
    let dir = TempDir::new("table");
    let good = dir.write("good.json", ISSUE_TABLE);
    assert_succeeded(&realmgate(&[&"check", &"--table", &good]));
    let built = dir.write(
        "built.json",
        Table::new(3)
            .upstream("app-a", ["127.0.0.1:9001"])
            .tenant(
                "acme",
                &["acme.test", "*.acme.test"],
                &[("/", "app-a"), ("/api", "app-a")],
            )
            .build()
            .to_string(),
    );
    assert_succeeded(&realmgate(&[&"check", &"--table", &built]));

    let mut bad = Table::new(2)
        .upstream("app-a", ["127.0.0.1:9001"])
        .tenant(
            "t1",
            &["shared.test", "*.", "a..b"],
            &[("/", "app-a"), ("xyz", "app-a")],
        )
        .tenant(
            "t2",
            &["shared.test", "*foo.test"],
            &[("/", "nope-upstream"), ("/a/../b", "app-a")],
        )
        .tenant("Acme!", &["bang.test"], &[("/", "app-a")])
        .build();
    bad["tenants"][0]["colour"] = json!("red");
    let bad = dir.write("bad.json", bad.to_string());
    let out = realmgate(&[&"check", &"--table", &bad]);
    assert_failed(&out);
    assert_lists(
        &out,
        &[
            "shared.test",
            "*.",
            "a..b",
            "*foo.test",
            "xyz",
            "/a/../b",
            "nope-upstream",
            "Acme!",
            "colour",
        ],
    );

    let garbage = dir.write("garbage.json", "{\"version\": 1,");
    assert_failed(&realmgate(&[&"check", &"--table", &garbage]));
}

fn refused(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

fn arg(p: &Path) -> OsString {
    p.as_os_str().to_os_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_with_flags_only() {
    let dir = TempDir::new("flags");
    let addrs = free_addrs(2);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir state");
    let gw = Gateway::launch(Launch {
        args: vec![
            "--listen".into(),
            addrs[0].to_string().into(),
            "--admin-listen".into(),
            addrs[1].to_string().into(),
            "--state-dir".into(),
            arg(&state),
        ],
        dir,
        listen: addrs[0],
        admin: addrs[1],
        token: None,
        state_dir: state,
    })
    .await;
    assert_eq!(gw.admin_get_anon("/readyz").await.status, 503);
    // Without a token file nobody may push a table.
    let body = Table::new(1).build().to_string();
    assert_eq!(gw.push_with(body.clone(), None).await.0, 401);
    assert_eq!(gw.push_with(body, Some("Bearer anything")).await.0, 401);
    // The data listener is up and answers with a request id.
    let r = gw.request("acme.test", "/").await;
    assert!(r.status >= 400, "{} {}", r.status, r.text);
    assert!(
        r.header("x-request-id").is_some(),
        "no x-request-id: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_with_flags_only_and_a_token_file() {
    let up = Upstream::start("app-a").await;
    let dir = TempDir::new("flags");
    let addrs = free_addrs(2);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir state");
    let token = dir.write("token", "flag-token-0123456789\n");
    let gw = Gateway::launch(Launch {
        args: vec![
            "--listen".into(),
            addrs[0].to_string().into(),
            "--admin-listen".into(),
            addrs[1].to_string().into(),
            "--admin-token-file".into(),
            arg(&token),
            "--state-dir".into(),
            arg(&state),
        ],
        dir,
        listen: addrs[0],
        admin: addrs[1],
        token: Some("flag-token-0123456789".into()),
        state_dir: state.clone(),
    })
    .await;
    gw.push_ok(
        &Table::new(1)
            .upstream("app-a", [up.addr()])
            .tenant("acme", &["acme.test"], &[("/", "app-a")])
            .build(),
    )
    .await;
    assert_eq!(gw.echo("acme.test", "/").await.upstream, "app-a");
    assert!(state.join("table.json").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_override_the_file() {
    let up = Upstream::start("app-a").await;
    let dir = TempDir::new("override");
    let a = free_addrs(4);
    let (file_listen, file_admin, flag_listen, flag_admin) = (a[0], a[1], a[2], a[3]);
    let file_state = dir.join("file-state");
    let flag_state = dir.join("flag-state");
    std::fs::create_dir_all(&file_state).expect("mkdir");
    std::fs::create_dir_all(&flag_state).expect("mkdir");
    let file_token = dir.write("file-token", "file-token-0123456789\n");
    let flag_token = dir.write("flag-token", "flag-token-0123456789\n");
    let conf = dir.write(
        "realmgate.yaml",
        format!(
            "pingora:\n  threads: 2\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n\
             gateway:\n  listen: \"{file_listen}\"\n  admin_listen: \"{file_admin}\"\n  \
             admin_token_file: \"{}\"\n  state_dir: \"{}\"\n  health_check_interval_ms: 200\n",
            file_token.display(),
            file_state.display()
        ),
    );
    let gw = Gateway::launch(Launch {
        args: vec![
            "--conf".into(),
            arg(&conf),
            "--listen".into(),
            flag_listen.to_string().into(),
            "--admin-listen".into(),
            flag_admin.to_string().into(),
            "--admin-token-file".into(),
            arg(&flag_token),
            "--state-dir".into(),
            arg(&flag_state),
        ],
        dir,
        listen: flag_listen,
        admin: flag_admin,
        token: Some("flag-token-0123456789".into()),
        state_dir: flag_state.clone(),
    })
    .await;
    assert!(refused(file_listen), "the file's listen address is in use");
    assert!(refused(file_admin), "the file's admin address is in use");

    let table = Table::new(1)
        .upstream("app-a", [up.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app-a")])
        .build();
    let (status, _) = gw
        .push_with(table.to_string(), Some("Bearer file-token-0123456789"))
        .await;
    assert_eq!(status, 401, "the file's token still works");
    gw.push_ok(&table).await;
    assert_eq!(gw.echo("acme.test", "/").await.upstream, "app-a");
    assert!(
        flag_state.join("table.json").is_file(),
        "not persisted to --state-dir"
    );
    assert!(
        !file_state.join("table.json").exists(),
        "persisted to the file's state_dir"
    );
}

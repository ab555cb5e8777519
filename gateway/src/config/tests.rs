//! Configuration loading: defaults, overrides, every problem listed.

use super::*;
use std::io::Write;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("realmgate-conf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
    path
}

#[test]
fn defaults_without_a_file() {
    let dir = temp_dir("defaults");
    let o = Overrides {
        state_dir: Some(dir.join("state")),
        ..Overrides::default()
    };
    let c = Config::load(None, &o).expect("valid");
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert!(c.admin_token.is_none());
    assert_eq!(c.server.grace_period_seconds, Some(5));
    assert!(c.delta_idle.is_zero(), "idle priority is opt-in");
    assert_eq!(c.delta_yield, std::time::Duration::from_secs(1));
    assert!(
        !c.table_cpus.is_set(),
        "table work runs where the process does"
    );
    assert!(
        !c.worker_cpus.is_set(),
        "the process stays where it started"
    );
}

#[test]
fn worker_cpus_are_read_and_may_not_share_one_with_table_cpus() {
    use crate::snapshot::cpus::{this_thread_list, Cpus};
    let dir = temp_dir("cpus");
    let mine = this_thread_list();
    let (first, last) = (mine[0], mine[mine.len() - 1]);
    let load = |name: &str, workers: usize, table: usize| {
        let conf = write(
            &dir,
            name,
            &format!(
                "gateway:\n  worker_cpus: [{workers}]\n  table_cpus: [{table}]\n  state_dir: {}\n",
                dir.display()
            ),
        );
        Config::load(Some(&conf), &Overrides::default())
    };
    let shared = load("shared.yaml", last, last)
        .expect_err("one CPU for both")
        .join("\n");
    assert!(
        shared.contains(&format!(
            "gateway.worker_cpus and gateway.table_cpus both name CPU {last}"
        )),
        "{shared}"
    );
    if first == last {
        return; // one CPU: nothing to keep apart
    }
    let c = load("apart.yaml", first, last).expect("apart");
    assert_eq!(c.worker_cpus, Cpus::parse(&[first]).expect("allowed"));
    assert_eq!(c.table_cpus, Cpus::parse(&[last]).expect("allowed"));
    // Table CPUs alone are kept for table work: the rest runs on every other CPU.
    let conf = write(
        &dir,
        "table-only.yaml",
        &format!(
            "gateway:\n  table_cpus: [{last}]\n  state_dir: {}\n",
            dir.display()
        ),
    );
    let c = Config::load(Some(&conf), &Overrides::default()).expect("table CPUs only");
    assert_eq!(
        c.worker_cpus,
        Cpus::parse(&mine[..mine.len() - 1]).expect("allowed")
    );
}

#[test]
fn flags_override_the_file() {
    let dir = temp_dir("override");
    let token = write(&dir, "token", "0123456789abcdef0123\n");
    let conf = write(
        &dir,
        "c.yaml",
        &format!(
            "pingora:\n  threads: 3\n  grace_period_seconds: 0\ngateway:\n  delta_idle_ms: 2000\n  delta_yield_ms: 0\n  table_cpus: [{cpu}]\n  listen: 127.0.0.1:1111\n  admin_listen: 127.0.0.1:2222\n  admin_token_file: {}\n  state_dir: {}\n",
            token.display(),
            dir.display(),
            cpu = crate::snapshot::cpus::last_allowed(),
        ),
    );
    let o = Overrides {
        listen: Some("127.0.0.1:3333".into()),
        ..Overrides::default()
    };
    let c = Config::load(Some(&conf), &o).expect("valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:3333");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:2222");
    assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(c.server.threads, 3);
    assert_eq!(c.server.grace_period_seconds, Some(0));
    assert_eq!(c.delta_idle, std::time::Duration::from_secs(2));
    assert!(c.delta_yield.is_zero(), "yielding turned off");
    let on = crate::snapshot::cpus::Cpus::parse(&[crate::snapshot::cpus::last_allowed()])
        .expect("allowed");
    assert_eq!(c.table_cpus, on);
}

#[test]
fn every_problem_is_listed() {
    let dir = temp_dir("problems");
    let short = write(&dir, "short", "abc");
    let conf = write(
        &dir,
        "bad.yaml",
        &format!(
            "pingora:\n  threads: 0\n  colour: red\ngateway:\n  listen: nowhere\n  admin_token_file: {}\n  state_dir: /nonexistent/deeper/state\n  health_check_interval_ms: 1\n  delta_idle_ms: 60001\n  delta_yield_ms: 60001\n  table_cpus: [0, 100000]\n  worker_cpus: [100001]\n  shape: round\n  trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.0/40\", \"proxy\"]\n",
            short.display()
        ),
    );
    let problems = Config::load(Some(&conf), &Overrides::default()).expect_err("invalid");
    let all = problems.join("\n");
    for needle in [
        "unknown key pingora.colour",
        "unknown key gateway.shape",
        "listen: \"nowhere\"",
        "token must be at least",
        "state_dir /nonexistent/deeper/state",
        "health_check_interval_ms",
        "gateway.delta_idle_ms: must be at most 60000",
        "gateway.delta_yield_ms: must be at most 60000",
        "gateway.table_cpus: CPU 100000 is not one this process can run on",
        "gateway.worker_cpus: CPU 100001 is not one this process can run on",
        "pingora.threads",
        "gateway.trusted_proxies[1]: \"10.0.0.0/40\": prefix length",
        "gateway.trusted_proxies[2]: \"proxy\" is not an IP",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn auth_settings_and_session_keys() {
    let dir = temp_dir("auth");
    let keys = write(
        &dir,
        "keys",
        &format!(
            "# current\n{}\n\n{}\n",
            "ab".repeat(32),
            "AQID".repeat(10) + "AQI="
        ),
    );
    let conf = write(
        &dir,
        "c.yaml",
        &format!(
            "gateway:\n  state_dir: {}\n  session_key_file: {}\n  auth:\n    clock_skew_s: 5\n    jwks_refetch_interval_ms: 500\n",
            dir.display(),
            keys.display()
        ),
    );
    let c = Config::load(Some(&conf), &Overrides::default()).expect("valid");
    assert_eq!(c.auth.clock_skew_s, 5);
    assert_eq!(c.auth.jwks_refetch_interval.as_millis(), 500);
    assert_eq!(c.auth.max_token_bytes, 8192);
    let k = c.session_keys.expect("keys");
    assert_eq!(k.len(), 2);
    assert_eq!(k[0], [0xab; 32]);

    let bad_keys = write(&dir, "bad", "too-short\n");
    let conf = write(
        &dir,
        "bad.yaml",
        &format!(
            "gateway:\n  state_dir: {}\n  session_key_file: {}\n  auth:\n    clock_skew_s: 9999\n    jwks_ttl_min_s: 100\n    jwks_ttl_max_s: 10\n    colour: red\n",
            dir.display(),
            bad_keys.display()
        ),
    );
    let all = Config::load(Some(&conf), &Overrides::default())
        .expect_err("invalid")
        .join("\n");
    for needle in [
        "gateway.auth.clock_skew_s",
        "jwks_ttl_min_s <= jwks_ttl_default_s",
        "line 1: not 32 bytes",
        "unknown key gateway.auth.colour",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn unreadable_and_malformed_files() {
    let dir = temp_dir("malformed");
    let missing = Config::load(Some(&dir.join("nope.yaml")), &Overrides::default())
        .expect_err("missing file");
    assert!(missing[0].contains("cannot read"), "{missing:?}");
    let bad = write(&dir, "bad.yaml", "gateway: [1, 2\n");
    assert!(Config::load(Some(&bad), &Overrides::default()).is_err());
}

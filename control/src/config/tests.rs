//! Configuration: defaults, overrides, and every problem listed at once.

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "realmctl-config-{name}-{}-{}",
            std::process::id(),
            crate::time::now_ms()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const TOKEN: &str = "operator-token-0123456789\n";

#[test]
fn flags_alone_with_defaults() {
    let d = Dir::new("flags");
    let o = Overrides {
        admin_token_file: Some(d.write("admin", TOKEN)),
        ..Overrides::default()
    };
    let c = Config::load(None, &o).expect("valid");
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(
        c.admin_token.expose(),
        "operator-token-0123456789",
        "trimmed"
    );
    assert_eq!(c.max_body_bytes, 1 << 20);
    assert!(c.gateways.is_empty() && c.gateway_token.is_none() && c.remote.is_none());
    assert!(
        !format!("{c:?}").contains("operator-token"),
        "Debug hides tokens"
    );
}

#[test]
fn file_then_flags_override() {
    let d = Dir::new("file");
    let admin = d.write("admin", TOKEN);
    let gw = d.write("gw", "gateway-token-0123456789");
    let conf = d.write(
        "c.yaml",
        &format!(
            "listen: 127.0.0.1:9999\ndata_dir: /tmp/x\nadmin_token_file: {}\nmax_body_bytes: 4096\n\
             gateways:\n  urls: [\"http://127.0.0.1:9080/\", \"http://127.0.0.1:9081\"]\n  token_file: {}\n\
             \x20 push: {{initial_backoff_ms: 50, max_backoff_ms: 400, resync_interval_ms: 1000}}\n\
             registry:\n  remote: {{url: \"libsql://db.example.turso.io\", sync_interval_ms: 500}}\n",
            admin.display(),
            gw.display()
        ),
    );
    let c = Config::load(Some(&conf), &Overrides::default()).expect("valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(
        c.gateways,
        ["http://127.0.0.1:9080", "http://127.0.0.1:9081"]
    );
    assert_eq!(c.push.max_backoff, Duration::from_millis(400));
    assert_eq!(c.max_body_bytes, 4096);
    let remote = c.remote.expect("remote");
    assert_eq!(remote.sync_interval, Some(Duration::from_millis(500)));
    assert!(remote.read_your_writes);

    let o = Overrides {
        listen: Some("127.0.0.1:1234".into()),
        data_dir: Some("/tmp/y".into()),
        gateways: vec!["http://127.0.0.1:7000".into()],
        ..Overrides::default()
    };
    let c = Config::load(Some(&conf), &o).expect("valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:1234");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
    assert_eq!(
        c.gateways,
        ["http://127.0.0.1:7000"],
        "flags replace the list"
    );
}

#[test]
fn every_problem_is_listed() {
    let d = Dir::new("bad");
    let short = d.write("short", "abc");
    let conf = d.write(
        "c.yaml",
        &format!(
            "listen: nowhere\nadmin_token_file: {}\ncolour: blue\nmax_body_bytes: 10\n\
             gateways:\n  urls: [\"https://gw:9080\", \"ftp://x\", \"http://a:1/v1\"]\n  extra: 1\n\
             \x20 push: {{initial_backoff_ms: 0, bogus: 2}}\n",
            short.display()
        ),
    );
    let problems = Config::load(Some(&conf), &Overrides::default()).expect_err("invalid");
    let text = problems.join("\n");
    for needle in [
        "colour: unknown key",
        "gateways.extra: unknown key",
        "gateways.push.bogus: unknown key",
        "listen: \"nowhere\"",
        "admin_token_file: the token",
        "max_body_bytes",
        "gateways.urls[0]",
        "gateways.urls[1]",
        "gateways.urls[2]",
        "gateways.token_file: required",
        "gateways.push.initial_backoff_ms",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn missing_admin_token_and_unreadable_file() {
    let problems = Config::load(None, &Overrides::default()).expect_err("no token");
    assert!(
        problems[0].starts_with("admin_token_file: required"),
        "{problems:?}"
    );
    let problems = Config::load(
        Some(Path::new("/nonexistent/realmctl.yaml")),
        &Overrides::default(),
    )
    .expect_err("unreadable");
    assert!(problems[0].contains("cannot read"), "{problems:?}");
}

#[test]
fn malformed_yaml_is_reported() {
    let d = Dir::new("yaml");
    let conf = d.write("c.yaml", "listen: [unclosed\n");
    let problems = Config::load(Some(&conf), &Overrides::default()).expect_err("malformed");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("malformed configuration")),
        "{problems:?}"
    );
}

#[test]
fn example_config_in_conf_is_valid() {
    // conf/realmctl.example.yaml names files under /etc; point them at real ones here.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/realmctl.example.yaml");
    let text = std::fs::read_to_string(&example).expect("example config exists");
    let d = Dir::new("example");
    let admin = d.write("admin", TOKEN);
    let gw = d.write("gw", "gateway-token-0123456789");
    let text = text
        .replace("/etc/realmctl/admin-token", &admin.display().to_string())
        .replace("/etc/realmctl/gateway-token", &gw.display().to_string());
    let conf = d.write("c.yaml", &text);
    let c = Config::load(Some(&conf), &Overrides::default()).expect("example is valid");
    assert!(!c.gateways.is_empty());
}

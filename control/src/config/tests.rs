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
    assert_eq!(c.api, crate::api::ApiLimits::default());
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
             max_concurrent_requests: 8\nkey_minting: {{per_minute: 6, burst: 2}}\n\
             gateways:\n  urls: [\"http://127.0.0.1:9080/\", \"http://127.0.0.1:9081\"]\n  token_file: {}\n\
             \x20 push: {{initial_backoff_ms: 50, max_backoff_ms: 400, resync_interval_ms: 1000, debounce_ms: 20}}\n\
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
    assert_eq!(
        c.api,
        crate::api::ApiLimits {
            max_concurrent_requests: 8,
            mint_per_minute: 6,
            mint_burst: 2
        }
    );
    assert_eq!(c.push.debounce, Duration::from_millis(20));
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
             max_concurrent_requests: 0\nkey_minting: {{per_minute: 0, burst: 0}}\n\
             gateways:\n  urls: [\"https://\", \"ftp://x\", \"http://a:1/v1\"]\n  extra: 1\n\
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
        "max_concurrent_requests: must be at least 1",
        "key_minting.per_minute: must be at least 1",
        "key_minting.burst: must be at least 1",
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

#[test]
fn tls_and_gateway_trust() {
    let d = Dir::new("tls");
    let admin = d.write("admin", TOKEN);
    let gw = d.write("gw", TOKEN);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["realmctl.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let cert_file = d.write("cert.pem", &cert.pem());
    let key_file = d.write("key.pem", &key.serialize_pem());
    let other_key = d.write(
        "other.pem",
        &rcgen::KeyPair::generate().expect("key").serialize_pem(),
    );
    let load = |extra: String| {
        let conf = d.write(
            "c.yaml",
            &format!(
                "admin_token_file: {}\ngateways:\n  urls: [\"https://gw.test:9443\"]\n  token_file: {}\n{extra}",
                admin.display(),
                gw.display()
            ),
        );
        Config::load(Some(&conf), &Overrides::default())
    };
    let c = load(format!(
        "  ca_file: {}\ntls:\n  cert_file: {}\n  key_file: {}\n",
        cert_file.display(),
        cert_file.display(),
        key_file.display()
    ))
    .expect("valid");
    assert!(c.tls.is_some());
    assert!(matches!(c.gateway_trust, crate::tls::GatewayTrust::Ca(ref v) if v.len() == 1));
    let c = load(format!("  cert_sha256: \"sha256:{}\"\n", "0f".repeat(32))).expect("pin");
    assert!(matches!(c.gateway_trust, crate::tls::GatewayTrust::Pin(p) if p == [0x0f; 32]));
    let problems = load(format!(
        "  ca_file: {}\n  cert_sha256: \"{}\"\ntls:\n  cert_file: {}\n  key_file: {}\n",
        key_file.display(),
        "0f".repeat(32),
        cert_file.display(),
        other_key.display()
    ))
    .expect_err("invalid");
    let text = problems.join("\n");
    assert!(
        text.contains("gateways.ca_file and gateways.cert_sha256: give one"),
        "{text}"
    );
    assert!(
        text.contains("tls: "),
        "a key of another certificate: {text}"
    );
    let problems =
        load(format!("  ca_file: {}\n", key_file.display())).expect_err("a key is no CA");
    assert!(
        problems.join("\n").contains("no CERTIFICATE"),
        "{problems:?}"
    );
    let problems = load("  cert_sha256: abc\n".into()).expect_err("short pin");
    assert!(
        problems.join("\n").contains("64 hex digits"),
        "{problems:?}"
    );
}

#[test]
fn the_lease_section_is_optional_and_checked_with_the_rest() {
    let d = Dir::new("lease");
    let admin = d.write("admin", TOKEN);
    let load = |lease: &str| {
        let conf = d.write(
            "c.yaml",
            &format!("admin_token_file: {}\n{lease}", admin.display()),
        );
        Config::load(Some(&conf), &Overrides::default())
    };
    assert_eq!(
        load("").expect("valid").lease,
        None,
        "the writer lock alone"
    );
    let c = load("lease: {namespace: edge}\n").expect("valid");
    let lease = c.lease.expect("a lease");
    assert_eq!(
        (lease.namespace.as_str(), lease.name.as_str()),
        ("edge", "realmctl")
    );
    let problems =
        load("lease: {namespace: edge, retry_ms: 9000, colour: red}\n").expect_err("invalid");
    assert!(
        problems.iter().any(|p| p == "lease.colour: unknown key"),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("lease.retry_ms:")),
        "{problems:?}"
    );
    // The example's commented-out section, uncommented, is valid.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/realmctl.example.yaml"),
    )
    .expect("example");
    let section: String = example
        .lines()
        .skip_while(|l| *l != "# lease:")
        .take_while(|l| !l.is_empty())
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(section.starts_with("lease:"), "{section}");
    let lease = load(&section).expect("the example's lease: is valid").lease;
    assert_eq!(lease.map(|l| l.retry.as_millis()), Some(2000));
}

#[test]
fn acme_needs_the_secrets_key_and_lists_its_problems_with_the_rest() {
    let d = Dir::new("acme");
    let admin = d.write("admin", TOKEN);
    let conf = d.write(
        "c.yaml",
        &format!(
            "admin_token_file: {}\ncertificates:\n  acme:\n    directory_url: https://ca.test/dir\n",
            admin.display()
        ),
    );
    let problems = Config::load(Some(&conf), &Overrides::default()).expect_err("no key");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("needs provision.secrets_key_file"),
        "{problems:?}"
    );
    let key = d.write("key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    let conf = d.write(
        "c2.yaml",
        &format!(
            "admin_token_file: {}\nprovision: {{secrets_key_file: {}}}\ncertificates:\n  acme:\n    directory_url: https://ca.test/dir\n    challenge: dns-01\n    bogus: 1\n",
            admin.display(),
            key.display()
        ),
    );
    let problems = Config::load(Some(&conf), &Overrides::default()).expect_err("dns-01");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .any(|p| p == "certificates.acme.bogus: unknown key"));
    assert!(problems
        .iter()
        .any(|p| p.contains("\"dns-01\" publishes _acme-challenge TXT records through the DNS provider, and none is configured")));
    let conf = d.write(
        "c3.yaml",
        &format!(
            "admin_token_file: {}\nprovision: {{secrets_key_file: {}}}\ncertificates:\n  acme:\n    directory_url: https://ca.test/dir\n",
            admin.display(),
            key.display()
        ),
    );
    let c = Config::load(Some(&conf), &Overrides::default()).expect("valid");
    assert_eq!(
        c.acme.map(|a| a.directory_url).as_deref(),
        Some("https://ca.test/dir")
    );
}

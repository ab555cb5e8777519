//! The TLS configuration keys: defaults that change nothing, every problem named (files
//! included), the control channel's rule.

use crate::config::{Config, Overrides};
use realmgate_table::test_certs::TestCa;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "realmgate-tls-conf-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Load a config whose `gateway:` section is the given lines (plus a state dir and token).
fn load(dir: &Path, gateway: &str, o: &Overrides) -> Result<Config, Vec<String>> {
    let token = write(dir, "token", "0123456789abcdef0123\n");
    let conf = write(
        dir,
        "c.yaml",
        &format!(
            "gateway:\n  state_dir: {}\n  admin_token_file: {}\n{gateway}",
            dir.display(),
            token.display()
        ),
    );
    Config::load(Some(&conf), o)
}

#[test]
fn defaults_change_nothing() {
    let dir = temp_dir("defaults");
    let c = load(&dir, "", &Overrides::default()).expect("valid");
    assert!(c.tls.listen.is_empty());
    assert_eq!(c.https_port, 443);
    assert_eq!(c.tls.min_version, super::MinVersion::Tls12);
    assert_eq!(c.tls.h2.max_concurrent_streams, 100);
    assert!(c.tls.fallback.is_none() && c.tls.admin.is_none());
}

#[test]
fn keys_and_flags_are_read_and_checked() {
    let dir = temp_dir("keys");
    let c = load(
        &dir,
        "  tls_listen: [\"127.0.0.1:8443\", \"[::1]:8443\"]\n  https_port: 8443\n  tls_min_version: \"1.3\"\n  h2:\n    max_concurrent_streams: 50\n",
        &Overrides::default(),
    )
    .expect("valid");
    assert_eq!(c.tls.listen.len(), 2);
    assert_eq!(c.https_port, 8443);
    assert_eq!(c.tls.min_version, super::MinVersion::Tls13);
    assert_eq!(c.tls.h2.max_concurrent_streams, 50);
    // --tls-listen replaces the file's list.
    let o = Overrides {
        tls_listen: vec!["127.0.0.1:9443".into()],
        ..Overrides::default()
    };
    let c = load(&dir, "  tls_listen: [\"127.0.0.1:8443\"]\n", &o).expect("valid");
    assert_eq!(c.tls.listen, vec!["127.0.0.1:9443".parse().expect("addr")]);
    let problems = load(
        &dir,
        "  tls_listen: [\"nope\", \"127.0.0.1:8080\"]\n  listen: 127.0.0.1:8080\n  https_port: 70000\n  tls_min_version: \"1.1\"\n  h2:\n    max_concurrent_streams: 0\n",
        &Overrides::default(),
    )
    .expect_err("refused");
    for key in [
        "tls_listen[0]",
        "tls_listen: 127.0.0.1:8080 is also listen",
        "https_port",
        "tls_min_version",
        "max_concurrent_streams",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(key)),
            "{key}: {problems:?}"
        );
    }
    let problems = load(&dir, "  https_port: 0\n", &Overrides::default()).expect_err("port 0");
    assert!(
        problems.iter().any(|p| p.contains("https_port")),
        "{problems:?}"
    );
}

#[test]
fn certificate_files_are_checked_and_named_in_errors() {
    let dir = temp_dir("files");
    let ca = TestCa::new("conf CA");
    let a = ca.leaf(&["fallback.test", "*.fallback.test"]);
    let b = ca.leaf(&["other.test"]);
    let cert = write(&dir, "fb.crt", &a.cert_pem);
    let key = write(&dir, "fb.key", &a.key_pem);
    let wrong_key = write(&dir, "other.key", &b.key_pem);
    let c = load(
        &dir,
        &format!(
            "  tls_fallback_certificate: {{cert_file: {}, key_file: {}}}\n  admin_tls: {{cert_file: {}, key_file: {}}}\n",
            cert.display(),
            key.display(),
            cert.display(),
            key.display()
        ),
        &Overrides::default(),
    )
    .expect("valid");
    let fb = c.tls.fallback.clone().expect("fallback");
    assert!(fb.covers("fallback.test") && fb.covers("x.fallback.test"));
    assert!(!fb.covers("other.test"));
    assert!(c.tls.admin.is_some());
    // The key never appears in the configuration's Debug output.
    let debug = format!("{:?}", c.tls);
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    let missing = dir.join("missing.crt");
    for (cert_file, key_file, named) in [
        (&missing, &key, &missing),
        (&cert, &wrong_key, &wrong_key),
        (&key, &key, &key),
    ] {
        for section in ["tls_fallback_certificate", "admin_tls"] {
            let problems = load(
                &dir,
                &format!(
                    "  {section}: {{cert_file: {}, key_file: {}}}\n",
                    cert_file.display(),
                    key_file.display()
                ),
                &Overrides::default(),
            )
            .expect_err("refused");
            let named = named.display().to_string();
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(section) && p.contains(&named)),
                "{section} {named}: {problems:?}"
            );
        }
    }
}

#[test]
fn the_control_channel_is_https_or_loopback() {
    let dir = temp_dir("control");
    let ca = TestCa::new("control CA");
    let ca_file = write(&dir, "ca.pem", &ca.pem);
    for (url, ok) in [
        ("http://127.0.0.1:7000", true),
        ("http://localhost:7000", true),
        ("http://[::1]:7000", true),
        ("https://realmctl.internal:7443", true),
        ("http://realmctl.internal:7000", false),
        ("http://10.0.0.5:7000", false),
        ("ftp://127.0.0.1", false),
    ] {
        let r = load(
            &dir,
            &format!("  control_url: {url}\n"),
            &Overrides::default(),
        );
        assert_eq!(r.is_ok(), ok, "{url}: {:?}", r.err());
        if !ok {
            let problems = r.err().unwrap_or_default();
            assert!(
                problems.iter().any(|p| p.contains("control_url")),
                "{problems:?}"
            );
        }
    }
    let c = load(
        &dir,
        &format!(
            "  control_url: https://realmctl.internal:7443\n  control_ca_file: {}\n",
            ca_file.display()
        ),
        &Overrides::default(),
    )
    .expect("valid");
    assert!(c.tls.control_ca_pem.is_some());
    for gateway in [
        format!(
            "  control_url: http://127.0.0.1:7000\n  control_ca_file: {}\n",
            ca_file.display()
        ),
        "  control_url: https://r.test\n  control_ca_file: /nonexistent/ca.pem\n".to_owned(),
    ] {
        let problems = load(&dir, &gateway, &Overrides::default()).expect_err("refused");
        assert!(
            problems.iter().any(|p| p.contains("control_ca_file")),
            "{problems:?}"
        );
    }
}

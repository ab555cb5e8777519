//! App tokens for sqld, table-tested: the exact claims (one namespace, read-write, short
//! expiry, nothing that widens them), the key and lifetime checks, and where a URL's
//! namespace comes from.

use super::*;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};

const KEY: &str = TEST_KEY;
/// [`TEST_KEY`]'s public half: the raw 32 bytes, base64url (what sqld's
/// `--auth-jwt-key-file` also accepts).
const PUBLIC_X: &str = "X5KPRPjVYJ8HALRIW1uZOPfCc0fNZovycNIPegBb8dc";
const NOW: u64 = 1_900_000_000;

/// The claims of `token`, checked as sqld checks them (EdDSA, with this public key).
fn claims(token: &str) -> Value {
    let key = DecodingKey::from_ed_components(PUBLIC_X).expect("public key");
    let mut v = Validation::new(Algorithm::EdDSA);
    // The fixed clock of these tests is not the wall clock.
    v.validate_exp = false;
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("verifies with the public key")
        .claims
}

#[test]
fn a_token_opens_one_namespace_read_write_for_its_lifetime() {
    let tokens = AppTokens::from_pem(KEY, 300).expect("key");
    let t = tokens.mint("acme", NOW).expect("minted");
    assert_eq!(t.expires_in_s, 300);
    assert_eq!(
        claims(&t.token),
        json!({
            "iat": NOW, "exp": NOW + 300,
            "id": "acme", "a": "rw",
            "p": {"rw": {"ns": ["acme"]}}
        }),
        "exactly these claims: no ro/roa/rwa/ddl scopes, no tags, no aud"
    );
    let other = tokens.mint("beta", NOW).expect("minted");
    assert_eq!(claims(&other.token)["p"]["rw"]["ns"], json!(["beta"]));
    assert_ne!(t.token, other.token);
}

#[test]
fn expired_tokens_are_refused_by_a_verifier_like_sqlds() {
    let tokens = AppTokens::from_pem(KEY, 60).expect("key");
    let old = tokens.mint("acme", 1_000).expect("minted");
    let key = DecodingKey::from_ed_components(PUBLIC_X).expect("public key");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.required_spec_claims.remove("exp");
    let err = jsonwebtoken::decode::<Value>(&old.token, &key, &v).expect_err("expired");
    assert!(
        matches!(
            err.kind(),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature
        ),
        "{err:?}"
    );
}

#[test]
fn bad_keys_lifetimes_and_namespaces_are_refused() {
    for (pem, ttl, want) in [
        ("", 300, "PEM block"),
        ("not a key", 300, "PEM block"),
        (
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAX5KPRPjVYJ8HALRIW1uZOPfCc0fNZovycNIPegBb8dc=\n-----END PUBLIC KEY-----",
            300,
            "PEM block",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----",
            300,
            "not base64",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            300,
            "not an Ed25519 private key",
        ),
        (KEY, 0, "outside"),
        (KEY, 29, "outside"),
        (KEY, 3601, "outside"),
    ] {
        let err = AppTokens::from_pem(pem, ttl).expect_err(pem);
        assert!(err.contains(want), "{pem:?} {ttl}: {err}");
        assert!(!err.contains("MC4CAQAw"), "the key is never echoed: {err}");
    }
    let tokens = AppTokens::from_pem(KEY, 30).expect("the shortest lifetime");
    for ns in ["", "a.b", "a/b", "a b", &"x".repeat(64)] {
        assert!(tokens.mint(ns, NOW).is_err(), "{ns:?}");
    }
    assert!(!format!("{tokens:?}").contains("MC4C"));
}

#[test]
fn the_namespace_is_the_hosts_first_label() {
    for (url, want) in [
        ("libsql://acme.db.example.com", Some("acme")),
        ("https://acme-org.turso.io", Some("acme-org")),
        ("http://acme.localhost:8080", Some("acme")),
        ("libsql://localhost", None),
        ("libsql://127.0.0.1", None),
        ("not a url", None),
    ] {
        assert_eq!(namespace_of(url).as_deref(), want, "{url}");
    }
    for (template, ok) in [
        ("libsql://{tenant}.db.example.com", true),
        ("libsql://{tenant}-acme.turso.io", true),
        ("libsql://db.example.com/{tenant}", false),
        ("libsql://db-{tenant}", false),
        ("libsql://shared.example.com", false),
    ] {
        assert_eq!(check_template(template).is_ok(), ok, "{template}");
    }
}

#[test]
fn an_app_namespace_only_for_the_tenants_own_url() {
    let t = "libsql://{tenant}.db.example.com";
    for (template, tenant, url, want) in [
        (t, "acme", "libsql://acme.db.example.com", Some("acme")),
        (t, "acme", "libsql://beta.db.example.com", None),
        (t, "acme", "libsql://acme.db.example.com/", None),
        (t, "acme", "libsql://acme.other.example.com", None),
        (
            "libsql://db.example.com/{tenant}",
            "acme",
            "libsql://db.example.com/acme",
            None,
        ),
    ] {
        assert_eq!(
            app_namespace(template, tenant, url).as_deref(),
            want,
            "{url}"
        );
    }
}

/// `provision:` with `database.remote` as given; the problems, and the access it resolves.
fn resolve(remote: &str) -> (Vec<String>, Option<RemoteAccess>) {
    use crate::provision::config::{ProvisionConfig, ProvisionFile};
    let yaml = format!("database: {{provider: libsql, remote: {remote}}}");
    let f: ProvisionFile = serde_yaml::from_str(&yaml).expect("yaml");
    let mut problems = Vec::new();
    let c = ProvisionConfig::resolve(f, &mut problems);
    (problems, c.remote_database_access())
}

#[test]
fn the_configuration_takes_the_key_file_and_lists_every_problem() {
    let dir = std::env::temp_dir().join(format!("rc-app-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("key.pem");
    std::fs::write(&key, KEY).expect("key");
    let public = dir.join("public.pem");
    std::fs::write(&public, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAX5KPRPjVYJ8HALRIW1uZOPfCc0fNZovycNIPegBb8dc=\n-----END PUBLIC KEY-----\n").expect("public");
    let good = "libsql://{tenant}.db.example.com";

    let (problems, access) = resolve(&format!(
        "{{url_template: \"{good}\", app_token_key_file: {}, app_token_ttl_s: 120}}",
        key.display()
    ));
    assert!(problems.is_empty(), "{problems:?}");
    let access = access.expect("remote access");
    let minted = access
        .app_tokens
        .as_ref()
        .expect("minter")
        .mint("acme", NOW);
    assert_eq!(minted.expect("token").expires_in_s, 120);
    assert_eq!(access.url_template, good);

    // Without a key file: remote, but nothing to mint with (apps are refused).
    let (problems, access) = resolve(&format!("{{url_template: \"{good}\"}}"));
    assert!(problems.is_empty(), "{problems:?}");
    assert!(access.expect("remote access").app_tokens.is_none());

    for (remote, want) in [
        (
            "{url_template: \"libsql://db.example.com/{tenant}\"}".to_owned(),
            "host's first label",
        ),
        (
            format!("{{url_template: \"{good}\", app_token_ttl_s: 60}}"),
            "app_token_ttl_s: set without",
        ),
        (
            format!(
                "{{url_template: \"{good}\", app_token_key_file: {}}}",
                public.display()
            ),
            "PRIVATE KEY",
        ),
        (
            format!(
                "{{url_template: \"{good}\", app_token_key_file: {}/missing}}",
                dir.display()
            ),
            "cannot read",
        ),
        (
            format!(
                "{{url_template: \"{good}\", app_token_key_file: {}, app_token_ttl_s: 86400}}",
                key.display()
            ),
            "outside",
        ),
    ] {
        let (problems, _) = resolve(&remote);
        assert!(
            problems.len() == 1 && problems[0].contains(want),
            "{remote}: {problems:?}"
        );
        assert!(!problems[0].contains("MC4C"), "no key in a problem");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

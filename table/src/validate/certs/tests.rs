//! Certificate validation against chains minted here (rcgen): what is served, what is refused
//! and why.

use super::*;
use crate::parse_expiry;
use crate::wire::Certificate;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};

/// A CA and what it signs: certificates minted per test, nothing from disk.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn mint_ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("ca");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    not_after: String,
}

fn leaf_with(ca: &Ca, sans: &[&str], key: KeyPair, years: (i32, i32)) -> Leaf {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.not_before = date_time_ymd(years.0, 1, 1);
    params.not_after = date_time_ymd(years.1, 1, 1);
    let cert = params.signed_by(&key, &ca.issuer).expect("leaf");
    let secs = params.not_after.unix_timestamp() as u64;
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: rfc3339(secs),
    }
}

fn leaf(ca: &Ca, sans: &[&str]) -> Leaf {
    leaf_with(ca, sans, KeyPair::generate().expect("key"), (2020, 2099))
}

fn entry(name: &str, leaf: &Leaf, chain_extra: &str, hosts: &[&str]) -> Certificate {
    Certificate {
        name: name.to_owned(),
        cert_pem: format!("{}{}", leaf.cert_pem, chain_extra),
        key_pem: leaf.key_pem.clone(),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        not_after: leaf.not_after.clone(),
        ocsp_staple: None,
    }
}

fn problems(cert: &Certificate) -> Vec<Problem> {
    match certificate(cert) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(p) => p,
    }
}

fn has(problems: &[Problem], at: &str, text: &str) -> bool {
    problems
        .iter()
        .any(|p| p.at == at && p.message.contains(text))
}

#[test]
fn a_chain_with_its_key_is_ready_to_serve() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test", "*.acme.test"]);
    let c = certificate(&entry("acme", &l, &ca.pem, &["acme.test", "*.acme.test"]))
        .expect("valid certificate");
    assert_eq!(c.key.cert.len(), 2, "the chain is served whole");
    assert!(c.is_current(parse_expiry("2030-01-01T00:00:00Z").expect("time")));
    assert!(!c.is_current(parse_expiry("2099-01-02T00:00:00Z").expect("time")));
    // Certificate semantics: one label under the wildcard, not two, not the bare suffix.
    assert!(c.covers("acme.test"));
    assert!(c.covers("x.acme.test"));
    assert!(!c.covers("a.b.acme.test"));
    assert!(!c.covers("acme2.test"));
    assert!(!c.covers("xacme.test"));
    assert!(c.fingerprint_hex().starts_with("sha256:"));
    // Debug output never carries the key.
    assert!(!format!("{c:?}").contains("PRIVATE"));
}

#[test]
fn other_key_types_are_served_too() {
    let ca = mint_ca("Test CA");
    for alg in [&PKCS_ECDSA_P384_SHA384, &PKCS_ED25519] {
        let l = leaf_with(
            &ca,
            &["acme.test"],
            KeyPair::generate_for(alg).expect("key"),
            (2020, 2099),
        );
        certificate(&entry("acme", &l, "", &["acme.test"])).expect("valid certificate");
    }
}

#[test]
fn malformed_or_missing_pem_is_named() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test"]);
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.cert_pem =
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n".into();
    assert!(has(&problems(&c), "cert_pem", "malformed PEM"));
    c.cert_pem = "hello".into();
    assert!(has(&problems(&c), "cert_pem", "no CERTIFICATE block"));
    // A well-formed PEM block that is not a certificate.
    c.cert_pem = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".into();
    assert!(has(&problems(&c), "cert_pem", "not a valid X.509"));
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.key_pem =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".into();
    assert!(has(&problems(&c), "key_pem", "encrypted"));
    c.key_pem = l.cert_pem.clone();
    assert!(has(&problems(&c), "key_pem", "no private key"));
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test"]);
    let other = leaf(&ca, &["acme.test"]);
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.key_pem = other.key_pem;
    assert!(has(&problems(&c), "key_pem", "does not belong"));
}

#[test]
fn a_chain_out_of_order_is_refused() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test"]);
    // Issuer first, then the certificate.
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.cert_pem = format!("{}{}", ca.pem, l.cert_pem);
    assert!(has(&problems(&c), "cert_pem", "not in order"));
    // A chain whose second certificate did not sign the first.
    let stranger = mint_ca("Other CA");
    let c = entry("acme", &l, &stranger.pem, &["acme.test"]);
    assert!(has(
        &problems(&c),
        "cert_pem",
        "certificate 2 did not issue certificate 1"
    ));
}

#[test]
fn host_names_follow_certificate_semantics() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test", "*.beta.test"]);
    for (host, text) in [
        ("*.*.beta.test", "one leading"),
        ("a.*.beta.test", "one leading"),
        ("*", "one leading"),
        ("", "not a host name"),
        ("*.test", "at least two labels"),
        ("127.0.0.1", "IP address"),
        // Covered by the host pattern `*.beta.test` routes, but not by the certificate.
        ("a.b.beta.test", "not covered"),
        ("beta.test", "not covered"),
        ("other.test", "not covered"),
    ] {
        let c = entry("acme", &l, "", &[host]);
        assert!(
            has(&problems(&c), "hosts[0]", text),
            "{host}: {:?}",
            problems(&c)
        );
    }
    let c = entry(
        "acme",
        &l,
        "",
        &["x.beta.test", "*.beta.test", "ACME.test."],
    );
    let checked = certificate(&c).expect("covered names");
    assert_eq!(
        checked.hosts,
        vec![
            HostPattern::Exact("x.beta.test".into()),
            HostPattern::Wildcard("beta.test".into()),
            HostPattern::Exact("acme.test".into()),
        ]
    );
    let c = entry("acme", &l, "", &["acme.test", "acme.test"]);
    assert!(has(&problems(&c), "hosts[1]", "listed twice"));
    let c = entry("acme", &l, "", &[]);
    assert!(has(&problems(&c), "hosts", "at least one"));
}

#[test]
fn the_stated_not_after_must_agree() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test"]);
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.not_after = "2098-01-01T00:00:00Z".into();
    assert!(has(&problems(&c), "not_after", "2099-01-01T00:00:00Z"));
    c.not_after = "soon".into();
    assert!(has(&problems(&c), "not_after", "does not agree"));
}

#[test]
fn validity_in_time_is_reported_not_judged() {
    let ca = mint_ca("Test CA");
    let expired = leaf_with(
        &ca,
        &["acme.test"],
        KeyPair::generate().expect("key"),
        (2001, 2002),
    );
    let c = certificate(&entry("old", &expired, "", &["acme.test"])).expect("well-formed");
    assert!(!c.is_current(parse_expiry("2026-12-05T00:00:00Z").expect("time")));
    let future = leaf_with(
        &ca,
        &["acme.test"],
        KeyPair::generate().expect("key"),
        (2090, 2091),
    );
    let c = certificate(&entry("new", &future, "", &["acme.test"])).expect("well-formed");
    assert!(!c.is_current(parse_expiry("2026-12-05T00:00:00Z").expect("time")));
}

#[test]
fn sizes_are_bounded_before_parsing() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test"]);
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.cert_pem = "A".repeat(10 << 20);
    assert!(has(&problems(&c), "cert_pem", "longer than"));
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.key_pem.push_str(&" ".repeat(MAX_KEY_PEM_BYTES));
    assert!(has(&problems(&c), "key_pem", "longer than"));
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.cert_pem = l.cert_pem.repeat(MAX_CHAIN_LEN + 1);
    assert!(has(&problems(&c), "cert_pem", "more than"));
}

#[test]
fn an_ocsp_staple_is_served_with_the_chain() {
    let ca = mint_ca("Test CA");
    let l = leaf(&ca, &["acme.test"]);
    let mut c = entry("acme", &l, "", &["acme.test"]);
    c.ocsp_staple = Some("MAMCAQA=".into());
    let checked = certificate(&c).expect("valid");
    assert_eq!(
        checked.key.ocsp.as_deref(),
        Some(&[0x30, 0x03, 0x02, 0x01, 0x00][..])
    );
    c.ocsp_staple = Some("not base64!".into());
    assert!(has(&problems(&c), "ocsp_staple", "not base64"));
}

#[test]
fn a_table_gives_each_host_one_certificate() {
    let ca = mint_ca("Test CA");
    let a = leaf(&ca, &["acme.test", "*.acme.test"]);
    let b = leaf(&ca, &["acme.test", "shop.test"]);
    let table = Table {
        version: 1,
        certificates: vec![
            entry("acme", &a, "", &["acme.test", "*.acme.test"]),
            entry("shop", &b, "", &["shop.test", "acme.test"]),
            entry("acme", &b, "", &["shop.test"]),
        ],
        ..Table::default()
    };
    let mut p = Vec::new();
    let checked = check_certificates(&table, &mut p);
    assert_eq!(checked.len(), 3);
    assert!(
        has(
            &p,
            "certificates[1].hosts[1]",
            "already served by certificate \"acme\""
        ),
        "{p:?}"
    );
    assert!(has(&p, "certificates[2].name", "already used"), "{p:?}");
    assert!(
        has(
            &p,
            "certificates[2].hosts[0]",
            "certificate \"acme\": shop.test is already served by certificate \"shop\""
        ),
        "{p:?}"
    );
    // Every problem names its certificate.
    assert!(
        p.iter().all(|p| p.message.starts_with("certificate \"")),
        "{p:?}"
    );
}

//! The SNI index and resolver: most specific match with certificate semantics, names
//! normalised, nothing (or the fallback) for a name nobody claimed; a real in-memory rustls
//! handshake through the listeners' server configuration.

use super::*;
use crate::tls::settings::{server_config, MinVersion, ALPN_H2_H1};
use realmgate_table::test_certs::{KeyKind, TestCa, Validity};
use realmgate_table::Certificate;

fn checked(c: &Certificate) -> CheckedCert {
    match realmgate_table::certificate(c) {
        Ok(c) => c,
        Err(p) => panic!("{}: {p:?}", c.name),
    }
}

/// acme (exact), beta (wildcard *.beta.test), www (exact www.beta.test, more specific than
/// the wildcard), and an Ed25519, a P-384 and an RSA one.
fn index(ca: &TestCa) -> CertIndex {
    let certs = [
        ca.leaf(&["acme.test"]).entry("acme", &["acme.test"]),
        ca.leaf(&["*.beta.test"]).entry("beta", &["*.beta.test"]),
        ca.leaf(&["www.beta.test"]).entry("www", &["www.beta.test"]),
        ca.leaf_with(&["ed.test"], Validity::Current, KeyKind::Ed25519)
            .entry("ed", &["ed.test"]),
        ca.leaf_with(&["p384.test"], Validity::Current, KeyKind::EcdsaP384)
            .entry("p384", &["p384.test"]),
        ca.leaf_with(&["rsa.test"], Validity::Current, KeyKind::Rsa2048)
            .entry("rsa", &["rsa.test"]),
    ];
    CertIndex::build(certs.iter().map(|c| (c.name.clone(), checked(c))))
}

fn name_of(index: &CertIndex, cert: Option<&Arc<CheckedCert>>) -> Option<String> {
    let cert = cert?;
    index
        .all()
        .find(|n| Arc::ptr_eq(&n.cert, cert))
        .map(|n| n.name.to_string())
}

#[test]
fn most_specific_certificate_with_certificate_semantics() {
    let ca = TestCa::new("index CA");
    let idx = index(&ca);
    // (server name as normalised, certificate expected)
    let cases = [
        ("acme.test", Some("acme")),
        ("x.beta.test", Some("beta")),
        ("www.beta.test", Some("www")),
        ("ed.test", Some("ed")),
        ("p384.test", Some("p384")),
        ("rsa.test", Some("rsa")),
        // One label only: the table may route a.b.beta.test, the certificate does not cover it.
        ("a.b.beta.test", None),
        ("beta.test", None),
        (".beta.test", None),
        ("*.beta.test", None),
        ("acme.test.evil", None),
        ("x.acme.test", None),
        ("unknown.test", None),
        ("", None),
    ];
    for (name, want) in cases {
        assert_eq!(name_of(&idx, idx.lookup(name)).as_deref(), want, "{name:?}");
    }
    assert_eq!(idx.len(), 6);
}

#[test]
fn server_names_are_normalised_or_refused() {
    for (raw, want) in [
        ("ACME.Test", Some("acme.test")),
        ("acme.test.", Some("acme.test")),
        ("acme.test", Some("acme.test")),
        ("", None),
        (".", None),
        ("127.0.0.1", None),
        ("::1", None),
        ("[::1]", None),
        ("acme.test..", None),
        ("acme test", None),
        ("ac\u{e9}me.test", None),
    ] {
        let got = normalise_sni(raw);
        let got = got.as_deref().filter(|n| !n.ends_with('.'));
        assert_eq!(got, want, "{raw:?}");
    }
    assert!(normalise_sni(&"a".repeat(254)).is_none());
}

#[test]
fn unknown_or_absent_names_get_nothing_or_the_fallback_never_a_tenants() {
    let ca = TestCa::new("resolver CA");
    let idx = Arc::new(index(&ca));
    let plain = SniResolver::new(Arc::clone(&idx) as Arc<dyn CertSource>, None);
    for sni in [
        None,
        Some("unknown.test"),
        Some("a.b.beta.test"),
        Some("10.0.0.1"),
    ] {
        assert!(plain.choose(sni).is_none(), "{sni:?}");
    }
    assert_eq!(
        name_of(&idx, plain.choose(Some("X.Beta.Test.")).as_ref()).as_deref(),
        Some("beta")
    );
    let fb = Arc::new(checked(
        &ca.leaf(&["fallback.test"])
            .entry("fallback", &["fallback.test"]),
    ));
    let with = SniResolver::new(
        Arc::clone(&idx) as Arc<dyn CertSource>,
        Some(Arc::clone(&fb)),
    );
    for sni in [None, Some("unknown.test"), Some("10.0.0.1")] {
        let got = with.choose(sni).expect("the fallback");
        assert!(Arc::ptr_eq(&got, &fb), "{sni:?}");
    }
    // A table certificate still wins over the fallback.
    assert_eq!(
        name_of(&idx, with.choose(Some("acme.test")).as_ref()).as_deref(),
        Some("acme")
    );
}

/// What a client saw of a finished handshake: the leaf (DER), ALPN, version.
type Seen = (Vec<u8>, Option<Vec<u8>>, rustls::ProtocolVersion);

/// Drive a rustls client and server in memory until the handshake ends.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    ca_pem: &str,
    sni: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Seen, rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem"))
        .expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
    let mut s = rustls::ServerConnection::new(server).expect("server");
    drive(&mut c, &mut s)?;
    let leaf = c.peer_certificates().expect("peer certs")[0].to_vec();
    Ok((
        leaf,
        c.alpn_protocol().map(<[u8]>::to_vec),
        c.protocol_version().expect("version"),
    ))
}

/// Exchange records between a client and a server in memory until both finished the
/// handshake; the first error of either side.
fn drive(
    c: &mut rustls::ClientConnection,
    s: &mut rustls::ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
        }
        let server_err = s.process_new_packets().err();
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).expect("server write");
        }
        let mut rd = &back[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
        }
        c.process_new_packets()?;
        if let Some(e) = server_err {
            return Err(e);
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn listeners_server_config_serves_the_right_certificate_and_refuses_unknown_names() {
    use sha2::Digest;
    let ca = TestCa::new("handshake CA");
    let idx = Arc::new(index(&ca));
    let resolver = Arc::new(SniResolver::new(
        Arc::clone(&idx) as Arc<dyn CertSource>,
        None,
    ));
    let config = Arc::new(
        server_config(
            resolver as Arc<dyn ResolvesServerCert>,
            MinVersion::Tls12,
            ALPN_H2_H1,
        )
        .expect("server config"),
    );
    let fingerprint = |name: &str| {
        idx.all()
            .find(|n| &*n.name == name)
            .map(|n| n.cert.fingerprint)
            .expect("cert")
    };
    let both = [&rustls::version::TLS13, &rustls::version::TLS12];
    for (sni, want) in [
        ("acme.test", "acme"),
        ("x.beta.test", "beta"),
        ("www.beta.test", "www"),
        ("ed.test", "ed"),
        ("p384.test", "p384"),
        ("rsa.test", "rsa"),
    ] {
        let (leaf, alpn, _) = handshake(Arc::clone(&config), &ca.pem, sni, &both).expect(sni);
        let got: [u8; 32] = sha2::Sha256::digest(&leaf).into();
        assert_eq!(got, fingerprint(want), "{sni}");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{sni}: ALPN prefers h2");
    }
    // TLS 1.2 (ECDHE + AEAD suites only) works with the 1.2 minimum, ECDSA and RSA.
    for sni in ["acme.test", "rsa.test"] {
        let (_, _, v) = handshake(
            Arc::clone(&config),
            &ca.pem,
            sni,
            &[&rustls::version::TLS12],
        )
        .expect("TLS 1.2");
        assert_eq!(v, rustls::ProtocolVersion::TLSv1_2, "{sni}");
    }
    // No certificate for the name: the handshake fails, nothing is served.
    let e = handshake(Arc::clone(&config), &ca.pem, "unknown.test", &both).expect_err("refused");
    assert!(
        matches!(
            e,
            rustls::Error::AlertReceived(_) | rustls::Error::General(_)
        ),
        "{e:?}"
    );
    // A 1.3 minimum refuses a 1.2-only client.
    let resolver = Arc::new(SniResolver::new(
        Arc::clone(&idx) as Arc<dyn CertSource>,
        None,
    ));
    let only13 = Arc::new(
        server_config(
            resolver as Arc<dyn ResolvesServerCert>,
            MinVersion::Tls13,
            ALPN_H2_H1,
        )
        .expect("server config"),
    );
    assert!(handshake(only13, &ca.pem, "acme.test", &[&rustls::version::TLS12]).is_err());
}

/// Verifies like the WebPKI verifier and remembers the OCSP response the server stapled.
#[derive(Debug)]
struct Stapled {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: std::sync::Mutex<Option<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for Stapled {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(ocsp_response.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[test]
fn the_ocsp_staple_of_the_table_is_sent_with_the_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let ca = TestCa::new("ocsp CA");
    let mut entry = ca.leaf(&["ocsp.test"]).entry("ocsp", &["ocsp.test"]);
    // Any DER bytes: the gateway staples what the table carries, the client judges it.
    entry.ocsp_staple = Some("MAMCAQA=".into());
    let idx = Arc::new(CertIndex::build([(entry.name.clone(), checked(&entry))]));
    let resolver = Arc::new(SniResolver::new(idx as Arc<dyn CertSource>, None));
    let server = Arc::new(
        server_config(
            resolver as Arc<dyn ResolvesServerCert>,
            MinVersion::Tls12,
            ALPN_H2_H1,
        )
        .expect("server config"),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("ca"))
        .expect("root");
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .expect("verifier");
    let verifier = Arc::new(Stapled {
        inner,
        seen: std::sync::Mutex::new(None),
    });
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as _)
        .with_no_client_auth();
    let mut c = rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from("ocsp.test").expect("name"),
    )
    .expect("client");
    let mut s = rustls::ServerConnection::new(server).expect("server");
    drive(&mut c, &mut s).expect("handshake");
    assert!(!c.is_handshaking());
    assert_eq!(
        verifier.seen.lock().expect("lock").as_deref(),
        Some(&[0x30, 0x03, 0x02, 0x01, 0x00][..])
    );
}

#[test]
fn certificates_change_one_at_a_time() {
    let before = index(&TestCa::new("delta"));
    let mut next = before.clone();
    let names: Vec<String> = before.all().map(|c| c.name.to_string()).collect();
    assert!(!names.is_empty());
    let first = names[0].clone();
    let old = next.remove(&first).expect("named");
    assert!(next.named(&first).is_none());
    for host in &old.cert.hosts {
        let probe = match host {
            realmgate_table::host::HostPattern::Exact(h) => h.clone(),
            realmgate_table::host::HostPattern::Wildcard(s) => format!("x.{s}"),
        };
        assert!(
            next.lookup(&probe)
                .is_none_or(|c| !Arc::ptr_eq(c, &old.cert)),
            "{probe} no longer served by {first}"
        );
        assert!(
            before.lookup(&probe).is_some(),
            "the old index still serves {probe}"
        );
    }
    // Back under its name: served again.
    next.upsert(first.clone(), (*old.cert).clone());
    assert_eq!(next.len(), before.len());
    let sorted: Vec<&str> = next.sorted().iter().map(|c| &*c.name).collect();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(sorted, want);
}

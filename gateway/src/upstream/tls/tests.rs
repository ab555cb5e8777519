//! `https://` pools against a real TLS upstream (tokio-rustls, certificates minted by rcgen):
//! verified against the pool's `ca_file`, refused with a wrong CA or a wrong server name,
//! allowed unverified only with `insecure_skip_verify`; SNI and ALPN as configured; health
//! checks over TLS; a bad `ca_file` fails the pool's build.

use super::super::Pool;
use crate::errors::GatewayError;
use pingora_core::connectors::http::Connector as HttpConnector;
use realmgate_e2e::tls_upstream::{Pki, TlsUpstream};
use realmgate_table::{HealthCheck, Upstream};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A file that goes away with the test.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "realmgate-upstream-tls-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write");
        TempFile(path)
    }

    fn path(&self) -> String {
        self.0.to_str().expect("utf-8 path").to_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pool_spec(addr: SocketAddr) -> Upstream {
    Upstream {
        endpoints: vec![format!("https://{addr}")],
        ..Upstream::default()
    }
}

/// One request through the pool's peer as the proxy makes it: the status, or the status the
/// gateway answers for the failure.
async fn get(pool: &Pool) -> u16 {
    let peer = pool.select(None).expect("an endpoint");
    let connector = HttpConnector::new(None);
    let session = match connector.get_http_session(&*peer).await {
        Ok((s, _)) => s,
        Err(e) => return crate::proxy::classify(&e).map_or(0, GatewayError::status),
    };
    let mut session = session;
    let mut req = pingora_http::RequestHeader::build("GET", b"/", None).expect("request");
    req.insert_header("host", "app.test").expect("host");
    let sent = async {
        session.write_request_header(Box::new(req)).await?;
        session.finish_request_body().await?;
        session.read_response_header().await
    };
    match sent.await {
        Ok(()) => session.response_header().map_or(0, |r| r.status.as_u16()),
        Err(e) => crate::proxy::classify(&e).map_or(0, GatewayError::status),
    }
}

#[tokio::test]
async fn verified_against_the_pool_ca_by_server_name_or_ip() {
    let pki = Pki::mint();
    let up = TlsUpstream::start(Arc::clone(&pki.server), "ok").await;
    let addr = up.addr;
    let ca = TempFile::new(pki.ca_pem.as_bytes());
    let other_ca = TempFile::new(Pki::mint().ca_pem.as_bytes());
    let h1 = vec![b"http/1.1".to_vec()];

    // The server name: sent as SNI, and verified.
    let mut spec = pool_spec(addr);
    spec.server_name = Some("app.test".into());
    spec.ca_file = Some(ca.path());
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 200);
    assert_eq!(up.take_hellos(), [(Some("app.test".into()), h1.clone())]);

    // No server name: verified against the IP address, and no SNI is sent for an IP.
    spec.server_name = None;
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 200);
    assert_eq!(up.take_hellos(), [(None, h1.clone())]);

    // A name the certificate does not carry: refused, the gateway answers 502.
    spec.server_name = Some("other.test".into());
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 502);

    // Another CA: refused.
    spec.server_name = Some("app.test".into());
    spec.ca_file = Some(other_ca.path());
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 502);

    // The system's roots do not know the test CA: refused.
    spec.ca_file = None;
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 502);

    // Unverified only when the pool says so, whatever the name.
    spec.insecure_skip_verify = true;
    spec.server_name = Some("other.test".into());
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 200);
}

/// `h2: true` offers h2 first and falls back to HTTP/1.1 when the upstream declines.
#[tokio::test]
async fn h2_is_offered_by_alpn() {
    let pki = Pki::mint();
    let up = TlsUpstream::start(Arc::clone(&pki.server), "ok").await;
    let addr = up.addr;
    let ca = TempFile::new(pki.ca_pem.as_bytes());
    let mut spec = pool_spec(addr);
    spec.server_name = Some("app.test".into());
    spec.ca_file = Some(ca.path());
    spec.h2 = true;
    let pool = Pool::build("tls", &spec).expect("pool");
    assert_eq!(get(&pool).await, 200);
    let seen = up.take_hellos();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, [b"h2".to_vec(), b"http/1.1".to_vec()]);
}

/// A pool verified by one CA never reuses a connection another pool's CA verified to the
/// same endpoint.
#[tokio::test]
async fn pooled_connections_are_not_shared_across_trust_roots() {
    let pki = Pki::mint();
    let up = TlsUpstream::start(Arc::clone(&pki.server), "ok").await;
    let addr = up.addr;
    let ca = TempFile::new(pki.ca_pem.as_bytes());
    let other_ca = TempFile::new(Pki::mint().ca_pem.as_bytes());
    let mut spec = pool_spec(addr);
    spec.server_name = Some("app.test".into());
    spec.ca_file = Some(ca.path());
    let good = Pool::build("good", &spec).expect("pool");
    spec.ca_file = Some(other_ca.path());
    let bad = Pool::build("bad", &spec).expect("pool");
    let (g, b) = (
        good.select(None).expect("peer"),
        bad.select(None).expect("peer"),
    );
    use pingora_core::upstreams::peer::Peer;
    assert_ne!(g.reuse_hash(), b.reuse_hash());
}

#[tokio::test]
async fn health_checks_of_https_pools_handshake_and_verify() {
    let pki = Pki::mint();
    let up = TlsUpstream::start(Arc::clone(&pki.server), "ok").await;
    let addr = up.addr;
    let ca = TempFile::new(pki.ca_pem.as_bytes());
    let other_ca = TempFile::new(Pki::mint().ca_pem.as_bytes());
    for http_path in [None, Some("/healthz".to_owned())] {
        let mut spec = pool_spec(addr);
        spec.server_name = Some("app.test".into());
        spec.ca_file = Some(ca.path());
        spec.health_check = Some(HealthCheck {
            http_path: http_path.clone(),
        });
        let pool = Pool::build("tls", &spec).expect("pool");
        pool.probe().await;
        assert_eq!(pool.healthy_count(), 1, "{http_path:?}");
        let seen = up.take_hellos();
        assert!(!seen.is_empty(), "the probe was a TLS handshake");
        assert!(seen
            .iter()
            .all(|(sni, _)| sni.as_deref() == Some("app.test")));

        spec.ca_file = Some(other_ca.path());
        let pool = Pool::build("tls", &spec).expect("pool");
        pool.probe().await;
        assert_eq!(pool.healthy_count(), 0, "{http_path:?}: wrong CA");
        up.take_hellos();
    }
}

#[test]
fn a_bad_ca_file_fails_the_pool_build_naming_it() {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let garbage_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let not_pem = TempFile::new(b"not a certificate");
    let bad_der = TempFile::new(garbage_cert.as_bytes());
    let key_only = TempFile::new(
        rcgen::KeyPair::generate()
            .expect("key")
            .serialize_pem()
            .as_bytes(),
    );
    for (path, why) in [
        ("/nonexistent/ca.pem".to_owned(), "cannot read"),
        (not_pem.path(), "no PEM certificate"),
        (bad_der.path(), "certificate 1"),
        (key_only.path(), "no PEM certificate"),
    ] {
        let mut spec = pool_spec(addr);
        spec.ca_file = Some(path.clone());
        match Pool::build("payments", &spec) {
            Ok(_) => panic!("{path}: built"),
            Err(e) => {
                assert!(e.starts_with("pool payments: ca_file "), "{e}");
                assert!(e.contains(why), "{path}: {e}");
            }
        }
    }
}

/// The table carrying such a pool is refused whole (422), with a problem that names it.
#[test]
fn a_table_with_an_unreadable_ca_file_is_refused() {
    use crate::snapshot::build::Rejected;
    let json = r#"{"version": 1,
        "upstreams": {"payments": {"endpoints": ["https://127.0.0.1:9"],
                                   "server_name": "pay.internal",
                                   "ca_file": "/nonexistent/ca.pem"}},
        "tenants": []}"#;
    match crate::snapshot::test_util::try_snapshot(json) {
        Err(Rejected::Invalid(problems)) => {
            let all = format!("{problems:?}");
            assert!(
                all.contains("pool payments: ca_file /nonexistent/ca.pem"),
                "{all}"
            );
        }
        Err(other) => panic!("refused otherwise: {other:?}"),
        Ok(_) => panic!("built"),
    }
}

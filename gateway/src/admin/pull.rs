//! Convergence from the gateway's side: a gateway started with `--control-url` asks realmctl
//! for the current table at start, retrying with backoff until it has it, then keeps a long
//! poll open (`GET /v1/table?after=<version it serves>`), so a gateway that missed a push
//! converges within a moment of the change, not at realmctl's next resync. The poll names
//! the version served (`&since=`), so realmctl answers a delta when it keeps one
//! (`application/vnd.realmgate.delta+json`, applied as a `PATCH /v1/table` is) and the full
//! table otherwise; a delta that does not apply here is followed by a pull of the full table.
//! Pushes stay the fast path; both apply through the same store (an older or equal version
//! is a no-op).

use crate::snapshot::{ApplyError, Store};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub struct ControlPull {
    pub store: Arc<Store>,
    pub control_url: String,
    pub token: String,
    pub max_bytes: usize,
    /// PEM CA(s) that sign realmctl's certificate; `None`: the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// What a long poll asks realmctl to wait at most; the request's own timeout is longer.
const LONG_POLL_WAIT_S: u64 = 25;
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(LONG_POLL_WAIT_S + 10);

#[async_trait]
impl BackgroundService for ControlPull {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Pulling tables is table work (gateway.table_cpus).
        self.store.table_cpus().enter();
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                log::error!("control pull: {e}");
                return;
            }
        };
        let url = format!("{}/v1/table", self.control_url.trim_end_matches('/'));
        let mut backoff = FIRST_BACKOFF;
        let mut started = false;
        // After a delta that did not apply here: the next pull asks for the full table.
        let mut full_next = false;
        loop {
            // First the current table; then, each time, whatever is newer than ours.
            let pulled = if started {
                let after = self.store.current().map_or(0, |s| s.version);
                let since = if full_next || after == 0 {
                    String::new()
                } else {
                    format!("&since={after}")
                };
                let poll = format!("{url}?after={after}{since}&wait_s={LONG_POLL_WAIT_S}");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    r = self.pull_once(&client, &poll) => r,
                }
            } else {
                self.pull_once(&client, &url).await
            };
            match pulled {
                Ok(p) => {
                    started = true;
                    full_next = p == Pulled::DeltaRefused;
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                Err(e) => log::warn!("control pull from {url}: {e}; retrying in {backoff:?}"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// How a pull ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
enum Pulled {
    /// Applied, or nothing newer.
    Done,
    /// realmctl answered a delta this gateway cannot apply (another base, another state):
    /// pull the full table next.
    DeltaRefused,
}

/// `http://` to loopback: the one plain-text form the configuration admits.
fn is_plain_loopback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "http" && crate::config::is_loopback_host(&u))
}

impl ControlPull {
    /// The HTTP client for realmctl: https only (unless realmctl is on loopback, which the
    /// configuration checked), verified against `ca_pem` when given, never redirected.
    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(LONG_POLL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!is_plain_loopback(&self.control_url));
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("gateway.control_ca_file: {e}"))?;
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        builder
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))
    }

    async fn pull_once(&self, client: &reqwest::Client, url: &str) -> Result<Pulled, String> {
        let mut resp = client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            // A long poll that saw no newer table: ask again.
            return Ok(Pulled::Done);
        }
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let is_delta = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case(realmgate_table::delta::DELTA_CONTENT_TYPE)
            });
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(format!("table larger than {} bytes", self.max_bytes));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading body: {e}"))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(format!("table larger than {} bytes", self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let store = Arc::clone(&self.store);
        let raw: Bytes = body.freeze();
        let applied = tokio::task::spawn_blocking(move || {
            if is_delta {
                store.apply_delta(raw)
            } else {
                store.apply(raw)
            }
        })
        .await
        .map_err(|e| format!("apply task: {e}"))?;
        let what = if is_delta { "delta" } else { "table" };
        match applied {
            Ok(s) => {
                log::info!("pulled {what} to version {} from realmctl", s.version);
                Ok(Pulled::Done)
            }
            Err(ApplyError::NotNewer { current, .. }) => {
                log::info!("realmctl's table is not newer than ours (version {current})");
                Ok(Pulled::Done)
            }
            Err(
                e @ (ApplyError::WrongBase { .. }
                | ApplyError::DigestMismatch { .. }
                | ApplyError::JournalFull { .. }
                | ApplyError::Invalid(_)),
            ) if is_delta => {
                log::warn!(
                    "the delta pulled from realmctl does not apply ({}): pulling the full table",
                    crate::snapshot::describe(&e)
                );
                Ok(Pulled::DeltaRefused)
            }
            Err(ApplyError::Invalid(p)) => Err(format!(
                "realmctl served an invalid table ({} problem(s), first: {})",
                p.len(),
                p.first().map(ToString::to_string).unwrap_or_default()
            )),
            // A full table: only the errors above and persistence can happen.
            Err(e) => Err(crate::snapshot::describe(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::tls::admin::TlsListener;
    use crate::tls::settings::{admin_server_config, certified_key, CertFiles, MinVersion};
    use realmgate_table::test_certs::TestCa;

    /// realmctl stand-in: `GET /v1/table` over HTTPS with `cert`.
    async fn control(dir: &std::path::Path, ca: &TestCa) -> std::net::SocketAddr {
        let leaf = ca.leaf(&["control.test"]);
        let files = CertFiles {
            cert_file: dir.join("c.crt"),
            key_file: dir.join("c.key"),
        };
        std::fs::write(&files.cert_file, &leaf.cert_pem).expect("cert");
        std::fs::write(&files.key_file, &leaf.key_pem).expect("key");
        let key = Arc::new(certified_key(&files).expect("key"));
        let config = Arc::new(admin_server_config(key, MinVersion::Tls12).expect("config"));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let listener = TlsListener::new(tcp, config).expect("listener");
        let addr = axum::serve::Listener::local_addr(&listener).expect("addr");
        let app = axum::Router::new().route(
            "/v1/table",
            axum::routing::get(|| async { r#"{"version": 5}"# }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn pulls_over_https_verified_against_the_configured_ca_only() {
        let dir = std::env::temp_dir().join(format!(
            "realmgate-pull-tls-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = TestCa::new("control CA");
        let addr = control(&dir, &ca).await;
        let url = format!("https://127.0.0.1:{}/v1/table", addr.port());
        let pull = |ca_pem: &str| ControlPull {
            store: Arc::new(Store::new(
                dir.join("state"),
                Arc::new(Metrics::new(4).expect("metrics")),
            )),
            control_url: format!("https://127.0.0.1:{}", addr.port()),
            token: "0123456789abcdef".into(),
            max_bytes: 1 << 20,
            ca_pem: Some(ca_pem.as_bytes().to_vec()),
        };
        // Another CA's certificate is refused before any byte of the table is read.
        let wrong = pull(&TestCa::new("other CA").pem);
        let client = wrong.client().expect("client");
        assert!(wrong.pull_once(&client, &url).await.is_err());
        assert!(wrong.store.current().is_none());
        // realmctl's certificate names control.test, not the IP: still refused.
        let right = pull(&ca.pem);
        let client = right.client().expect("client");
        assert!(right.pull_once(&client, &url).await.is_err());
        // Reached by its name, verified against the configured CA: pulled and applied.
        let client = reqwest::Client::builder()
            .https_only(true)
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("ca"))
            .resolve("control.test", addr)
            .build()
            .expect("client");
        let by_name = format!("https://control.test:{}/v1/table", addr.port());
        right.pull_once(&client, &by_name).await.expect("pulled");
        assert_eq!(right.store.current().map(|s| s.version), Some(5));
        // Plain HTTP to a non-loopback realmctl is never spoken.
        let plain = ControlPull {
            control_url: "http://10.1.2.3:7000".into(),
            ..pull(&ca.pem)
        };
        let client = plain.client().expect("client");
        assert!(plain
            .pull_once(&client, "http://10.1.2.3:7000/v1/table")
            .await
            .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

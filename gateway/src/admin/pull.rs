//! Start-up catch-up: a gateway started with `--control-url` asks realmctl for the current
//! table, retrying with backoff until it has it, so a gateway that was down converges even if
//! no push arrives.

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

#[async_trait]
impl BackgroundService for ControlPull {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!is_plain_loopback(&self.control_url));
        if let Some(pem) = &self.ca_pem {
            match reqwest::Certificate::from_pem_bundle(pem) {
                Ok(certs) => {
                    builder = builder.tls_built_in_root_certs(false);
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                Err(e) => {
                    log::error!("control pull: gateway.control_ca_file: {e}");
                    return;
                }
            }
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                log::error!("control pull: cannot build HTTP client: {e}");
                return;
            }
        };
        let url = format!("{}/v1/table", self.control_url.trim_end_matches('/'));
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.pull_once(&client, &url).await {
                Ok(()) => return,
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

/// `http://` to loopback: the one plain-text form the configuration admits.
fn is_plain_loopback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "http")
}

impl ControlPull {
    async fn pull_once(&self, client: &reqwest::Client, url: &str) -> Result<(), String> {
        let mut resp = client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
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
        let applied = tokio::task::spawn_blocking(move || store.apply(raw))
            .await
            .map_err(|e| format!("apply task: {e}"))?;
        match applied {
            Ok(s) => {
                log::info!("pulled table version {} from realmctl", s.version);
                Ok(())
            }
            Err(ApplyError::NotNewer { current, .. }) => {
                log::info!("realmctl's table is not newer than ours (version {current})");
                Ok(())
            }
            Err(ApplyError::Invalid(p)) => Err(format!(
                "realmctl served an invalid table ({} problem(s), first: {})",
                p.len(),
                p.first().map(ToString::to_string).unwrap_or_default()
            )),
            Err(ApplyError::Persist(e)) => Err(format!("could not persist: {e}")),
        }
    }
}

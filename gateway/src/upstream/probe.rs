//! The health check of every pool: each endpoint probed with its own prebuilt peer, through
//! one connector shared by all pools (see [`connector`]).

use super::Endpoint;
use async_trait::async_trait;
use pingora_core::connectors::http::Connector as HttpConnector;
use pingora_core::connectors::TransportConnector;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HealthObserve};
use pingora_load_balancing::Backend;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Most of a health check response body read before it counts as failed.
const MAX_PROBE_BODY: usize = 64 * 1024;
/// One probe, connect to last body byte, at most this long.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// Probes a pool's endpoints, each with its own prebuilt peer (plain, or TLS with its SNI and
/// trust roots): a connect (and handshake), or a `GET` of the health path that must answer
/// 200, its body read to at most [`MAX_PROBE_BODY`] bytes, all within [`PROBE_DEADLINE`].
pub struct Probe {
    endpoints: Arc<[Endpoint]>,
    /// The health check request; `None`: the handshake alone.
    req: Option<RequestHeader>,
    timeout: Duration,
    observe: Box<dyn HealthObserve + Send + Sync>,
}

impl Probe {
    pub(super) fn new(
        endpoints: Arc<[Endpoint]>,
        req: Option<RequestHeader>,
        timeout: Duration,
        observe: Box<dyn HealthObserve + Send + Sync>,
    ) -> Probe {
        Probe {
            endpoints,
            req,
            timeout,
            observe,
        }
    }

    async fn probe(&self, target: &Backend) -> Result<()> {
        let Some(ep) = self
            .endpoints
            .iter()
            .find(|e| super::inet(target) == Some(e.addr))
        else {
            return Error::e_explain(ErrorType::InternalError, "no such endpoint");
        };
        let mut peer = ep.peer.clone();
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeout);
        o.total_connection_timeout = Some(self.timeout);
        o.read_timeout = Some(self.timeout);
        o.write_timeout = Some(self.timeout);
        let Some(req) = &self.req else {
            return transport().get_stream(&peer).await.map(|_| ());
        };
        let (mut session, _) = connector().get_http_session(&peer).await?;
        session.write_request_header(Box::new(req.clone())).await?;
        session.finish_request_body().await?;
        session.read_response_header().await?;
        let status = session.response_header().map(|r| r.status.as_u16());
        if status != Some(200) {
            return Error::e_explain(
                ErrorType::CustomCode("non 200 code", status.unwrap_or(0)),
                "during health check",
            );
        }
        let mut read = 0;
        while let Some(chunk) = session.read_response_body().await? {
            read += chunk.len();
            if read > MAX_PROBE_BODY {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "health body too long");
            }
        }
        session.shutdown().await;
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for Probe {
    async fn check(&self, target: &Backend) -> Result<()> {
        match tokio::time::timeout(PROBE_DEADLINE, self.probe(target)).await {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ConnectTimedout, "health check"),
        }
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.observe.observe(target, healthy).await;
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// One connector for every pool's health checks: each connector loads the system's trust
/// roots (every file of the system's CA directory), which is worth doing once per process,
/// not once per pool (Pingora's own checks make a connector each).
fn connector() -> &'static HttpConnector {
    static C: OnceLock<HttpConnector> = OnceLock::new();
    C.get_or_init(|| HttpConnector::new(None))
}

fn transport() -> &'static TransportConnector {
    static C: OnceLock<TransportConnector> = OnceLock::new();
    C.get_or_init(|| TransportConnector::new(None))
}

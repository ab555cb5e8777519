//! The TLS listeners' application: admit the TCP connection (the shared connection limits),
//! run the handshake under the head deadline, attach [`ConnTls`] to the connection, then
//! serve it like a plain one (h2 or HTTP/1.1 by ALPN).

use super::index::normalise_sni;
use super::resolve::{CertSource, SniResolver, CHOSEN};
use super::settings::{server_config, TlsConfig, ALPN_H2_H1};
use super::ConnTls;
use crate::connection::{peer_ip, Edge};
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::listeners::tls::Acceptor;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

/// Serves TLS listeners in front of the shared [`Edge`].
pub struct TlsEdge<A> {
    edge: Arc<Edge<A>>,
    acceptor: Acceptor,
    resolver: Arc<SniResolver>,
}

/// The TLS listeners' service (`None` without `tls_listen`): certificates from `source`
/// (the store's snapshot in force), else the configured fallback.
pub fn tls_service<A>(
    edge: Arc<Edge<A>>,
    source: Arc<dyn CertSource>,
    config: &TlsConfig,
) -> Result<Option<Service<TlsEdge<A>>>, String>
where
    A: HttpServerApp + ServerApp + Send + Sync + 'static,
{
    if config.listen.is_empty() {
        return Ok(None);
    }
    let resolver = Arc::new(SniResolver::new(source, config.fallback.clone()));
    let server = server_config(
        Arc::clone(&resolver) as Arc<dyn rustls::server::ResolvesServerCert>,
        config.min_version,
        ALPN_H2_H1,
    )?;
    let mut service = Service::new(
        "realmgate tls".to_string(),
        TlsEdge::new(edge, Arc::new(server), resolver),
    );
    for addr in &config.listen {
        service.add_tcp(&addr.to_string());
    }
    Ok(Some(service))
}

impl<A> TlsEdge<A> {
    /// `config` must resolve certificates with `resolver` (see [`super::settings::server_config`]).
    pub fn new(
        edge: Arc<Edge<A>>,
        config: Arc<rustls::ServerConfig>,
        resolver: Arc<SniResolver>,
    ) -> TlsEdge<A> {
        TlsEdge {
            edge,
            acceptor: Acceptor::from_server_config(config),
            resolver,
        }
    }
}

/// Builds the connection's [`ConnTls`] once the handshake is done.
struct Attach<'a> {
    resolver: &'a SniResolver,
}

#[async_trait]
impl TlsAccept for Attach<'_> {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = tls
            .server_name()
            .and_then(normalise_sni)
            .map(|n| Box::<str>::from(n.as_ref()));
        // The resolver's choice; a resumed session chose none, so the name decides again
        // (rustls resumes only for the same SNI).
        let cert = CHOSEN
            .try_with(|c| c.borrow_mut().take())
            .ok()
            .flatten()
            .or_else(|| self.resolver.choose(tls.server_name()))?;
        Some(Arc::new(ConnTls { sni, cert }))
    }
}

#[async_trait]
impl<A> ServerApp for TlsEdge<A>
where
    A: HttpServerApp + ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (_slot, conn) = self.edge.admit(peer_ip(&stream))?;
        // The listener is a plain TCP one: its streams are L4 streams.
        let l4 = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => *l4,
            Err(_) => {
                log::error!("TLS listener: not a TCP stream; closing");
                return None;
            }
        };
        let attach = Attach {
            resolver: &self.resolver,
        };
        let handshake = CHOSEN.scope(
            RefCell::new(None),
            handshake_with_callback(&self.acceptor, l4, &attach),
        );
        // The handshake is part of the request head: same deadline, and a connection still
        // shaking hands is idle (it may be shed when the gateway is full).
        let deadline = self.edge.limits().header_read_timeout;
        let tls = tokio::select! {
            r = tokio::time::timeout(deadline, handshake) => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    log::debug!("TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    log::debug!("TLS handshake not done within the head deadline; closed");
                    return None;
                }
            },
            () = conn.shed.notified() => return None,
        };
        let stream: Stream = Box::new(tls);
        let attached = stream
            .get_ssl_digest()
            .is_some_and(|d| d.extension.get::<ConnTls>().is_some());
        if !attached {
            // No certificate for the name any more (a resumed session whose name left the
            // table): the request path must never see a TLS connection without its facts.
            log::debug!("TLS connection without a certificate for its name; closed");
            return None;
        }
        self.edge.serve(stream, shutdown, conn).await
    }

    async fn cleanup(&self) {}
}

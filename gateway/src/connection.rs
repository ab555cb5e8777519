//! Client connections, before and between requests: per-client and global connection limits
//! (the newest idle connection is shed when the gateway is full), the idle timeout of a
//! keep-alive connection, the deadline for a whole request head, and the body-read and send
//! timeouts every request gets. Wraps the proxy's HTTP/1 connection loop; HTTP/2 connections
//! are handed to the proxy whole (counted, with their own idle handling). Plain listeners
//! serve through [`PlainEdge`], TLS listeners through `tls::TlsEdge`: one [`Edge`], one
//! registry, so the limits count both.

use crate::limits::client::{client_network, TrustedProxies};
use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Timeouts and connection limits for clients (gateway config `client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// From the first byte of a request to the end of its head.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub keepalive_idle_timeout: Duration,
    /// The longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// The longest wait for the client to take the next piece of a response.
    pub send_timeout: Duration,
    /// Open client connections in all.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 client is its /64); trusted
    /// proxies are not limited.
    pub max_connections_per_client: usize,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_connections: 16384,
            max_connections_per_client: 256,
        }
    }
}

/// `gateway.client`: timeouts and connection limits for clients. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ClientFile {
    pub header_read_timeout_ms: Option<u64>,
    pub keepalive_idle_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
}

/// The process's open-file limit (soft), from `/proc/self/limits`.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl ClientLimits {
    /// `gateway.client`, checked. Without `max_connections`, the gateway takes half its
    /// open-file limit (each proxied connection may hold an upstream one too), so descriptors
    /// run out for nobody; without `max_connections_per_client`, an eighth of that (at most 256).
    pub fn from_file(
        f: &ClientFile,
        open_files: Option<usize>,
        problems: &mut Vec<String>,
    ) -> ClientLimits {
        use std::time::Duration;
        let d = ClientLimits::default();
        let mut ms = |key: &str, value: Option<u64>, default: Duration| -> Duration {
            match value {
                Some(v) if !(100..=3_600_000).contains(&v) => {
                    problems.push(format!(
                        "gateway.client.{key}: must be between 100 and 3600000"
                    ));
                    default
                }
                Some(v) => Duration::from_millis(v),
                None => default,
            }
        };
        let header_read_timeout = ms(
            "header_read_timeout_ms",
            f.header_read_timeout_ms,
            d.header_read_timeout,
        );
        let keepalive_idle_timeout = ms(
            "keepalive_idle_timeout_ms",
            f.keepalive_idle_timeout_ms,
            d.keepalive_idle_timeout,
        );
        let body_read_timeout = ms(
            "body_read_timeout_ms",
            f.body_read_timeout_ms,
            d.body_read_timeout,
        );
        let send_timeout = ms("send_timeout_ms", f.send_timeout_ms, d.send_timeout);
        let by_fds = open_files.map_or(d.max_connections, |n| (n / 2).clamp(16, d.max_connections));
        let max_connections = match f.max_connections {
            Some(0) => {
                problems.push("gateway.client.max_connections: must be at least 1".into());
                by_fds
            }
            Some(n) => {
                if open_files.is_some_and(|fds| n > fds) {
                    log::warn!("gateway.client.max_connections {n} is above the open-file limit");
                }
                n
            }
            None => by_fds,
        };
        let max_connections_per_client = match f.max_connections_per_client {
            Some(0) => {
                problems
                    .push("gateway.client.max_connections_per_client: must be at least 1".into());
                d.max_connections_per_client
            }
            Some(n) => n,
            None => (max_connections / 8).clamp(4, d.max_connections_per_client),
        };
        ClientLimits {
            header_read_timeout,
            keepalive_idle_timeout,
            body_read_timeout,
            send_timeout,
            max_connections,
            max_connections_per_client,
        }
    }
}

/// One open connection, as the registry and its request see it.
pub(crate) struct Conn {
    /// Waiting for the first byte of a request: the connection may be shed.
    idle: AtomicBool,
    /// The current request's head has been read: its deadline is over.
    head_read: AtomicBool,
    pub(crate) shed: Notify,
    limits: ClientLimits,
}

#[derive(Default)]
struct Registry {
    per_client: HashMap<IpAddr, usize>,
    /// Every open connection by accept order: the newest idle one is shed first.
    open: BTreeMap<u64, Arc<Conn>>,
    next: u64,
}

/// The proxy application behind connection limits and timeouts.
pub struct Edge<A> {
    app: Arc<A>,
    limits: ClientLimits,
    trusted: Arc<TrustedProxies>,
    registry: Mutex<Registry>,
}

tokio::task_local! {
    /// The connection the current HTTP/1 request arrived on (set around the proxy's
    /// per-request work, which runs on the connection's task).
    static CURRENT: Arc<Conn>;
}

/// Called when a request head has been read: its deadline no longer applies, and the body
/// read and send timeouts are set on the session. A request on an HTTP/2 stream (no
/// connection registered for it) keeps the proxy's defaults.
pub fn head_read(session: &mut ServerSession) {
    let limits = CURRENT
        .try_with(|c| {
            c.idle.store(false, Ordering::Release);
            c.head_read.store(true, Ordering::Release);
            c.limits
        })
        .ok();
    if let Some(l) = limits {
        session.set_read_timeout(Some(l.body_read_timeout));
        session.set_write_timeout(Some(l.send_timeout));
    }
}

/// Releases a connection's place when it closes, however it closes.
pub(crate) struct Slot<'a, A> {
    edge: &'a Edge<A>,
    seq: u64,
    client: Option<IpAddr>,
}

impl<A> Drop for Slot<'_, A> {
    fn drop(&mut self) {
        let mut r = self.edge.lock();
        r.open.remove(&self.seq);
        if let Some(c) = self.client {
            if let Some(n) = r.per_client.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    r.per_client.remove(&c);
                }
            }
        }
    }
}

impl<A> Edge<A> {
    pub fn new(app: A, limits: ClientLimits, trusted: Arc<TrustedProxies>) -> Edge<A> {
        Edge {
            app: Arc::new(app),
            limits,
            trusted,
            registry: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `peer`, or `None` (the connection is closed at
    /// once). At the global limit the newest idle connection is asked to close.
    pub(crate) fn admit(&self, peer: Option<IpAddr>) -> Option<(Slot<'_, A>, Arc<Conn>)> {
        let client = peer
            .filter(|ip| !self.trusted.is_trusted(*ip))
            .map(client_network);
        let mut r = self.lock();
        if let Some(c) = client {
            if r.per_client.get(&c).copied().unwrap_or(0) >= self.limits.max_connections_per_client
            {
                log::debug!("connection refused: client at its connection limit");
                return None;
            }
        }
        if r.open.len() >= self.limits.max_connections {
            let victim = r
                .open
                .values()
                .rev()
                .find(|c| c.idle.swap(false, Ordering::AcqRel))
                .cloned();
            match victim {
                Some(v) => v.shed.notify_one(),
                None => {
                    log::warn!(
                        "connection refused: {} connections open, none idle",
                        r.open.len()
                    );
                    return None;
                }
            }
        }
        let conn = Arc::new(Conn {
            idle: AtomicBool::new(true),
            head_read: AtomicBool::new(false),
            shed: Notify::new(),
            limits: self.limits,
        });
        let seq = r.next;
        r.next += 1;
        r.open.insert(seq, Arc::clone(&conn));
        if let Some(c) = client {
            *r.per_client.entry(c).or_insert(0) += 1;
        }
        Some((
            Slot {
                edge: self,
                seq,
                client,
            },
            conn,
        ))
    }

    /// Open connections in all (for tests and metrics).
    pub fn open_connections(&self) -> usize {
        self.lock().open.len()
    }

    pub fn limits(&self) -> ClientLimits {
        self.limits
    }
}

/// The address a connection came from, when it is an IP one.
pub(crate) fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

/// The plain-HTTP listeners' application: the shared [`Edge`] (one registry, so connection
/// limits count plain and TLS connections together).
pub struct PlainEdge<A>(pub Arc<Edge<A>>);

#[async_trait]
impl<A> ServerApp for PlainEdge<A>
where
    A: HttpServerApp + ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (_slot, conn) = self.0.admit(peer_ip(&stream))?;
        self.0.serve(stream, shutdown, conn).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.0.app.as_ref()).await;
    }
}

impl<A> Edge<A>
where
    A: HttpServerApp + ServerApp + Send + Sync + 'static,
{
    /// Serve an admitted connection (plain, or TLS once its handshake is done) until it
    /// closes: HTTP/2 whole, HTTP/1 request by request under the head deadline.
    pub(crate) async fn serve(
        &self,
        stream: Stream,
        shutdown: &ShutdownWatch,
        conn: Arc<Conn>,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes: the connection is never idle in the HTTP/1 sense and the
            // proxy runs its own stream and idle handling.
            conn.idle.store(false, Ordering::Release);
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let l = self.limits;
        let mut stream = stream;
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            // Until the head is read the connection is idle (it may be shed). A fresh one must
            // deliver its head within the head deadline; a kept-alive one within the idle
            // timeout plus the head deadline (Pingora's keep-alive read timeout closes a silent
            // one after the idle timeout alone). No extra syscall per request.
            conn.head_read.store(false, Ordering::Release);
            conn.idle.store(true, Ordering::Release);
            let limit = if first {
                l.header_read_timeout
            } else {
                l.keepalive_idle_timeout + l.header_read_timeout
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(Some(l.keepalive_idle_timeout.as_secs().max(1)));
                    session.set_keepalive_reuses_remaining(
                        self.app
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let work = CURRENT.scope(
                Arc::clone(&conn),
                self.app.process_new_http(session, shutdown),
            );
            let watchdog = async {
                tokio::select! {
                    () = tokio::time::sleep(limit) => {}
                    () = conn.shed.notified() => {}
                }
                // The head came in time: the request's own timeouts apply from here.
                if conn.head_read.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            };
            let done = tokio::select! {
                r = work => r,
                () = watchdog => {
                    log::debug!("connection closed: no request head in time, or shed while idle");
                    return None;
                }
            };
            let (s, p) = done?.consume();
            stream = s;
            settings = p;
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_limits_from_the_file() {
        let mut problems = Vec::new();
        // Defaults follow the open-file limit: half of it, an eighth of that per client.
        let l = ClientLimits::from_file(&ClientFile::default(), Some(96), &mut problems);
        assert_eq!((l.max_connections, l.max_connections_per_client), (48, 6));
        let l = ClientLimits::from_file(&ClientFile::default(), Some(1 << 20), &mut problems);
        assert_eq!(
            (l.max_connections, l.max_connections_per_client),
            (16384, 256)
        );
        let l = ClientLimits::from_file(&ClientFile::default(), None, &mut problems);
        assert_eq!(l, ClientLimits::default());
        assert!(problems.is_empty(), "{problems:?}");
        // Values given are used; out-of-range ones are reported, each by its key.
        let f = ClientFile {
            header_read_timeout_ms: Some(2500),
            keepalive_idle_timeout_ms: Some(50),
            body_read_timeout_ms: Some(4_000_000),
            send_timeout_ms: None,
            max_connections: Some(0),
            max_connections_per_client: Some(0),
        };
        let l = ClientLimits::from_file(&f, Some(1000), &mut problems);
        assert_eq!(l.header_read_timeout, Duration::from_millis(2500));
        assert_eq!(problems.len(), 4, "{problems:?}");
        for key in [
            "keepalive_idle_timeout_ms",
            "body_read_timeout_ms",
            "max_connections:",
            "max_connections_per_client",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key}: {problems:?}"
            );
        }
    }
}

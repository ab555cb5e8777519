//! HTTPS for the admin listener: each TCP connection's handshake runs on its own task under
//! a deadline, and finished TLS streams are handed to axum through a bounded queue, so a
//! slow or silent client never holds up another's handshake.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long an admin client may take to finish its handshake.
pub const ADMIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait in the kernel's backlog.
pub const ADMIN_MAX_HANDSHAKES: usize = 64;

/// An axum listener yielding admin connections whose TLS handshake is done.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Start accepting on `listener`; handshakes run on the current runtime.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(ADMIN_MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(TlsListener { local, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(ADMIN_MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("admin listener: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(ADMIN_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => log::debug!("admin TLS handshake from {peer} failed: {e}"),
                Err(_) => log::debug!("admin TLS handshake from {peer} timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends with the runtime; wait for shutdown meanwhile.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::settings::{admin_server_config, certified_key, CertFiles, MinVersion};
    use realmgate_table::test_certs::TestCa;

    #[tokio::test]
    async fn admin_serves_https_and_a_silent_client_holds_up_no_one() {
        let ca = TestCa::new("admin CA");
        let leaf = ca.leaf(&["admin.test"]);
        let dir = std::env::temp_dir().join(format!(
            "realmgate-admin-tls-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = CertFiles {
            cert_file: dir.join("a.crt"),
            key_file: dir.join("a.key"),
        };
        std::fs::write(&files.cert_file, &leaf.cert_pem).expect("cert");
        std::fs::write(&files.key_file, &leaf.key_pem).expect("key");
        let key = Arc::new(certified_key(&files).expect("admin certificate"));
        let config = Arc::new(admin_server_config(key, MinVersion::Tls12).expect("config"));
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let listener = TlsListener::new(tcp, config).expect("listener");
        let addr = axum::serve::Listener::local_addr(&listener).expect("addr");
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        // A client that connects and says nothing does not block the next one.
        let _silent = TcpStream::connect(addr).await.expect("connect");
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"))
            .resolve("admin.test", addr)
            .build()
            .expect("client");
        let r = client
            .get(format!("https://admin.test:{}/healthz", addr.port()))
            .send()
            .await
            .expect("https");
        assert_eq!(r.status(), 200);
        // Plain HTTP on the HTTPS admin port gets no answer.
        let plain = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        assert!(plain
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

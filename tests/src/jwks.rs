//! A realm stand-in on loopback for the JWT tests: serves a JWKS whose keys a test swaps at
//! will, counts every request by path, and can go away and come back (a real HTTP server on a
//! real socket; the tests against a real Keycloak live in `auth_keycloak.rs`).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Inner {
    /// JWKS documents by path.
    docs: HashMap<String, Value>,
    hits: HashMap<String, usize>,
    /// Answer 503 to everything (a realm that is down but still accepts connections).
    failing: bool,
}

/// A running JWKS server. Dropping it stops it.
pub struct JwksServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl JwksServer {
    pub async fn start() -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("jwks server: bind");
        let addr = listener.local_addr().expect("local_addr");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let task = tokio::spawn(serve(listener, Arc::clone(&inner)));
        JwksServer {
            addr,
            inner,
            task: Mutex::new(Some(task)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serve `{"keys": keys}` at `path`.
    pub fn set_keys(&self, path: &str, keys: Vec<Value>) {
        self.lock()
            .docs
            .insert(path.to_owned(), json!({ "keys": keys }));
    }

    /// Requests seen at `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().hits.get(path).copied().unwrap_or(0)
    }

    /// Requests seen at any path.
    pub fn total_hits(&self) -> usize {
        self.lock().hits.values().sum()
    }

    /// Answer 503 to everything (`true`) or serve again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Stop accepting connections.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: tokio::net::TcpListener, inner: Arc<Mutex<Inner>>) {
    let app = Router::new().fallback(handle).with_state(inner);
    let _ = axum::serve(listener, app).await;
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    *inner.hits.entry(path.clone()).or_default() += 1;
    if inner.failing {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match inner.docs.get(&path) {
        Some(doc) => (
            [
                ("content-type", "application/json"),
                ("cache-control", "no-cache"),
            ],
            doc.to_string(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

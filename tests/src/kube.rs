//! A real Kubernetes API server for a test: `kube-apiserver` and `etcd` started by
//! `tests/setup/kubernetes.sh` (built once from the Go module proxy) with their state in the
//! test's own directory, so tests running in parallel share nothing.
//!
//! realmctl reaches it through a loopback proxy of ours that forwards every request as is and
//! records it (method, path, query, content type, JSON body), and that can be told to answer
//! `500` to everything (or to some paths), to drop every connection (the server looks
//! unreachable), or to cut the open watches and answer the next ones with an expired
//! resourceVersion (`410 Gone`): faults the real server cannot be made to produce on
//! demand. Objects are read back from the real server, never from the proxy. Besides the
//! admin, the server knows a user that RBAC grants nothing ([`Kube::kubeconfig_limited`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request realmctl sent, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

/// What the proxy shares with the test.
pub struct Inner {
    pub requests: Mutex<Vec<Recorded>>,
    /// Answer 500 to everything while set (nothing reaches the real server).
    pub fail: AtomicBool,
    /// Answer 500 to requests whose path contains this (e.g. `/ingresses/`) while set.
    pub fail_paths: Mutex<Option<String>>,
    /// Drop every connection while set: the API server looks unreachable.
    pub cut: Arc<AtomicBool>,
    /// Watch requests still to be answered with an expired-version error (410).
    expire_watches: AtomicUsize,
    /// Bumped to end every watch stream open through the proxy.
    cut_watches: tokio::sync::watch::Sender<u64>,
    server: String,
    client: reqwest::Client,
}

/// A running API server, its proxy, and an admin client for the test.
pub struct Kube {
    /// The proxy's address: what realmctl's kubeconfig names.
    pub addr: SocketAddr,
    pub state: Arc<Inner>,
    token: String,
    /// A user with no RBAC rule at all (`tokens.csv`'s second line).
    limited_token: String,
    dir: crate::TempDir,
    task: tokio::task::JoinHandle<()>,
}

fn script() -> PathBuf {
    crate::workspace_root().join("tests/setup/kubernetes.sh")
}

/// `server:` and `token:` of the kubeconfig the script writes.
fn kubeconfig_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("kubeconfig without {key}"))
}

impl Kube {
    /// Start a fresh API server (a few seconds) with the namespaces given created, and the
    /// proxy in front of it.
    pub async fn start(namespaces: &[&str]) -> Kube {
        // The script picks free ports and then binds them: a parallel test may take one in
        // between (etcd's, say), and the API server then fails to start. Like the gateway
        // harness, start again on fresh ports.
        let mut attempt = 1;
        let dir = loop {
            let dir = crate::TempDir::new("kube");
            let state_dir = dir.path().to_owned();
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(script())
                    .arg("start")
                    .arg(&state_dir)
                    .output()
            })
            .await
            .expect("join")
            .expect("run tests/setup/kubernetes.sh");
            if out.status.success() {
                break dir;
            }
            let _ = std::process::Command::new(script())
                .arg("stop")
                .arg(dir.path())
                .status();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(attempt < 3, "kubernetes.sh start: {stderr}");
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            eprintln!("kubernetes.sh start failed ({tail:?}); starting again on fresh ports");
            attempt += 1;
        };
        let kubeconfig = std::fs::read_to_string(dir.join("kubeconfig")).expect("kubeconfig");
        // Stopped (and its directory removed) when the test's `Kube` drops.
        let server = kubeconfig_field(&kubeconfig, "server:");
        let token = kubeconfig_field(&kubeconfig, "token:");
        let ca = std::fs::read(dir.join("ca.crt")).expect("ca.crt");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
            .build()
            .expect("client");
        let limited_token = std::fs::read_to_string(dir.join("tokens.csv"))
            .expect("tokens.csv")
            .lines()
            .find_map(|l| l.strip_suffix(",limited,limited-uid").map(str::to_owned))
            .expect("the limited user's token in tokens.csv");
        let state = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
            fail_paths: Mutex::new(None),
            cut: Arc::new(AtomicBool::new(false)),
            expire_watches: AtomicUsize::new(0),
            cut_watches: tokio::sync::watch::channel(0).0,
            server,
            client,
        });
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = CuttingListener {
            inner: listener,
            cut: Arc::clone(&state.cut),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let kube = Kube {
            addr,
            state,
            token,
            limited_token,
            dir,
            task,
        };
        for ns in namespaces {
            let (st, v) = kube
                .admin(
                    Method::POST,
                    "/api/v1/namespaces",
                    Some(
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    ),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "namespace {ns}: {v}");
        }
        kube
    }

    /// A kubeconfig for realmctl: the proxy, the admin token.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_with(&self.token)
    }

    /// A kubeconfig through the proxy for a user that RBAC grants nothing (every call but
    /// discovery is 403).
    pub fn kubeconfig_limited(&self) -> String {
        self.kubeconfig_with(&self.limited_token)
    }

    fn kubeconfig_with(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\ncurrent-context: test\n",
            self.addr, token
        )
    }

    /// The same kubeconfig with another bearer token (a ServiceAccount's, say).
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig().replace(&self.token, token)
    }

    /// The state directory (CA certificate `ca.crt`, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A request to the real server as its admin, past the proxy (not recorded).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .state
            .client
            .request(method, format!("{}{path}", self.state.server))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API server request");
        let status = resp.status();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Server-side apply of one object (JSON is YAML) as field manager `realmgate-tests`, with
    /// strict field validation: an unknown or misspelt field is an error, not a warning.
    pub async fn apply(&self, path: &str, object: &Value) -> (StatusCode, Value) {
        let resp = self
            .state
            .client
            .patch(format!(
                "{}{path}?fieldManager=realmgate-tests&fieldValidation=Strict&force=true",
                self.state.server
            ))
            .bearer_auth(&self.token)
            .header("content-type", "application/apply-patch+yaml")
            .body(object.to_string())
            .send()
            .await
            .expect("API server request");
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// An Ingress as the real server holds it.
    pub async fn ingress(&self, ns: &str, name: &str) -> Option<Value> {
        let (st, v) = self
            .admin(
                Method::GET,
                &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}"),
                None,
            )
            .await;
        match st {
            StatusCode::OK => Some(v),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET ingress {ns}/{name}: {other} {v}"),
        }
    }

    /// How many Ingresses the namespace holds.
    pub async fn ingress_count(&self, ns: &str) -> usize {
        let (st, v) = self
            .admin(
                Method::GET,
                &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "list ingresses: {v}");
        v["items"].as_array().map_or(0, Vec::len)
    }

    /// Requests realmctl sent for this Ingress, by method.
    pub fn requests_for(&self, name: &str, method: &str) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(&format!("/ingresses/{name}")))
            .cloned()
            .collect()
    }

    /// Answer 500 to everything (`true`) or forward again (`false`).
    pub fn set_failing(&self, fail: bool) {
        self.state.fail.store(fail, Ordering::SeqCst);
    }

    /// Answer 500 only to requests whose path contains `fragment` (`None`: forward all).
    pub fn set_failing_paths(&self, fragment: Option<&str>) {
        *self.state.fail_paths.lock().expect("lock") = fragment.map(str::to_owned);
    }

    /// Drop every connection, open or new (`true`): to a client the API server is
    /// unreachable (a connection reset or closed before any answer), not failing.
    pub fn set_unreachable(&self, cut: bool) {
        self.state.cut.store(cut, Ordering::SeqCst);
    }
}

impl Kube {
    /// End every watch open through the proxy, and answer the next `n` watch requests the
    /// way the real server does when the resourceVersion asked for is compacted away: a
    /// watch stream whose one event is an `ERROR` with a `410 Expired` Status. A client that
    /// handles it lists again.
    pub fn expire_watches(&self, n: usize) {
        self.state.expire_watches.store(n, Ordering::SeqCst);
        self.state.cut_watches.send_modify(|g| *g += 1);
    }

    /// Every request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }
}

impl Recorded {
    /// A watch (`?watch=true` or `?watch=1`), as opposed to a list or a get.
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
    }
}

impl Drop for Kube {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::process::Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

async fn forward(
    State(s): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        content_type: content_type.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let watch = recorded.is_watch();
    s.requests.lock().expect("lock").push(recorded);
    if watch
        && s.expire_watches
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let event = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure",
            "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410}});
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            format!("{event}\n"),
        )
            .into_response();
    }
    let mut cut = s.cut_watches.subscribe();
    let path_fails = s
        .fail_paths
        .lock()
        .expect("lock")
        .as_deref()
        .is_some_and(|f| uri.path().contains(f));
    if s.fail.load(Ordering::SeqCst) || path_fails {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "the test's proxy is told to fail",
            "reason": "InternalError", "code": 500});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(status)).into_response();
    }
    let target = format!(
        "{}{}",
        s.server,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut req = s.client.request(method, target).body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            req = req.header(name, value);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = HeaderMap::new();
            for (name, value) in resp.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "connection" | "transfer-encoding"
                ) {
                    out.insert(name.clone(), value.clone());
                }
            }
            // Streamed: a watch stays open as long as the server keeps it, or until the test
            // cuts it.
            let cut = async move {
                if watch {
                    let _ = cut.changed().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let body = futures_util::StreamExt::take_until(resp.bytes_stream(), cut);
            (status, out, axum::body::Body::from_stream(body)).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("API server: {e}")).into_response(),
    }
}

/// The proxy's listener: while `cut` is set, new connections are closed at once and open ones
/// fail their next read or write, so the client sees its connection reset.
struct CuttingListener {
    inner: tokio::net::TcpListener,
    cut: Arc<AtomicBool>,
}

impl axum::serve::Listener for CuttingListener {
    type Io = CutStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CutStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok(_) if self.cut.load(Ordering::SeqCst) => {} // dropped: closed at once
                Ok((stream, addr)) => {
                    let cut = Arc::clone(&self.cut);
                    return (CutStream { stream, cut }, addr);
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

struct CutStream {
    stream: tokio::net::TcpStream,
    cut: Arc<AtomicBool>,
}

impl CutStream {
    fn check(&self) -> std::io::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            Err(std::io::ErrorKind::ConnectionReset.into())
        } else {
            Ok(())
        }
    }
}

impl tokio::io::AsyncRead for CutStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Err(e) = self.check() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CutStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Err(e) = self.check() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

//! A loopback fake of the Kubernetes API server — the one fake the tests allow, because no
//! API server can run on the test machines. It speaks real Kubernetes JSON for what
//! realmctl's `kube` client uses on networking.k8s.io/v1 Ingresses (GET, server-side apply
//! PATCH with `application/apply-patch+yaml`, DELETE, 404 `Status` objects) and records every
//! request so tests can check what was sent.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

#[derive(Default)]
pub struct Inner {
    pub objects: Mutex<BTreeMap<(String, String), Value>>,
    pub requests: Mutex<Vec<Recorded>>,
    /// Answer 500 to everything while set.
    pub fail: AtomicBool,
    version: AtomicU64,
}

pub struct KubeFake {
    pub addr: SocketAddr,
    pub state: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl KubeFake {
    pub async fn start() -> KubeFake {
        let state = Arc::new(Inner::default());
        let app = Router::new()
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}",
                any(ingress),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KubeFake { addr, state, task }
    }

    /// A kubeconfig pointing at the fake.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.addr
        )
    }

    pub fn object(&self, ns: &str, name: &str) -> Option<Value> {
        self.state
            .objects
            .lock()
            .expect("lock")
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn count(&self) -> usize {
        self.state.objects.lock().expect("lock").len()
    }

    /// Requests naming this Ingress, by method.
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
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

async fn ingress(
    State(s): State<Arc<Inner>>,
    method: Method,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests.lock().expect("lock").push(Recorded {
        method: method.to_string(),
        path: format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}"),
        query: query.clone(),
        content_type: content_type.clone(),
        body: parsed.clone(),
    });
    if s.fail.load(Ordering::SeqCst) {
        return status(500, "InternalError", "the fake is told to fail".into());
    }
    let key = (ns.clone(), name.clone());
    let not_found = || {
        status(
            404,
            "NotFound",
            format!("ingresses.networking.k8s.io \"{name}\" not found"),
        )
    };
    let mut objects = s.objects.lock().expect("lock");
    match method.as_str() {
        "GET" => match objects.get(&key) {
            Some(o) => Json(o.clone()).into_response(),
            None => not_found(),
        },
        "PATCH" => {
            if content_type != "application/apply-patch+yaml" {
                return status(415, "UnsupportedMediaType", content_type);
            }
            if !query.contains_key("fieldManager") {
                return status(422, "Invalid", "fieldManager is required for apply".into());
            }
            let v = s.version.fetch_add(1, Ordering::SeqCst) + 1;
            let existed = objects.get(&key).cloned();
            let mut obj = parsed;
            obj["metadata"]["resourceVersion"] = json!(v.to_string());
            obj["metadata"]["uid"] = existed.as_ref().map_or_else(
                || json!(format!("uid-{name}-{v}")),
                |e| e["metadata"]["uid"].clone(),
            );
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            objects.insert(key, obj.clone());
            let code = if existed.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (code, Json(obj)).into_response()
        }
        "DELETE" => match objects.remove(&key) {
            Some(_) => status(200, "", format!("deleted {name}")),
            None => not_found(),
        },
        other => status(405, "MethodNotAllowed", other.to_owned()),
    }
}

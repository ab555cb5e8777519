//! The admin listener: table push and pull (bearer token), health, readiness and metrics.
//! Loopback by default; never on the data-plane port.

mod pull;
mod redact;
pub use pull::ControlPull;
pub use redact::{redacted_table, REDACTED};

use crate::snapshot::{ApplyError, Encoding, Store};
use crate::tls::admin::TlsListener;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// How many authenticated admin requests run at once; more get 503 at once rather than
/// queueing table-sized bodies in memory.
pub const MAX_ADMIN_IN_FLIGHT: usize = 4;

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<Store>,
    /// SHA-256 of the token: comparing digests is constant-time and hides the length.
    token_digest: Option<[u8; 32]>,
    in_flight: Arc<Semaphore>,
}

impl AdminState {
    pub fn new(store: Arc<Store>, token: Option<&str>) -> AdminState {
        AdminState {
            store,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            in_flight: Arc::new(Semaphore::new(MAX_ADMIN_IN_FLIGHT)),
        }
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = self.token_digest else {
            return false;
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| crate::headers::bearer(v.as_bytes()))
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given).into();
        given.ct_eq(&expected).into()
    }
}

/// The admin API is table work: each request's thread goes to `gateway.table_cpus` first
/// (again each time: the process may have been pinned from outside since), a scrape of
/// `/metrics` or a probe of `/readyz` as much as a push.
async fn on_table_cpus(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    s.store.table_cpus().enter();
    next.run(req).await
}

/// Runs before any extractor of the guarded routes: the token is checked from the headers
/// alone, so an unauthenticated body is never read (nor buffered), and a bounded number of
/// authenticated requests run at once.
async fn guard(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    if !s.authorised(req.headers()) {
        return unauthorised();
    }
    let Ok(_permit) = s.in_flight.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"error": "busy", "message": "too many admin requests at once; retry"})),
        )
            .into_response();
    };
    next.run(req).await
}

/// The admin API, testable without a socket.
pub fn router(state: AdminState, max_table_bytes: usize) -> Router {
    let guarded = Router::new()
        .route(
            "/v1/table",
            get(get_table).put(put_table).patch(patch_table),
        )
        .route_layer(from_fn_with_state(state.clone(), guard));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_table_bytes))
        .layer(from_fn_with_state(state.clone(), on_table_cpus))
        .with_state(state)
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"error": "unauthorized", "message": "missing or wrong admin bearer token"})),
    )
        .into_response()
}

/// The encodings `PUT /v1/table` takes, by `Content-Type`: JSON (the contract; also what a
/// push without a `Content-Type` is read as) and the binary encoding of the same table.
/// `GET /v1/table` lists them, so realmctl knows which it may send.
pub const TABLE_ENCODINGS: [&str; 2] = ["application/json", realmgate_table::binary::MEDIA_TYPE];

/// `PUT /v1/table`: a full table, as JSON or in the binary encoding.
async fn put_table(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(realmgate_table::binary::is_media_type);
    let encoding = if binary {
        Encoding::Binary
    } else {
        Encoding::Json
    };
    let store = Arc::clone(&s.store);
    applied(
        tokio::task::spawn_blocking(move || store.apply_encoded(body, encoding)).await,
        "table",
    )
}

/// `PATCH /v1/table`: a delta (`realmgate_table::delta::Delta`) to the table in force.
async fn patch_table(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"error": "unsupported_media_type", "message": "a delta is sent as application/json"})),
        )
            .into_response();
    }
    let store = Arc::clone(&s.store);
    applied(
        tokio::task::spawn_blocking(move || store.apply_delta(body)).await,
        "delta",
    )
}

/// The answer to a table or delta push.
fn applied(
    result: Result<Result<Arc<crate::snapshot::Snapshot>, ApplyError>, tokio::task::JoinError>,
    what: &str,
) -> Response {
    let applied = match result {
        Ok(r) => r,
        Err(e) => {
            log::error!("{what} apply task failed: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "internal"})),
            )
                .into_response();
        }
    };
    match applied {
        Ok(snap) => {
            log::info!("applied {what}: version {} ({})", snap.version, snap.digest);
            // A full table's state digest is worked out off the push's path: see GET.
            let mut answer = json!({"version": snap.version, "digest": snap.digest});
            if !snap.state_digest.is_empty() {
                answer["state_digest"] = json!(snap.state_digest);
            }
            Json(answer).into_response()
        }
        Err(ApplyError::Invalid(problems)) => {
            log::warn!("rejected invalid {what}: {} problem(s)", problems.len());
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let error = if what == "delta" {
                "invalid_delta"
            } else {
                "invalid_table"
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": error, "problems": problems})),
            )
                .into_response()
        }
        Err(ApplyError::NotNewer { current, offered }) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "version_not_newer", "current": current, "offered": offered})),
        )
            .into_response(),
        Err(ApplyError::WrongBase { current, base }) => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": "wrong_base",
                "version": current,
                "base": base,
                "message": format!("this delta is for version {base}; version {current} is in force: send a delta from {current} or a full table"),
            })),
        )
            .into_response(),
        Err(ApplyError::DigestMismatch { expected, computed }) => {
            log::warn!("refused a delta: it gives state {computed}, realmctl expects {expected}");
            (
                StatusCode::CONFLICT,
                Json(json!({
                    "error": "digest_mismatch",
                    "expected": expected,
                    "computed": computed,
                    "message": "the delta gives another table here than at realmctl: send a full table",
                })),
            )
                .into_response()
        }
        Err(e @ ApplyError::JournalFull { .. }) => {
            log::error!("refused a delta: {}", crate::snapshot::describe(&e));
            (
                StatusCode::CONFLICT,
                Json(json!({"error": "journal_full", "message": "the delta journal is at its bound: send a full table"})),
            )
                .into_response()
        }
        Err(ApplyError::Persist(e)) => {
            log::error!("could not persist {what}: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "persist_failed", "message": "the change could not be written to the state directory; the previous table stays in force"})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
struct TableQuery {
    full: Option<String>,
}

async fn get_table(State(s): State<AdminState>, Query(q): Query<TableQuery>) -> Response {
    let Some(snap) = s.store.current() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no_table", "table_encodings": TABLE_ENCODINGS})),
        )
            .into_response();
    };
    if q.full.as_deref().is_some_and(|v| v == "1" || v == "true") {
        // The document as received, or after deltas the table in force written out (off
        // the runtime's threads: a million tenants take a while).
        let doc = match snap.raw.clone() {
            Some(raw) => raw,
            None => {
                let store = Arc::clone(&s.store);
                tokio::task::spawn_blocking(move || store.document())
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }
        };
        // Private keys and login secrets never leave by a GET.
        return (
            [(header::CONTENT_TYPE, "application/json")],
            redacted_table(&doc),
        )
            .into_response();
    }
    let certificates: Vec<serde_json::Value> = snap
        .certs
        .sorted()
        .into_iter()
        .map(|c| {
            json!({
                "name": &*c.name,
                "hosts": c.cert.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "not_after": realmgate_table::validate::rfc3339(c.cert.not_after),
                "fingerprint": c.cert.fingerprint_hex(),
                "expired": c.cert.not_after < crate::auth::unix_now(),
            })
        })
        .collect();
    let state_digest = if snap.state_digest.is_empty() {
        let store = Arc::clone(&s.store);
        tokio::task::spawn_blocking(move || store.state_digest())
            .await
            .ok()
            .flatten()
    } else {
        Some(snap.state_digest.clone())
    };
    Json(json!({
        "version": snap.version,
        "digest": snap.digest,
        "state_digest": state_digest,
        "certificates": certificates,
        "table_encodings": TABLE_ENCODINGS,
    }))
    .into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.store.current() {
        Some(snap) => Json(json!({"ready": true, "version": snap.version})).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "no routing table loaded"})),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let m = s.store.metrics();
    m.upstream_endpoints.reset();
    if let Some(snap) = s.store.current() {
        for pool in snap.pools.iter() {
            let healthy = pool.healthy_count();
            let total = pool.endpoint_count();
            m.upstream_endpoints
                .with_label_values(&[&pool.name, "healthy"])
                .set(healthy as i64);
            m.upstream_endpoints
                .with_label_values(&[&pool.name, "unhealthy"])
                .set(total.saturating_sub(healthy) as i64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
        .into_response()
}

/// Runs the admin router on a listener bound at start-up (so a taken port fails the start).
pub struct AdminService {
    listener: Mutex<Option<std::net::TcpListener>>,
    router: Router,
    /// Serve HTTPS with this configuration (`gateway.admin_tls`).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl AdminService {
    pub fn new(listener: std::net::TcpListener, router: Router) -> AdminService {
        AdminService {
            listener: Mutex::new(Some(listener)),
            router,
            tls: None,
        }
    }

    /// Serve HTTPS instead of plain HTTP.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ServerConfig>>) -> AdminService {
        self.tls = tls;
        self
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let listener = match std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
        {
            Ok(l) => l,
            Err(e) => {
                log::error!("admin listener: {e}");
                return;
            }
        };
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        let served = match &self.tls {
            None => {
                axum::serve(listener, self.router.clone())
                    .with_graceful_shutdown(stop)
                    .await
            }
            Some(config) => match TlsListener::new(listener, Arc::clone(config)) {
                Ok(l) => {
                    axum::serve(l, self.router.clone())
                        .with_graceful_shutdown(stop)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = served {
            log::error!("admin listener stopped: {e}");
        }
    }
}

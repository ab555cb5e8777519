//! The recording and fault-injecting proxy the certificate tests put between realmctl and
//! Pebble (faults Pebble cannot produce on demand: refusals, rate limits, an unreachable CA,
//! challenges held in flight), and what it counts.

use super::acme::Pebble;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, StatusCode as AxumStatus, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The recording and fault-injecting proxy in front of Pebble: TLS with Pebble's listener
/// certificate (so realmctl's `directory_ca_file` trusts both), every request forwarded over
/// HTTP/1.1 with its own Host (Pebble builds its URLs, and checks each JWS `url`, from it, so
/// every later request comes back here); orders the CA created (201 to new-order) counted; `down` answers 503 with a non-ACME body to everything.
/// `refuse_orders` (a problem document with its `status`) refuses every new-order while set,
/// as a CA refuses for CAA or a rejected identifier; `hold_challenges` holds each "challenge
/// ready" request (Pebble's `/chalZ/`) while set, so a test acts while an order is in flight.
pub struct FaultProxy {
    pub directory_url: String,
    pub new_orders: Arc<AtomicUsize>,
    /// Answers that refused a nonce (`badNonce`), which the client must retry.
    pub bad_nonces: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
    /// The next this-many new-order requests are refused as a rate-limited CA would refuse
    /// them (429, a `rateLimited` problem, `Retry-After: 2`).
    pub rate_limit_orders: Arc<AtomicUsize>,
    pub refuse_orders: Arc<Mutex<Option<Value>>>,
    /// New-order requests refused by `refuse_orders` or `rate_limit_orders`.
    pub refused_orders: Arc<AtomicUsize>,
    pub hold_challenges: Arc<AtomicBool>,
    /// "Challenge ready" requests held so far.
    pub held_challenges: Arc<AtomicUsize>,
    /// Created orders whose request named a certificate they replace (ARI `replaces`).
    pub replacing_orders: Arc<AtomicUsize>,
    /// Renewal information (ARI) the CA answered.
    pub renewal_infos: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    new_orders: Arc<AtomicUsize>,
    bad_nonces: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    rate_limit_orders: Arc<AtomicUsize>,
    refuse_orders: Arc<Mutex<Option<Value>>>,
    refused_orders: Arc<AtomicUsize>,
    hold_challenges: Arc<AtomicBool>,
    held_challenges: Arc<AtomicUsize>,
    replacing_orders: Arc<AtomicUsize>,
    renewal_infos: Arc<AtomicUsize>,
}

/// Whether a JWS request body's payload has a `replaces` field.
fn names_replaces(body: &[u8]) -> bool {
    use base64::Engine as _;
    let payload = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["payload"].as_str().map(str::to_owned))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok());
    payload.is_some_and(|p| p.get("replaces").is_some())
}

async fn forward(
    State(s): State<ProxyState>,
    method: AxumMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if s.down.load(Ordering::SeqCst) {
        return (AxumStatus::SERVICE_UNAVAILABLE, "fault proxy: CA down").into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let new_order = method == AxumMethod::POST && uri.path() == "/order-plz";
    if method == AxumMethod::POST && uri.path().starts_with("/chalZ/") {
        if s.hold_challenges.load(Ordering::SeqCst) {
            s.held_challenges.fetch_add(1, Ordering::SeqCst);
        }
        while s.hold_challenges.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let refusal = s.refuse_orders.lock().map(|r| r.clone()).unwrap_or(None);
    if let Some(problem) = refusal.filter(|_| new_order) {
        s.refused_orders.fetch_add(1, Ordering::SeqCst);
        let status = problem["status"].as_u64().unwrap_or(403) as u16;
        return (
            AxumStatus::from_u16(status).unwrap_or(AxumStatus::FORBIDDEN),
            [("content-type", "application/problem+json")],
            problem.to_string(),
        )
            .into_response();
    }
    if new_order {
        let limited = s
            .rate_limit_orders
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if limited {
            s.refused_orders.fetch_add(1, Ordering::SeqCst);
            let problem = serde_json::json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "fault proxy: too many new orders recently",
                "status": 429,
            });
            return (
                AxumStatus::TOO_MANY_REQUESTS,
                [
                    ("content-type", "application/problem+json"),
                    ("retry-after", "2"),
                ],
                problem.to_string(),
            )
                .into_response();
        }
    }
    let replacing = new_order && names_replaces(&body);
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.upstream))
        .body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            // Orders the CA created: a new-order refused for its nonce (and retried) is not one.
            if new_order && status == reqwest::StatusCode::CREATED {
                s.new_orders.fetch_add(1, Ordering::SeqCst);
                if replacing {
                    s.replacing_orders.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Pebble's ARI resource: `/draft-ietf-acme-ari-NN/renewalInfo/<id>`.
            if status.is_success() && path.contains("renewalInfo") {
                s.renewal_infos.fetch_add(1, Ordering::SeqCst);
            }
            let mut out = HeaderMap::new();
            for (k, v) in r.headers() {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    out.append(k, v.clone());
                }
            }
            let body = r.bytes().await.unwrap_or_default();
            if String::from_utf8_lossy(&body).contains("urn:ietf:params:acme:error:badNonce") {
                s.bad_nonces.fetch_add(1, Ordering::SeqCst);
            }
            (status, out, body).into_response()
        }
        Err(e) => (AxumStatus::BAD_GATEWAY, format!("fault proxy: {e}")).into_response(),
    }
}

impl FaultProxy {
    pub async fn start(pebble: &Pebble) -> FaultProxy {
        let ca = std::fs::read(&pebble.listener_ca).expect("listener CA");
        let upstream = pebble.directory_url.trim_end_matches("/dir").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = ProxyState {
            upstream,
            // HTTP/2 would carry the URL's authority, not the Host header.
            http: reqwest::Client::builder()
                .http1_only()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
                .build()
                .expect("client"),
            new_orders: Arc::new(AtomicUsize::new(0)),
            bad_nonces: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            rate_limit_orders: Arc::new(AtomicUsize::new(0)),
            refuse_orders: Arc::default(),
            refused_orders: Arc::default(),
            hold_challenges: Arc::default(),
            held_challenges: Arc::default(),
            replacing_orders: Arc::new(AtomicUsize::new(0)),
            renewal_infos: Arc::new(AtomicUsize::new(0)),
        };
        let tls = realmctl::tls::server_config(
            &pebble.dir.join("listener.pem"),
            &pebble.dir.join("listener.key"),
        )
        .expect("proxy TLS");
        let listener = realmctl::tls::TlsListener::new(listener, tls).expect("tls listener");
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            directory_url: format!("https://{addr}/dir"),
            new_orders: state.new_orders,
            bad_nonces: state.bad_nonces,
            down: state.down,
            rate_limit_orders: state.rate_limit_orders,
            refuse_orders: state.refuse_orders,
            refused_orders: state.refused_orders,
            hold_challenges: state.hold_challenges,
            held_challenges: state.held_challenges,
            replacing_orders: state.replacing_orders,
            renewal_infos: state.renewal_infos,
        }
    }
}

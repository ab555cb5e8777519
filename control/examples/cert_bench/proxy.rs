//! The timing proxy between realmctl and Pebble: every ACME request forwarded as it came
//! (HTTP/1.1, its own Host, so Pebble's URLs keep pointing here), timed at the proxy (whole
//! request) and upstream (Pebble's answer alone), and tied to the host it is for by following
//! the URLs Pebble hands out (new order → order, authorizations, finalize, certificate;
//! authorization → challenges).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which ACME resource a request was for (Pebble's paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Directory,
    Nonce,
    Account,
    NewOrder,
    Order,
    Authz,
    Challenge,
    Finalize,
    Certificate,
    Revoke,
    RenewalInfo,
    Other,
}

impl Kind {
    fn of(path: &str) -> Kind {
        let table = [
            ("/dir", Kind::Directory),
            ("/nonce-plz", Kind::Nonce),
            ("/sign-me-up", Kind::Account),
            ("/my-account/", Kind::Account),
            ("/order-plz", Kind::NewOrder),
            ("/my-order/", Kind::Order),
            ("/authZ/", Kind::Authz),
            ("/chalZ/", Kind::Challenge),
            ("/finalize-order/", Kind::Finalize),
            ("/certZ/", Kind::Certificate),
            ("/revoke-cert", Kind::Revoke),
            ("/draft-ietf-acme-ari", Kind::RenewalInfo),
        ];
        table
            .iter()
            .find(|(p, _)| path.starts_with(p))
            .map_or(Kind::Other, |(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::Nonce => "new nonce",
            Kind::Account => "account",
            Kind::NewOrder => "new order",
            Kind::Order => "order poll",
            Kind::Authz => "authorization",
            Kind::Challenge => "challenge ready",
            Kind::Finalize => "finalize",
            Kind::Certificate => "certificate download",
            Kind::Revoke => "revoke",
            Kind::RenewalInfo => "renewal info (ARI)",
            Kind::Other => "other",
        }
    }
}

/// One request through the proxy.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    /// The host the order is for, when the URL leads back to one.
    pub host: Option<String>,
    pub start: Instant,
    pub end: Instant,
    /// Pebble's part: from sending the request upstream to its body read.
    pub upstream: Duration,
    /// The order's `status` in the answer (new order, order poll, finalize).
    pub order_status: Option<String>,
}

#[derive(Default)]
struct Seen {
    events: Vec<Event>,
    /// URL path → host.
    hosts: HashMap<String, String>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

/// The running proxy; `directory_url` is what realmctl is configured with.
pub struct TimingProxy {
    pub directory_url: String,
    seen: Arc<Mutex<Seen>>,
}

impl TimingProxy {
    /// In front of Pebble at `directory_url`, with Pebble's own listener certificate (so the
    /// CA file realmctl trusts covers both).
    pub async fn start(
        pebble_directory: &str,
        listener_ca: &Path,
        pebble_dir: &Path,
    ) -> Result<TimingProxy, String> {
        let ca = std::fs::read(listener_ca).map_err(|e| format!("listener CA: {e}"))?;
        let http = reqwest::Client::builder()
            .http1_only()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = ProxyState {
            upstream: pebble_directory.trim_end_matches("/dir").to_owned(),
            http,
            seen: Arc::clone(&seen),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let tls = realmctl::tls::server_config(
            &pebble_dir.join("listener.pem"),
            &pebble_dir.join("listener.key"),
        )?;
        let listener = realmctl::tls::TlsListener::new(listener, tls).map_err(|e| e.to_string())?;
        let app = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TimingProxy {
            directory_url: format!("https://{addr}/dir"),
            seen,
        })
    }

    /// Every request so far, and forget them (each scenario reads its own).
    pub fn take(&self) -> Vec<Event> {
        let mut s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut s.events)
    }
}

fn path_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| u.path().to_owned())
}

/// The first DNS identifier of a new-order request (a flattened JWS).
fn ordered_host(body: &[u8]) -> Option<String> {
    let jws: Value = serde_json::from_slice(body).ok()?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jws["payload"].as_str()?)
        .ok()?;
    let order: Value = serde_json::from_slice(&payload).ok()?;
    order["identifiers"][0]["value"].as_str().map(str::to_owned)
}

/// The URLs an answer hands out for `host`.
fn learn(seen: &mut Seen, host: &str, headers: &reqwest::header::HeaderMap, body: &Value) {
    let mut urls: Vec<&str> = Vec::new();
    if let Some(l) = headers.get("location").and_then(|v| v.to_str().ok()) {
        urls.push(l);
    }
    for key in ["finalize", "certificate"] {
        if let Some(u) = body[key].as_str() {
            urls.push(u);
        }
    }
    for list in ["authorizations", "challenges"] {
        for v in body[list].as_array().into_iter().flatten() {
            if let Some(u) = v.as_str().or_else(|| v["url"].as_str()) {
                urls.push(u);
            }
        }
    }
    for u in urls {
        if let Some(p) = path_of(u) {
            seen.hosts.insert(p, host.to_owned());
        }
    }
}

async fn forward(
    State(s): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let start = Instant::now();
    let path = uri.path().to_owned();
    let kind = Kind::of(&path);
    let host = if kind == Kind::NewOrder {
        ordered_host(&body)
    } else {
        let seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.hosts.get(&path).cloned()
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = s
        .http
        .request(method, format!("{}{target}", s.upstream))
        .body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let sent = Instant::now();
    let answer = match req.send().await {
        Ok(r) => {
            let status = r.status();
            let rheaders = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            Ok((status, rheaders, bytes))
        }
        Err(e) => Err(e),
    };
    let upstream = sent.elapsed();
    let (status, rheaders, bytes) = match answer {
        Ok(a) => a,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("timing proxy: {e}")).into_response();
        }
    };
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let order_status = matches!(kind, Kind::NewOrder | Kind::Order | Kind::Finalize)
        .then(|| json["status"].as_str().map(str::to_owned))
        .flatten();
    let mut out = HeaderMap::new();
    for (k, v) in &rheaders {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            out.append(k, v.clone());
        }
    }
    let response = (status, out, bytes).into_response();
    let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = &host {
        learn(&mut seen, h, &rheaders, &json);
    }
    seen.events.push(Event {
        kind,
        host,
        start,
        end: Instant::now(),
        upstream,
        order_status,
    });
    response
}

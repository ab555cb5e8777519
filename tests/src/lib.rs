//! Cross-process test harness: the real `realmgate` binary, real upstreams and raw clients on loopback.

// Every test owns its gateway process, its ports and its temp dir, so tests run in parallel.
// Nothing here mocks the gateway: `Gateway` spawns the binary named by `REALMGATE_BIN` (else
// `<workspace>/target/debug/realmgate`), `Upstream` is a small real HTTP/1.1 server, and
// `raw_request` speaks bytes over a `TcpStream` for requests no well-behaved client sends.

pub mod assertion;
pub mod browser;
pub mod delta;
pub mod echo;
pub mod gateway;
pub mod jwks;
pub mod keycloak;
pub mod kube;
pub mod metrics;
pub mod process;
pub mod raw;
pub mod realmctl;
pub mod scripted;
pub mod shell_browser;
pub mod table;
pub mod tls;
pub mod tls_upstream;
pub mod todos;
pub mod tokens;
pub mod upstream;

pub use echo::Echo;
pub use gateway::{Gateway, GatewayOpts, Launch};
pub use jwks::JwksServer;
pub use metrics::Metrics;
pub use process::{
    free_addrs, realmgate_bin, run_to_completion, workspace_bin, workspace_root, Finished, Proc,
    TempDir,
};
pub use raw::{get_request, raw_request, RawConn, RawResponse};
pub use realmctl::Realmctl;
pub use scripted::{Canned, Scripted, Seen};
pub use shell_browser::Browser as ShellBrowser;
pub use table::{Pool, Table};
pub use todos::Todos;
pub use tokens::TestKey;
pub use upstream::Upstream;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
///
/// Tests wait for asynchronous effects (a health check marking an endpoint down, a table
/// swap) with this instead of fixed sleeps, so they are as fast as the gateway allows.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `true` when `actual` contains everything in `expected`: equal scalars and arrays (arrays
/// element-wise), and for objects every expected key present with a containing value. Used to
/// compare a table echoed back by the gateway, which may add defaulted fields.
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| json_contains(av, ev))
        }
        (a, e) => a == e,
    }
}

/// A well-formed request id as the contract defines it: `^[A-Za-z0-9._:-]{1,128}$`.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The shape of every data-plane error (CONTRACT-NOTES): status, JSON content type,
/// `{"error": code, "message": .., "request_id": <the x-request-id header>}`.
#[doc(hidden)]
pub fn check_error(
    want_status: u16,
    want_code: &str,
    status: u16,
    content_type: Option<&str>,
    request_id: Option<&str>,
    body: &str,
) -> serde_json::Value {
    assert_eq!(
        status, want_status,
        "expected {want_status} {want_code}, got {status}: {body}"
    );
    assert!(
        content_type.is_some_and(|c| c.starts_with("application/json")),
        "error {want_code}: content-type {content_type:?}, want application/json; body {body}"
    );
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body:?}"));
    assert_eq!(v["error"], want_code, "error body: {v}");
    assert!(v["message"].is_string(), "error body lacks a message: {v}");
    let id = request_id.unwrap_or_else(|| panic!("error {want_code} lacks x-request-id; body {v}"));
    assert_eq!(
        v["request_id"], id,
        "request_id in body differs from x-request-id: {v}"
    );
    v
}
pub mod wrk;

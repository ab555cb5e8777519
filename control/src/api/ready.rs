//! `GET /readyz`: whether this realmctl may write. Unauthenticated, like `/healthz` (a
//! readiness probe carries no token): 200 `ready` when it holds the Lease or none is
//! configured, 503 with the reason otherwise (who holds the Lease, or why Kubernetes could
//! not be asked). The reason names no secret.

use super::AppState;
use crate::leadership::Leadership;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.control.fence().state() {
        Leadership::Leading => "ready\n".into_response(),
        Leadership::NotLeading { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": "not_leader", "reason": reason})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call, request, send, OPERATOR};
    use super::super::*;
    use crate::leadership::{Fence, Leadership};
    use crate::push::PushSettings;
    use crate::registry::Registry;
    use crate::server::{assemble, Wiring};
    use axum::body::Body as AxBody;
    use axum::http::Method;
    use serde_json::{json, Value};

    /// The API over a registry fenced by `fence`.
    async fn fenced_app(fence: Fence) -> Router {
        let mut registry = Registry::in_memory().await.expect("registry");
        registry.set_fence(fence);
        let state = assemble(
            registry,
            Wiring {
                operator_token: OPERATOR,
                gateway_token: None,
                gateways: &[],
                gateway_trust: Default::default(),
                push: PushSettings::default(),
                max_body_bytes: 1 << 20,
                api: ApiLimits::default(),
                provision: None,
                assertion: Default::default(),
            },
        )
        .await
        .expect("assemble");
        app(state)
    }

    async fn readyz(app: &Router) -> (StatusCode, String) {
        let (st, _, body) = send(app, request(Method::GET, "/readyz", None, AxBody::empty())).await;
        (st, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn without_the_lease_reads_answer_and_writes_are_503_not_leader() {
        let (fence, control) = Fence::closed("the Lease edge/realmctl is held by other-7");
        let app = fenced_app(fence).await;
        let (st, body) = readyz(&app).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["error"], "not_leader");
        assert!(
            v["reason"].as_str().is_some_and(|r| r.contains("other-7")),
            "{v}"
        );
        let (st, _) = call(&app, Method::GET, "/v1/upstreams", None).await;
        assert_eq!(st, StatusCode::OK, "reads go on");
        let put = || {
            call(
                &app,
                Method::PUT,
                "/v1/upstreams/app",
                Some(json!({"endpoints": ["127.0.0.1:9001"]})),
            )
        };
        let (st, v) = put().await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert_eq!(v["error"], "not_leader");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains("other-7")),
            "{v}"
        );
        assert!(
            v["details"]["reason"]
                .as_str()
                .is_some_and(|m| m.contains("other-7")),
            "{v}"
        );
        let (_, v) = call(&app, Method::GET, "/v1/upstreams", None).await;
        assert_eq!(v["upstreams"], json!([]), "nothing written: {v}");
        let (_, _, metrics) = send(
            &app,
            request(Method::GET, "/metrics", None, AxBody::empty()),
        )
        .await;
        assert!(String::from_utf8_lossy(&metrics).contains("realmctl_leader 0"));

        control.set(Leadership::Leading);
        assert_eq!(readyz(&app).await, (StatusCode::OK, "ready\n".to_owned()));
        let (st, v) = put().await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let (_, _, metrics) = send(
            &app,
            request(Method::GET, "/metrics", None, AxBody::empty()),
        )
        .await;
        assert!(String::from_utf8_lossy(&metrics).contains("realmctl_leader 1"));
    }

    #[tokio::test]
    async fn without_a_lease_configured_it_is_ready() {
        let app = fenced_app(Fence::open()).await;
        assert_eq!(readyz(&app).await, (StatusCode::OK, "ready\n".to_owned()));
    }
}

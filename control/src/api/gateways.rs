//! `/v1/gateways`: each gateway's URL, source, applied table version and last push result,
//! and where gateway discovery stands (when gateways are discovered).

use super::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/gateways", get(list))
        .route("/v1/gateways/upstreams", get(super::pool_health::list))
}

async fn list(State(s): State<AppState>) -> Response {
    let target = s.tables.borrow().as_ref().map(|c| c.version);
    let mut body = json!({"target_version": target, "gateways": s.pusher.views()});
    if let Some(d) = s.pusher.discovery() {
        body["discovery"] = json!(d);
    }
    Json(body).into_response()
}

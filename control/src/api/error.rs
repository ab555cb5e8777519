//! The API's error type and its mapping to HTTP: the one place where a failure becomes a
//! status code and a JSON body. Internal details are logged, never returned.

use crate::registry::RegistryError;
use crate::service::ServiceError;
use crate::views::{ErrorBody, ProblemView};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the session ended (signed out, timed out, or realmctl restarted): sign in again")]
    SessionEnded,
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    BadRequest(String),
    #[error("no such endpoint")]
    NoRoute,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("the routing table is not compiled yet; retry shortly")]
    TableNotReady,
    #[error("realmctl is serving as many requests as it is configured to (max_concurrent_requests); retry shortly")]
    Busy,
    #[error("too many keys minted by this caller; retry after {retry_after_s} s (key_minting in realmctl's configuration)")]
    TooManyRequests { retry_after_s: u64 },
    #[error("the table carries secrets (certificate keys, login client secrets) and realmctl serves plain http to a non-loopback address: serve realmctl over TLS (`tls:` in its configuration) and use an https control_url")]
    InsecureChannel,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, problems, details) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", vec![], None),
            ApiError::SessionEnded => (StatusCode::UNAUTHORIZED, "session_ended", vec![], None),
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                vec![],
                None,
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", vec![], None),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no_such_endpoint", vec![], None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                vec![],
                None,
            ),
            ApiError::TableNotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "table_not_ready",
                vec![],
                None,
            ),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", vec![], None),
            ApiError::InsecureChannel => (StatusCode::FORBIDDEN, "insecure_channel", vec![], None),
            ApiError::TooManyRequests { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                vec![],
                Some(json!({"retry_after_s": retry_after_s})),
            ),
            ApiError::Service(e) => match e {
                ServiceError::Invalid(problems) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    problems
                        .iter()
                        .map(|p| ProblemView {
                            at: p.at.clone(),
                            message: p.message.clone(),
                        })
                        .collect(),
                    None,
                ),
                ServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", vec![], None),
                ServiceError::Withheld { code, details, .. } => {
                    (StatusCode::NOT_FOUND, *code, vec![], Some(details.clone()))
                }
                ServiceError::Conflict { code, details, .. } => {
                    (StatusCode::CONFLICT, *code, vec![], Some(details.clone()))
                }
                ServiceError::PreconditionFailed { current } => (
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    vec![],
                    Some(json!({"revision": current})),
                ),
                ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", vec![], None),
                ServiceError::Gone(_) => (StatusCode::GONE, "gone", vec![], None),
                ServiceError::Registry(RegistryError::NotLeader(reason)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_leader",
                    vec![],
                    Some(json!({"reason": reason})),
                ),
                ServiceError::Registry(_) | ServiceError::Internal(_) => {
                    log::error!("internal error: {e}");
                    let body = ErrorBody {
                        error: "internal".into(),
                        message: "internal error; the details are in realmctl's log".into(),
                        problems: vec![],
                        details: None,
                    };
                    return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
                }
            },
        };
        let message = match &self {
            ApiError::Service(ServiceError::Invalid(p)) => {
                format!(
                    "the request has {} problem(s); every one is listed",
                    p.len()
                )
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: code.into(),
            message,
            problems,
            details,
        };
        let mut resp = (status, Json(body)).into_response();
        let retry_after = match &self {
            ApiError::Busy => Some(1),
            ApiError::Service(ServiceError::Registry(RegistryError::NotLeader(_))) => Some(2),
            ApiError::TooManyRequests { retry_after_s } => Some(*retry_after_s),
            _ => None,
        };
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

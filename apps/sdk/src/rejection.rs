//! Why a request was refused, and how: a 401 (503 when no keys can be fetched) whose JSON
//! body says what was wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `x-realmgate-assertion`: the request did not come through the gateway.
    Missing,
    /// Not a well-formed assertion (or claims that do not hang together).
    Malformed,
    /// The signature does not verify, or another algorithm than ES256.
    Forged,
    /// Signed by a key the fleet does not publish.
    UnknownKey,
    /// Past its `exp`.
    Expired,
    /// `iat` in the future, or a lifetime longer than the gateway's.
    BadTime,
    /// Minted for another pool than this app's.
    WrongAudience,
    /// Another issuer than the fleet's.
    WrongIssuer,
    /// The signed tenant is not the one `x-realmgate-tenant` names.
    TenantMismatch,
    /// No key set could be fetched yet (503: the app cannot tell).
    KeysUnavailable,
}

impl Rejection {
    /// The `error` code of the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::Missing => "assertion_missing",
            Rejection::Malformed => "assertion_malformed",
            Rejection::Forged => "assertion_signature_invalid",
            Rejection::UnknownKey => "assertion_key_unknown",
            Rejection::Expired => "assertion_expired",
            Rejection::BadTime => "assertion_time_invalid",
            Rejection::WrongAudience => "assertion_wrong_audience",
            Rejection::WrongIssuer => "assertion_wrong_issuer",
            Rejection::TenantMismatch => "assertion_tenant_mismatch",
            Rejection::KeysUnavailable => "assertion_keys_unavailable",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => "no x-realmgate-assertion: reach this app through Realmgate",
            Rejection::Malformed => "the identity assertion is malformed",
            Rejection::Forged => "the identity assertion's signature does not verify",
            Rejection::UnknownKey => "the identity assertion is signed by an unknown key",
            Rejection::Expired => "the identity assertion has expired",
            Rejection::BadTime => "the identity assertion's times are invalid",
            Rejection::WrongAudience => "the identity assertion was minted for another app",
            Rejection::WrongIssuer => "the identity assertion has another issuer",
            Rejection::TenantMismatch => {
                "the identity assertion's tenant differs from x-realmgate-tenant"
            }
            Rejection::KeysUnavailable => "the gateway's keys cannot be fetched",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Rejection::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code(), "message": self.message()});
        (self.status(), axum::Json(body)).into_response()
    }
}

//! Who is asking. By default from the gateway's signed assertion (the `realmgate-app` SDK):
//! a signed-in user of the tenant's realm, or 401. With `--trust-headers`, from the plain
//! `x-realmgate-tenant`/`-subject` headers (anonymous without a subject) — weaker: anyone who
//! reaches the app without the gateway can send them; kept for demos of the shell without a
//! realm.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use realmgate_app::{Principal, Verifier};
use std::sync::Arc;

/// How callers are identified.
#[derive(Clone)]
pub enum Identify {
    /// The signed assertion, verified.
    Assertion(Arc<Verifier>),
    /// The plain headers (weaker; see the module docs).
    TrustHeaders,
}

/// The tenant and the user, both safe to use as they are (the tenant is a DNS label).
pub struct Caller {
    pub tenant: String,
    pub subject: String,
}

const ANONYMOUS: &str = "anonymous";

/// A refused request: status, and a JSON `{"error": …, "message": …}`.
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

impl Identify {
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        match self {
            Identify::Assertion(verifier) => {
                let c = verifier
                    .verify_headers(headers)
                    .await
                    .map_err(|e| Refusal {
                        status: e.status(),
                        code: e.code(),
                        message: e.message(),
                    })?;
                let subject = match c.principal {
                    Principal::User { subject, .. } => subject,
                    Principal::Anonymous => {
                        return Err(Refusal {
                            status: StatusCode::UNAUTHORIZED,
                            code: "sign_in_required",
                            message: "todos are per user: sign in",
                        })
                    }
                    Principal::ApiKey { .. } => {
                        return Err(Refusal {
                            status: StatusCode::FORBIDDEN,
                            code: "user_required",
                            message: "todos are per user: an API key has none",
                        })
                    }
                };
                checked(c.tenant.as_str(), subject)
            }
            Identify::TrustHeaders => {
                let tenant = headers
                    .get("x-realmgate-tenant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let subject = headers
                    .get("x-realmgate-subject")
                    .and_then(|v| v.to_str().ok())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(ANONYMOUS);
                checked(tenant, subject.to_owned())
            }
        }
    }
}

fn checked(tenant: &str, subject: String) -> Result<Caller, Refusal> {
    if !is_tenant_id(tenant) {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "no_tenant",
            message: "no tenant: reach this app through Realmgate",
        });
    }
    if subject.is_empty() || subject.len() > 255 {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "bad_subject",
            message: "the subject must be 1-255 bytes",
        });
    }
    Ok(Caller {
        tenant: tenant.to_owned(),
        subject,
    })
}

/// A DNS label, as the routing table defines tenant ids: also safe as a file name.
fn is_tenant_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

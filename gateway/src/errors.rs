//! Responses the gateway writes itself: short JSON `{"error": code, ...}`, or a small HTML
//! page when the client accepts HTML. Codes are stable and documented; details stay in logs.

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::ResponseHeader;

/// Every error the gateway answers on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    BadHost,
    HostMismatch,
    BadPath,
    /// A path that a common server would read as another route or namespace.
    AmbiguousPath,
    BadRequest,
    UnknownHost,
    NoRoute,
    TenantSuspended,
    NoTable,
    NoHealthyUpstream,
    UpstreamError,
    UpstreamTimeout,
    Internal,
    MissingApiKey,
    InvalidApiKey,
    ConflictingApiKeys,
    BadNamespace,
    NamespaceDenied,
    RateLimited,
    /// A TLS connection whose certificate does not cover the request's host (RFC 9110
    /// §15.5.20): the client must open a connection for that host.
    Misdirected,
    /// Plain HTTP to a tenant that is served over https only.
    HttpsRequired,
    /// Plain HTTP to a tenant that redirects to https: a 308 with the https `Location`.
    HttpsRedirect,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        match self {
            GatewayError::BadHost
            | GatewayError::HostMismatch
            | GatewayError::BadPath
            | GatewayError::AmbiguousPath
            | GatewayError::BadRequest
            | GatewayError::ConflictingApiKeys
            | GatewayError::BadNamespace => 400,
            GatewayError::MissingApiKey | GatewayError::InvalidApiKey => 401,
            GatewayError::NamespaceDenied | GatewayError::HttpsRequired => 403,
            GatewayError::Misdirected => 421,
            GatewayError::HttpsRedirect => 308,
            GatewayError::RateLimited => 429,
            GatewayError::UnknownHost | GatewayError::NoRoute => 404,
            GatewayError::NoTable | GatewayError::TenantSuspended => 503,
            GatewayError::NoHealthyUpstream | GatewayError::UpstreamError => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::Internal => 500,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            GatewayError::BadHost => "bad_host",
            GatewayError::HostMismatch => "host_mismatch",
            GatewayError::BadPath => "bad_path",
            GatewayError::AmbiguousPath => "ambiguous_path",
            GatewayError::BadRequest => "bad_request",
            GatewayError::UnknownHost => "unknown_host",
            GatewayError::NoRoute => "no_route",
            GatewayError::TenantSuspended => "tenant_suspended",
            GatewayError::NoTable => "no_table",
            GatewayError::NoHealthyUpstream => "no_healthy_upstream",
            GatewayError::UpstreamError => "upstream_error",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Internal => "internal",
            GatewayError::MissingApiKey => "missing_api_key",
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::ConflictingApiKeys => "conflicting_api_keys",
            GatewayError::BadNamespace => "bad_namespace",
            GatewayError::NamespaceDenied => "namespace_denied",
            GatewayError::RateLimited => "rate_limited",
            GatewayError::Misdirected => "misdirected_request",
            GatewayError::HttpsRequired => "https_required",
            GatewayError::HttpsRedirect => "https_redirect",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            GatewayError::BadHost => "the Host header is missing, repeated or malformed",
            GatewayError::HostMismatch => {
                "the request target names a different host than the Host header"
            }
            GatewayError::BadPath => "the request path is malformed or climbs above /",
            GatewayError::AmbiguousPath => {
                "the request path reads as another route on some servers (an escaped character, a backslash or a ';' parameter)"
            }
            GatewayError::BadRequest => "the request is malformed",
            GatewayError::UnknownHost => "no tenant is served at this host",
            GatewayError::NoRoute => "no route matches this path",
            GatewayError::TenantSuspended => "this site is suspended by its operator",
            GatewayError::NoTable => "the gateway has no routing table yet",
            GatewayError::NoHealthyUpstream => "no healthy upstream endpoint is available",
            GatewayError::UpstreamError => "the upstream failed to answer",
            GatewayError::UpstreamTimeout => "the upstream did not answer in time",
            GatewayError::Internal => "internal gateway error",
            GatewayError::MissingApiKey => {
                "this route needs an API key (X-API-Key, or Authorization: Bearer rgk_...)"
            }
            GatewayError::InvalidApiKey => "the API key is unknown, revoked or expired",
            GatewayError::ConflictingApiKeys => {
                "the request carries more than one API key, and they differ"
            }
            GatewayError::BadNamespace => {
                "the path's first segment looks like a namespace but is not a valid one"
            }
            GatewayError::NamespaceDenied => "this API key may not reach this namespace or tenant",
            GatewayError::RateLimited => "too many requests; retry after the time in Retry-After",
            GatewayError::Misdirected => {
                "this connection's certificate does not cover the requested host; open a new connection to that host"
            }
            GatewayError::HttpsRequired => "this site is served over https only",
            GatewayError::HttpsRedirect => "this site is served over https; follow Location",
        }
    }

    /// Header and body of the error response. `request_id` is already validated to a safe
    /// character set, so it needs no escaping in either format.
    pub fn response(
        self,
        wants_html: bool,
        request_id: &HeaderValue,
    ) -> (Box<ResponseHeader>, Bytes) {
        error_response(
            self.status(),
            self.code(),
            self.message(),
            wants_html,
            request_id,
        )
    }
}

/// The policy of every error page: no scripts, styles, images or forms; framed by the same
/// origin only.
const ERROR_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// An error response of the gateway's own: JSON `{"error","message","request_id"}`, or a small
/// HTML page. `code` and `message` are fixed strings of ours (no escaping needed).
pub fn error_response(
    status: u16,
    code: &str,
    message: &str,
    wants_html: bool,
    request_id: &HeaderValue,
) -> (Box<ResponseHeader>, Bytes) {
    let rid = request_id.to_str().unwrap_or("");
    let (body, ctype) = if wants_html {
        (
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {code}</title></head>\
                 <body><h1>{status}</h1><p>{message}.</p><p><small>request id {rid}</small></p></body></html>\n"
            ),
            "text/html; charset=utf-8",
        )
    } else {
        (
            format!(
                "{{\"error\":\"{code}\",\"message\":\"{message}\",\"request_id\":\"{rid}\"}}\n"
            ),
            "application/json",
        )
    };
    let mut resp = ResponseHeader::build(status, Some(5))
        .unwrap_or_else(|_| ResponseHeader::build(500, None).expect("static status"));
    let _ = resp.insert_header("content-type", ctype);
    let _ = resp.insert_header("content-length", body.len());
    let _ = resp.insert_header("cache-control", "no-store");
    // Nothing in these pages runs or loads, and only the tenant's own shell (same origin) may
    // frame them: an app's frame that fails shows the error, another site cannot frame it.
    let _ = resp.insert_header("content-security-policy", ERROR_CSP);
    let _ = resp.insert_header("x-content-type-options", "nosniff");
    let _ = resp.insert_header("x-request-id", request_id.clone());
    (Box::new(resp), Bytes::from(body))
}

/// Does the client prefer an HTML page (a browser navigation)?
pub fn wants_html(accept: Option<&HeaderValue>) -> bool {
    accept.is_some_and(|v| {
        v.as_bytes()
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"text/html"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_names_the_code() {
        let rid = HeaderValue::from_static("abc-123");
        let (head, body) = GatewayError::UnknownHost.response(false, &rid);
        assert_eq!(head.status.as_u16(), 404);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"], "unknown_host");
        assert_eq!(v["request_id"], "abc-123");
        assert_eq!(
            head.headers.get("content-length").map(|v| v.as_bytes()),
            Some(body.len().to_string().as_bytes())
        );
    }

    #[test]
    fn html_for_browsers() {
        let rid = HeaderValue::from_static("r1");
        let (head, body) = GatewayError::UpstreamTimeout.response(true, &rid);
        assert_eq!(head.status.as_u16(), 504);
        assert!(std::str::from_utf8(&body)
            .expect("utf8")
            .contains("<h1>504</h1>"));
        let csp = head.headers.get("content-security-policy").expect("csp");
        assert_eq!(csp.as_bytes(), ERROR_CSP.as_bytes());
        assert_eq!(
            head.headers
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        assert!(wants_html(Some(&HeaderValue::from_static(
            "text/html,application/xhtml+xml"
        ))));
        assert!(wants_html(Some(&HeaderValue::from_static("TEXT/HTML"))));
        assert!(!wants_html(Some(&HeaderValue::from_static(
            "application/json"
        ))));
        assert!(!wants_html(None));
    }
}

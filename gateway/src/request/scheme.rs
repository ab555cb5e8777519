//! The request's scheme — one fact for `x-forwarded-proto`, cookies, the login redirect URI
//! and the https rules — and the TLS edge rules of the request filter: SNI/Host agreement
//! (421), HTTPS-only tenants (308 or 403), `Strict-Transport-Security`.

use crate::errors::GatewayError;
use crate::headers::X_FORWARDED_PROTO;
use crate::tenant::request_host;
use crate::tls::ConnTls;
use http::{HeaderMap, HeaderValue};
use pingora_http::RequestHeader;
use realmgate_table::host::HostBuf;
use realmgate_table::HttpsMode;

/// ACME HTTP-01 challenges are fetched over plain HTTP (port 80) by the certificate authority:
/// never redirected nor refused, whatever the tenant's https mode, or no certificate is ever
/// issued for an https-only tenant (the gateway answers them itself: `crate::acme`).
pub use crate::acme::ACME_CHALLENGE_PREFIX;

/// The port https omits from a URL.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// How the client reached the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scheme {
    /// The connection the request came in on is TLS (the gateway terminated it).
    pub tls: bool,
    /// The request is https: its connection is TLS, or the TCP peer is a trusted proxy whose
    /// `X-Forwarded-Proto` says the client used https.
    pub https: bool,
}

impl Scheme {
    /// The one place the scheme is decided. `from_trusted_proxy`: the TCP peer is one of the
    /// configured `trusted_proxies`; anyone else's `X-Forwarded-Proto` is ignored (and
    /// stripped before forwarding).
    pub fn of(tls: bool, from_trusted_proxy: bool, headers: &HeaderMap) -> Scheme {
        Scheme {
            tls,
            https: tls || (from_trusted_proxy && forwarded_https(headers)),
        }
    }

    pub fn as_str(self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }
}

/// Does a trusted proxy's `X-Forwarded-Proto` say https? Only when every item (all header
/// lines, comma-separated, trimmed) is `https`, case-insensitively, and there is at least one.
/// `http`, garbage, an empty item or a mix (`https, http`) is plain HTTP: a request is never
/// upgraded on doubt. A front proxy should set the header, not append to it.
pub fn forwarded_https(headers: &HeaderMap) -> bool {
    let mut items = headers
        .get_all(X_FORWARDED_PROTO)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .peekable();
    items.peek().is_some() && items.all(|p| p.eq_ignore_ascii_case(b"https"))
}

/// The SNI/Host rule, checked first on every request of a TLS connection (HTTP/1.1
/// keep-alive and HTTP/2 alike): the request's host (`Host`, or HTTP/2's `:authority`),
/// normalised and without its port, must be covered by the certificate the connection was
/// established with; otherwise 421 (RFC 9110 §15.5.20), so that neither HTTP/2 coalescing nor
/// a client's SNI/Host mismatch carries one host's requests on another host's connection. An
/// absent, repeated or malformed host is 400, as tenant lookup answers it. A TLS connection
/// without the facts of its handshake (`conn` is `None`) carries no host at all. Plain HTTP has
/// nothing to check.
pub fn check_connection_host(
    req: &RequestHeader,
    tls: bool,
    conn: Option<&ConnTls>,
) -> Result<(), GatewayError> {
    if !tls {
        return Ok(());
    }
    let mut buf = HostBuf::default();
    let host = request_host(req, &mut buf)?;
    match conn {
        Some(c) if c.covers(host) => Ok(()),
        _ => Err(GatewayError::Misdirected),
    }
}

/// What a tenant's `https` mode makes of a request, given its normalised path: https
/// requests and ACME challenges pass; plain HTTP is redirected (`redirect`), refused
/// (`only`) or served (`off`).
pub fn check_plain_http(mode: HttpsMode, https: bool, path: &str) -> Result<(), GatewayError> {
    if https || path.starts_with(ACME_CHALLENGE_PREFIX) {
        return Ok(());
    }
    match mode {
        HttpsMode::Off => Ok(()),
        HttpsMode::Redirect => Err(GatewayError::HttpsRedirect),
        HttpsMode::Only => Err(GatewayError::HttpsRequired),
    }
}

/// Where a redirected plain-HTTP request goes: `https://<host>[:<https_port>]<path>?<query>`
/// with the normalised host (any port the client used for plain HTTP dropped), the gateway's
/// public https port (omitted when 443), and the path and query as the client sent them.
/// `None` when the request has no usable host (it was refused before getting here).
pub fn https_location(req: &RequestHeader, https_port: u16) -> Option<HeaderValue> {
    let mut buf = HostBuf::default();
    let host = request_host(req, &mut buf).ok()?;
    let target = req
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|t| t.starts_with('/'))
        .unwrap_or("/");
    let location = if https_port == DEFAULT_HTTPS_PORT {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{https_port}{target}")
    };
    HeaderValue::from_str(&location).ok()
}

/// The `Strict-Transport-Security` value to send: the tenant's, on https responses only.
///
/// RFC 6797 §7.2: a UA ignores the header over plain HTTP, and a server must not send it
/// there. Behind a trusted TLS-terminating proxy the client's connection is https, and it is
/// over that connection that the header reaches the browser, so it is sent whenever the
/// request's scheme is https — including when only a trusted proxy says so — never when the
/// request is plain HTTP.
pub fn hsts(scheme: Scheme, tenant_hsts: Option<&HeaderValue>) -> Option<HeaderValue> {
    tenant_hsts.filter(|_| scheme.https).cloned()
}

#[cfg(test)]
mod tests;

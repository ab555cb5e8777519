//! Request facts and the headers the gateway owns: the bearer token of `Authorization`,
//! whether a request is a browser navigation, the request id, the `x-realmgate-*` identity
//! headers (client copies always stripped), and the `x-forwarded-*` set sent upstream.

use crate::errors::GatewayError;
use http::header::{HeaderName, ACCEPT};
use http::{HeaderValue, Method};
use pingora_core::protocols::Digest;
use pingora_http::RequestHeader;
use std::io::Write;
use std::net::IpAddr;

/// Names as `&'static str`: Pingora's `insert_header` takes these without allocating a
/// title-cased copy (a `HeaderName` argument costs two allocations per insert).
pub const X_REQUEST_ID: &str = "x-request-id";
pub const X_REALMGATE_TENANT: &str = "x-realmgate-tenant";
pub const X_REALMGATE_KEY_ID: &str = "x-realmgate-key-id";
pub const X_REALMGATE_NAMESPACE: &str = "x-realmgate-namespace";
pub const X_REALMGATE_SUBJECT: &str = "x-realmgate-subject";
pub const X_REALMGATE_ROLES: &str = "x-realmgate-roles";
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");
const IDENTITY_PREFIX: &str = "x-realmgate-";
const MAX_REQUEST_ID: usize = 128;

/// Every `Authorization` value of the request, in order. Credentials are decided over all of
/// them — the key, the JWT, and what is stripped before forwarding — never over the first only.
pub fn authorizations(req: &RequestHeader) -> impl Iterator<Item = &[u8]> {
    req.headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
}

/// The token of one `Authorization` value with the `Bearer` scheme: the scheme compared
/// case-insensitively (RFC 9110 §11.1), then one or more spaces, then the token (surrounding
/// whitespace trimmed, possibly empty). `None` for another scheme.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii())
}

/// A top-level browser navigation: a GET or HEAD with `Sec-Fetch-Dest: document` (compared
/// case-insensitively), or, from a client that sends no `Sec-Fetch-Dest`, a GET or HEAD whose
/// `Accept` values (every header line) include `text/html`. The shell answers these, and only
/// these are redirected to log in.
pub fn is_navigation(req: &RequestHeader) -> bool {
    if req.method != Method::GET && req.method != Method::HEAD {
        return false;
    }
    match req.headers.get(SEC_FETCH_DEST) {
        Some(dest) => dest.as_bytes().eq_ignore_ascii_case(b"document"),
        None => req.headers.get_all(ACCEPT).iter().any(|v| {
            v.as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        }),
    }
}

/// The client's `x-request-id` when it is one well-formed value (1–128 of `A-Za-z0-9._:-`),
/// otherwise a fresh random one.
pub fn request_id(req: &RequestHeader) -> HeaderValue {
    client_request_id(req).unwrap_or_else(new_request_id)
}

/// The client's `x-request-id` when it is one well-formed value; `None` when a fresh one is
/// to be made (when first needed: [`new_request_id`]).
pub fn client_request_id(req: &RequestHeader) -> Option<HeaderValue> {
    let mut values = req.headers.get_all(&X_REQUEST_ID_NAME).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if is_valid_request_id(v.as_bytes()) => Some(v.clone()),
        _ => None,
    }
}

fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// 128 random bits as 32 hex digits.
pub fn new_request_id() -> HeaderValue {
    format_request_id(fastrand::u128(..).to_be_bytes())
}

/// A request id kept as 16 raw bytes, formatted as 32 hex digits when a header, a page or a
/// log line needs it: one allocation, shared by every copy of the value (upstream request,
/// response, error page) instead of a copy and a promotion to shared on the first clone.
pub fn format_request_id(raw: [u8; 16]) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in raw.into_iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(out))
        .unwrap_or(HeaderValue::from_static("0"))
}

/// Is the client's connection TLS? From the connection's digest, never from a header.
pub fn is_tls(digest: Option<&Digest>) -> bool {
    digest.is_some_and(|d| d.ssl_digest.is_some())
}

/// What the `x-forwarded-*` headers tell upstream about the client's connection.
pub struct Forwarded<'a> {
    /// The peer address.
    pub client: Option<IpAddr>,
    /// The request's scheme (`crate::request::scheme::Scheme`): its connection is TLS, or
    /// a trusted proxy says the client used https.
    pub https: bool,
    /// The `Host` the client sent.
    pub host: Option<&'a HeaderValue>,
}

/// The same names as [`HeaderName`]s, for writing straight into a header map: no parsing, no
/// allocation per use.
const XFF_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_FOR);
const XFP_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_PROTO);
const XFH_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_HOST);
pub const X_REQUEST_ID_NAME: HeaderName = HeaderName::from_static(X_REQUEST_ID);
/// Room made in the upstream request's header map at once: the four written here, the
/// tenant, the identity (subject, roles), the assertion and the shell's `accept-encoding`.
const UPSTREAM_HEADERS: usize = 9;

/// The upstream request's `x-forwarded-for`, `-proto`, `-host` and `x-request-id`.
///
/// `up` is the copy of the client's request Pingora made for upstream. It is taken over
/// without its header-case map and with room for the gateway's headers made in one step:
/// these four go straight into the header map, and every later insert (identity, assertion,
/// shell) is one map insert instead of two and never regrows a map that was cloned full.
/// Upstream gets header names as HTTP/2 and HAProxy send them: standard names title-cased,
/// others lower-case (RFC 9110 §5.1: names are case-insensitive). The request target stays
/// byte for byte what it was (an absolute-form or non-UTF-8 target included). Call it
/// before any other change to `up`.
pub fn upstream(
    up: &mut RequestHeader,
    f: &Forwarded<'_>,
    request_id: &HeaderValue,
) -> pingora_error::Result<()> {
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let taken = std::mem::replace(up, empty);
    let target = verbatim_target(&taken);
    let end_stream = taken.send_end_stream();
    let mut parts = http::request::Parts::from(taken);
    let h = &mut parts.headers;
    // Failing to make room only means the inserts below grow the map as they go.
    let _ = h.try_reserve(UPSTREAM_HEADERS);
    let proto = if f.https { "https" } else { "http" };
    let written = [
        f.client.map(|ip| (XFF_NAME, ip_header(ip))),
        Some((XFP_NAME, HeaderValue::from_static(proto))),
        f.host.map(|host| (XFH_NAME, host.clone())),
        Some((X_REQUEST_ID_NAME, request_id.clone())),
    ];
    for (name, value) in written.into_iter().flatten() {
        h.try_insert(name, value)
            .map_err(|_| pingora_error::Error::new(pingora_error::ErrorType::InvalidHTTPHeader))?;
    }
    let mut rebuilt = RequestHeader::from(parts);
    if let Some(target) = target {
        rebuilt.set_raw_path(&target)?;
    }
    if let Some(end_stream) = end_stream {
        rebuilt.set_send_end_stream(end_stream);
    }
    *up = rebuilt;
    Ok(())
}

/// The request target when the URI does not reproduce it (absolute-form, non-UTF-8): a copy
/// to set again after the header is rebuilt from its parts. `None` for the usual origin-form
/// target, which the URI holds.
fn verbatim_target(req: &RequestHeader) -> Option<Vec<u8>> {
    let raw = req.raw_path();
    let from_uri = req.uri.path_and_query().map(|pq| pq.as_str().as_ptr());
    (!raw.is_empty() && from_uri != Some(raw.as_ptr())).then(|| raw.to_vec())
}

/// Client-address and original-URL headers that some upstream framework believes: a client
/// must not be able to say who it is or which URL it asked for. The gateway sets
/// `x-forwarded-*` itself.
const CLIENT_CLAIMS: [&str; 9] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-forwarded-for",
];

/// Is `name` (lower case, as the `http` crate keeps names) one of the headers the gateway
/// owns, when `_` is read as `-` — as CGI, WSGI, Rack and PHP read header names
/// (`X_Realmgate_Subject` reaches a WSGI app as `HTTP_X_REALMGATE_SUBJECT`)? Ours are every
/// `x-realmgate-*` and `x-forwarded-*`, and [`CLIENT_CLAIMS`].
pub fn is_owned(name: &[u8]) -> bool {
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| x.to_ascii_lowercase() == y || (x == b'_' && y == b'-'))
    };
    let starts = |prefix: &[u8]| name.len() >= prefix.len() && same(&name[..prefix.len()], prefix);
    // Most names start with neither letter: one comparison for them.
    match name.first().map(u8::to_ascii_lowercase) {
        Some(b'x') => {
            starts(IDENTITY_PREFIX.as_bytes())
                || starts(b"x-forwarded-")
                || CLIENT_CLAIMS.iter().any(|c| same(name, c.as_bytes()))
        }
        Some(b'f' | b't' | b'c') => CLIENT_CLAIMS.iter().any(|c| same(name, c.as_bytes())),
        _ => false,
    }
}

/// Remove every client-sent header the gateway owns (see [`is_owned`]), before anything
/// looks at the request — except `X-Forwarded-For` itself from a trusted proxy
/// (`from_proxy`), which names the client for per-client limits (the gateway still replaces
/// it before forwarding). Allocates only when there is one.
pub fn strip_owned_headers(req: &mut RequestHeader, from_proxy: bool) {
    let owned = |name: &HeaderName| {
        is_owned(name.as_str().as_bytes()) && !(from_proxy && name.as_str() == X_FORWARDED_FOR)
    };
    if !req.headers.keys().any(owned) {
        return;
    }
    let names: Vec<HeaderName> = req.headers.keys().filter(|n| owned(n)).cloned().collect();
    for name in names {
        req.remove_header(&name);
    }
}

/// Request framing the gateway will forward (RFC 9112 §6): `Content-Length` is one header
/// line holding one decimal number, and never beside `Transfer-Encoding`. Anything else
/// (`5, 5`, two equal lines, `+5`, both framings) is refused: the upstream might read the
/// body's end elsewhere than the gateway did.
pub fn check_framing(req: &RequestHeader) -> Result<(), GatewayError> {
    let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(first) = lengths.next() else {
        return Ok(());
    };
    let digits = first.as_bytes();
    let valid = lengths.next().is_none()
        && !digits.is_empty()
        && digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && !req.headers.contains_key(http::header::TRANSFER_ENCODING);
    if valid {
        Ok(())
    } else {
        Err(GatewayError::BadRequest)
    }
}

/// The peer address as a header value, formatted without a heap-allocated string.
pub fn ip_header(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 45];
    if let IpAddr::V4(v4) = ip {
        let len = format_ipv4(v4.octets(), &mut buf);
        return HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"));
    }
    let len = {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // An IP address always fits in 45 bytes.
        let _ = write!(cursor, "{ip}");
        cursor.position() as usize
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Dotted quad into `buf`, returning its length: the common case, without `fmt` machinery.
fn format_ipv4(octets: [u8; 4], buf: &mut [u8; 45]) -> usize {
    let mut at = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[at] = b'.';
            at += 1;
        }
        if o >= 100 {
            buf[at] = b'0' + o / 100;
            at += 1;
        }
        if o >= 10 {
            buf[at] = b'0' + (o / 10) % 10;
            at += 1;
        }
        buf[at] = b'0' + o % 10;
        at += 1;
    }
    at
}

/// An HTTP/2 request names its host in `:authority`, an HTTP/1.1 one in `Host`. A request
/// without `Host` gets one from its `:authority` (RFC 9113 §8.3.1, what an intermediary
/// forwarding it as HTTP/1.1 must do), so every reader — host routing, the SNI rule, the
/// login origin, `x-forwarded-host`, the upstream — sees the host the client asked for, port
/// included, whichever version it spoke.
pub fn host_from_authority(req: &mut RequestHeader) {
    if req.version != http::Version::HTTP_2 || req.headers.contains_key(http::header::HOST) {
        return;
    }
    let value = req
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(v) = value {
        // A valid header value by construction; failing to insert leaves the request as it
        // was (without a host, refused later as such).
        let _ = req.insert_header(http::header::HOST, v);
    }
}

#[cfg(test)]
mod tests;

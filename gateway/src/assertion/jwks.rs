//! `/.realmgate/jwks.json` on every tenant host: the fleet's assertion keys, before auth.

use crate::auth::{Refusal, Reply, Request};
use crate::errors::{wants_html, GatewayError};
use bytes::Bytes;
use pingora_http::ResponseHeader;

/// The JWKS (200, cacheable for five minutes); 404 without an assertion section, or for a
/// method other than GET or HEAD.
pub fn jwks_reply(r: &Request<'_>, jwks: Option<&Bytes>) -> Refusal {
    let readable = r.req.method == http::Method::GET || r.req.method == http::Method::HEAD;
    let Some(body) = jwks.filter(|_| readable) else {
        let html = wants_html(r.req.headers.get(http::header::ACCEPT));
        let (head, body) = GatewayError::NoRoute.response(html, r.request_id);
        return Refusal::Reply(Reply { head, body });
    };
    let mut head = ResponseHeader::build(200, Some(4)).map(Box::new);
    let built = head.as_mut().map_err(|_| ()).and_then(|h| {
        h.insert_header(http::header::CONTENT_TYPE, "application/jwk-set+json")
            .and_then(|()| h.insert_header(http::header::CACHE_CONTROL, super::JWKS_CACHE_CONTROL))
            .and_then(|()| h.insert_header(http::header::CONTENT_LENGTH, body.len()))
            .map_err(|_| ())
    });
    match (head, built) {
        (Ok(head), Ok(())) => Refusal::Reply(Reply {
            head,
            body: body.clone(),
        }),
        _ => Refusal::Gateway(GatewayError::Internal),
    }
}

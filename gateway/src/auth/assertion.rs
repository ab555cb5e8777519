//! Auth's side of the identity assertion: who it admitted, as the assertion for the pool the
//! request goes to (`x-realmgate-assertion`), and the fleet's keys at `/.realmgate/jwks.json`.

use super::api_key::{KeyGrant, Keys};
use super::{AuthCtx, Grant, Refusal, Reply, Request};
use crate::assertion::{Assertions, Principal, Signer, Subject, HEADER, JWKS_CACHE_CONTROL};
use crate::errors::{wants_html, GatewayError};
use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};

/// Where the request goes, as the assertion names it.
pub struct Target<'a> {
    pub signer: &'a Signer,
    pub tenant: &'a str,
    /// The pool's name: the `aud`.
    pub pool: &'a str,
    pub keys: &'a Keys,
}

/// Set `x-realmgate-assertion` for the admitted request (the client's copy was stripped with
/// every `x-realmgate-*` header before anything read the request). Nothing without a
/// signer (no assertion section in the table).
pub fn upstream_assertion(
    up: &mut RequestHeader,
    target: Option<Target<'_>>,
    grant: &Grant,
    actx: &AuthCtx,
    assertions: &Assertions,
) -> pingora_error::Result<()> {
    let Some(t) = target else {
        return Ok(());
    };
    let principal = match grant {
        Grant::Public => Principal::Public,
        Grant::Identity => match actx.identity.as_deref() {
            Some(id) => Principal::Realm {
                via: id.via,
                sub: &id.sub,
                roles: &id.role_names,
            },
            None => Principal::Public,
        },
        Grant::ApiKey(KeyGrant { key, namespace }) => Principal::ApiKey {
            key_id: t.keys.get(*key).id.to_str().unwrap_or_default(),
            namespace: namespace.as_ref().and_then(|ns| ns.to_str().ok()),
        },
    };
    let subject = Subject {
        tenant: t.tenant,
        pool: t.pool,
        principal,
    };
    match assertions.header(t.signer, &subject, super::unix_now()) {
        Some((value, _)) => up.insert_header(HEADER, value),
        // Signing cannot fail with a validated key; if it did, the upstream gets no
        // assertion (and an app that requires one refuses the request).
        None => {
            log::error!("could not sign an identity assertion");
            Ok(())
        }
    }
}

/// The JWKS (200, cacheable for five minutes); 404 without an assertion section, or for a
/// method other than GET or HEAD.
pub fn jwks_reply(r: &Request<'_>, jwks: Option<&Bytes>) -> Refusal {
    let readable = r.req.method == http::Method::GET || r.req.method == http::Method::HEAD;
    let Some(body) = jwks.filter(|_| readable) else {
        let html = wants_html(r.req.headers.get(http::header::ACCEPT));
        let (head, body) = GatewayError::NoRoute.response(html, r.request_id);
        return Refusal::Reply(Reply { head, body });
    };
    let head = ResponseHeader::build(200, Some(4)).and_then(|mut h| {
        h.insert_header(http::header::CONTENT_TYPE, "application/jwk-set+json")?;
        h.insert_header(http::header::CACHE_CONTROL, JWKS_CACHE_CONTROL)?;
        h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        Ok(h)
    });
    match head {
        Ok(head) => Refusal::Reply(Reply {
            head: Box::new(head),
            body: body.clone(),
        }),
        Err(_) => Refusal::Gateway(GatewayError::Internal),
    }
}

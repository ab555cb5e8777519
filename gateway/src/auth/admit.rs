//! The auth step as one decision: a `/.realmgate/*` endpoint answers itself; otherwise the
//! route's policies in their precedence — a presented API key on an `api_key` route decides;
//! otherwise a realm identity (`jwt`, `session`); otherwise `public`.

use super::api_key::{self, Keys};
use super::flow::Endpoint;
use super::{Auth, AuthCtx, Grant, Reply, Request};
use crate::errors::GatewayError;
use crate::route::{Namespace, Policy};
use crate::tenant::TenantIdx;

/// What the route match decided that auth needs.
pub struct Admission<'a> {
    pub policy: Policy,
    /// A gateway endpoint instead of a route.
    pub endpoint: Option<Endpoint>,
    /// The tenant's index, for API key scopes.
    pub tenant: TenantIdx,
    /// The matched route's namespace, if it has one.
    pub namespace: Option<&'a Namespace>,
    pub keys: &'a Keys,
    /// The fleet's assertion keys, served at `/.realmgate/jwks.json`.
    pub jwks: Option<&'a bytes::Bytes>,
    /// The normalised path the route was matched on (the namespace of namespace-less routes).
    pub path: &'a str,
}

/// Why a request is not proxied after auth.
pub enum Refusal {
    /// An API key refusal (400, 401, 403) or no credential where one is required.
    Gateway(GatewayError),
    /// Auth's own answer: a JWT or session refusal with its challenge, a redirect to log in,
    /// or a login endpoint's response.
    Reply(Reply),
}

impl Auth {
    /// Who the request is admitted as, or the response to send instead.
    pub async fn admit(
        &self,
        r: &Request<'_>,
        a: &Admission<'_>,
        actx: &mut AuthCtx,
    ) -> Result<Grant, Refusal> {
        if a.endpoint == Some(Endpoint::Jwks) {
            return Err(super::assertion::jwks_reply(r, a.jwks));
        }
        if let Some(endpoint) = a.endpoint {
            return Err(Refusal::Reply(self.endpoint(r, endpoint).await));
        }
        let policy = a.policy;
        if policy.api_key {
            match api_key::check(a.keys, a.tenant, a.namespace, r.req, a.path) {
                Ok(Some(key)) => return Ok(Grant::ApiKey(key)),
                Ok(None) => {}
                Err(e) => return Err(Refusal::Gateway(e)),
            }
        }
        if policy.needs_identity_check() {
            if let Some(reply) = self.check(r, policy, actx).await {
                return Err(Refusal::Reply(reply));
            }
            return Ok(if actx.identity.is_some() {
                Grant::Identity
            } else {
                Grant::Public
            });
        }
        if policy.public {
            Ok(Grant::Public)
        } else {
            Err(Refusal::Gateway(GatewayError::MissingApiKey))
        }
    }
}

#[cfg(test)]
mod tests;

//! The axum side: [`Caller`], [`Tenant`] and [`Principal`] as extractors; the assertion is
//! verified once per request.

use crate::claims::{Caller, Principal, Tenant};
use crate::rejection::Rejection;
use crate::verify::Verifier;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use std::sync::Arc;

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, Rejection> {
        if let Some(done) = parts.extensions.get::<Result<Caller, Rejection>>() {
            return done.clone();
        }
        let verifier = Arc::<Verifier>::from_ref(state);
        let result = verifier.verify_headers(&parts.headers).await;
        if let Err(e) = &result {
            log::debug!("refused: {e}");
        }
        parts.extensions.insert(result.clone());
        result
    }
}

impl<S> FromRequestParts<S> for Tenant
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Tenant, Rejection> {
        Caller::from_request_parts(parts, state)
            .await
            .map(|c| c.tenant)
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Principal, Rejection> {
        Caller::from_request_parts(parts, state)
            .await
            .map(|c| c.principal)
    }
}

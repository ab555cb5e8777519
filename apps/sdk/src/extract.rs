//! The axum side: [`Caller`], [`Tenant`] and [`Principal`] as extractors; the assertion is
//! verified once per request; [`TenantDb`], the caller's tenant's own database.

use crate::claims::{Caller, Principal, Tenant};
use crate::database::{DbError, TenantDatabases};
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

/// The verified caller's tenant's own database: `TenantDb(tenant, connection)`. Needs
/// `Arc<Verifier>` and `Arc<TenantDatabases>` in the state (`FromRef`). Refused: the
/// assertion's 401, or the database's 410 (tenant deleted), 403 or 503.
pub struct TenantDb(pub Tenant, pub libsql::Connection);

/// Why [`TenantDb`] could not be had.
#[derive(Debug)]
pub enum TenantDbRejection {
    Caller(Rejection),
    Database(DbError),
}

impl axum::response::IntoResponse for TenantDbRejection {
    fn into_response(self) -> axum::response::Response {
        match self {
            TenantDbRejection::Caller(r) => r.into_response(),
            TenantDbRejection::Database(e) => e.into_response(),
        }
    }
}

impl<S> FromRequestParts<S> for TenantDb
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
    Arc<TenantDatabases>: FromRef<S>,
{
    type Rejection = TenantDbRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<TenantDb, Self::Rejection> {
        let tenant = Tenant::from_request_parts(parts, state)
            .await
            .map_err(TenantDbRejection::Caller)?;
        let dbs = Arc::<TenantDatabases>::from_ref(state);
        let conn = dbs
            .connect(tenant.as_str())
            .await
            .map_err(TenantDbRejection::Database)?;
        Ok(TenantDb(tenant, conn))
    }
}

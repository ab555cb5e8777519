//! `realmgate-app`: for apps behind Realmgate. Every request the gateway forwards carries
//! `x-realmgate-assertion`, a short-lived ES256 JWT signed by the gateway fleet, saying which
//! tenant the request is for, which pool the gateway forwarded it to, and who the caller is
//! (a realm user, an API key, or nobody on a public route). This crate verifies it against
//! the fleet's JWKS and hands axum handlers the result:
//!
//! ```no_run
//! use realmgate_app::{Caller, Principal, Verifier, VerifierConfig};
//! use std::sync::Arc;
//!
//! async fn me(caller: Caller) -> String {
//!     match caller.principal {
//!         Principal::User { subject, .. } => format!("{} at {}", subject, caller.tenant),
//!         _ => "anonymous".into(),
//!     }
//! }
//!
//! # fn main() {
//! let verifier = Arc::new(Verifier::new(VerifierConfig::new(
//!     "https://acme.example.dev/.realmgate/jwks.json",
//!     "realmgate",
//!     ["todos"],
//! )));
//! let app: axum::Router = axum::Router::new()
//!     .route("/me", axum::routing::get(me))
//!     .with_state(verifier);
//! # }
//! ```
//!
//! The plain `x-realmgate-*` headers are weaker: anyone who reaches the app without the
//! gateway can send them. See `docs/apps.md`.

mod claims;
mod database;
mod extract;
mod keys;
mod rejection;
mod verify;

pub use claims::{Auth, Caller, Principal, Tenant};
pub use database::{DatabasesConfig, DbError, Migrate, TenantDatabases};
pub use extract::{TenantDb, TenantDbRejection};
pub use rejection::Rejection;
pub use verify::{Verifier, VerifierConfig, ASSERTION_HEADER, TENANT_HEADER};

#[cfg(test)]
fn verify_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;

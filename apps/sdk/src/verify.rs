//! Verifying one assertion: an ES256 signature by a fleet key, the issuer, an audience the
//! app accepts (its pool names), `exp`/`iat` with a small leeway and at most 60 s apart, the
//! tenant against `x-realmgate-tenant`, and claims that hang together.

use crate::claims::{Caller, Claims, Tenant};
use crate::keys::{KeyError, KeySet};
use crate::rejection::Rejection;
use jsonwebtoken::{Algorithm, Validation};
use std::time::Duration;

/// The header that carries the assertion.
pub const ASSERTION_HEADER: &str = "x-realmgate-assertion";
/// The gateway's plain tenant header, checked against the signed claim when present.
pub const TENANT_HEADER: &str = "x-realmgate-tenant";
/// Longest assertion looked at.
const MAX_TOKEN_BYTES: usize = 8192;
/// The gateway's limit on `exp - iat`.
const MAX_LIFETIME_S: u64 = 60;

/// How an app verifies assertions.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The fleet's JWKS: `https://<any tenant host>/.realmgate/jwks.json`, or realmctl's
    /// `/v1/assertion-keys`.
    pub jwks_url: String,
    /// The fleet's issuer name (realmctl's `assertion.issuer`).
    pub issuer: String,
    /// The app's pool names: an assertion minted for another pool is refused.
    pub audiences: Vec<String>,
    /// Leeway on `exp` and `iat` for clock differences (default 5 s).
    pub leeway: Duration,
    /// Least time between two JWKS fetches (default 10 s).
    pub refetch_interval: Duration,
    /// Keys older than this are fetched again (default 5 min, the gateway's `max-age`).
    pub jwks_ttl: Duration,
    /// Timeout of a JWKS fetch (default 5 s).
    pub fetch_timeout: Duration,
}

impl VerifierConfig {
    pub fn new<A: Into<String>>(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = A>,
    ) -> VerifierConfig {
        VerifierConfig {
            jwks_url: jwks_url.into(),
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            leeway: Duration::from_secs(5),
            refetch_interval: Duration::from_secs(10),
            jwks_ttl: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Verifies assertions; share one per app (`Arc<Verifier>` as axum state).
pub struct Verifier {
    config: VerifierConfig,
    keys: KeySet,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Verifier {
        let keys = KeySet::new(
            config.jwks_url.clone(),
            config.refetch_interval,
            config.jwks_ttl,
            config.fetch_timeout,
        );
        Verifier { config, keys }
    }

    /// A verifier with a fixed key set, never fetched (`config.jwks_url` unused).
    pub fn with_keys(config: VerifierConfig, jwks: &jsonwebtoken::jwk::JwkSet) -> Verifier {
        Verifier {
            keys: KeySet::fixed(jwks),
            config,
        }
    }

    /// JWKS fetches made so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.keys.fetches()
    }

    /// Verify the request's headers: its one `x-realmgate-assertion`, and its
    /// `x-realmgate-tenant` when present.
    pub async fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Caller, Rejection> {
        let mut values = headers.get_all(ASSERTION_HEADER).iter();
        let token = match (values.next(), values.next()) {
            (None, _) => return Err(Rejection::Missing),
            (Some(v), None) => v.to_str().map_err(|_| Rejection::Malformed)?,
            _ => return Err(Rejection::Malformed),
        };
        let mut tenants = headers.get_all(TENANT_HEADER).iter();
        let tenant = match (tenants.next(), tenants.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().map_err(|_| Rejection::TenantMismatch)?),
            _ => return Err(Rejection::TenantMismatch),
        };
        self.verify(token, tenant, now()).await
    }

    /// Verify `token` at `now` (unix seconds); `tenant_header` is the plain tenant header's
    /// value, if the request had one.
    pub async fn verify(
        &self,
        token: &str,
        tenant_header: Option<&str>,
        now: u64,
    ) -> Result<Caller, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        // The algorithm is the fleet's, never the token's choice.
        if header.alg != Algorithm::ES256 {
            return Err(Rejection::Forged);
        }
        let kid = header.kid.as_deref().ok_or(Rejection::Malformed)?;
        let key = self.keys.key(kid).await.map_err(|e| match e {
            KeyError::Unknown => Rejection::UnknownKey,
            KeyError::Unavailable => Rejection::KeysUnavailable,
        })?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&self.config.audiences);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        // exp is checked below against the caller's clock, as iat is.
        v.validate_exp = false;
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| classify(e.kind()))?
            .claims;
        let leeway = self.config.leeway.as_secs();
        if now >= claims.exp.saturating_add(leeway) {
            return Err(Rejection::Expired);
        }
        if claims.iat > now.saturating_add(leeway)
            || claims.exp < claims.iat
            || claims.exp - claims.iat > MAX_LIFETIME_S
        {
            return Err(Rejection::BadTime);
        }
        if tenant_header.is_some_and(|t| t != claims.tenant) {
            return Err(Rejection::TenantMismatch);
        }
        let principal = claims.principal().ok_or(Rejection::Malformed)?;
        if claims.tenant.is_empty() {
            return Err(Rejection::Malformed);
        }
        Ok(Caller {
            tenant: Tenant(claims.tenant),
            principal,
            pool: claims.aud,
            assertion_id: claims.jti,
        })
    }
}

fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> Rejection {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature | K::InvalidAlgorithm | K::InvalidEcdsaKey => Rejection::Forged,
        K::InvalidAudience => Rejection::WrongAudience,
        K::InvalidIssuer => Rejection::WrongIssuer,
        K::ExpiredSignature => Rejection::Expired,
        _ => Rejection::Malformed,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! Auth, the step after the route match: the route's policy (`public`, `jwt`, `session`,
//! `api_key`, or any of them) decides whether a request passes and as whom; `/.realmgate/*`
//! runs the login. API keys are checked in [`api_key`]; JWTs and sessions here.
//!
//! The hot path of a `jwt` route is a SHA-256 of the token and one cache lookup: a token
//! verified once is trusted until it expires (within the clock skew), for the realm settings
//! it was checked against. Nothing here formats, logs or allocates on a cache hit, and
//! tokens are never logged.

mod admit;
pub mod api_key;
pub mod assertion;
pub mod cookie;
mod error;
mod flow;
pub mod jwks;
pub mod jwt;
pub mod oidc;
pub mod realm;
pub mod session;

pub use admit::{Admission, Refusal};
pub use error::AuthError;
pub use flow::Endpoint;
pub use realm::{RealmRt, Realms};
pub use session::SessionKeys;

use crate::errors::{error_response, wants_html};
use crate::headers::{
    self, X_REALMGATE_KEY_ID, X_REALMGATE_NAMESPACE, X_REALMGATE_ROLES, X_REALMGATE_SUBJECT,
    X_REALMGATE_TENANT,
};
use crate::metrics::AuthMetrics;
use crate::route::Policy;
use bytes::Bytes;
use http::HeaderValue;
use jwt::{Expect, Rules};
use moka::sync::Cache;
use pingora_http::{RequestHeader, ResponseHeader};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Auth settings from the gateway configuration (`gateway.auth`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Leeway on `exp` and `nbf`, in seconds.
    pub clock_skew_s: u64,
    /// Largest bearer token looked at; larger ones are refused before any decoding.
    pub max_token_bytes: usize,
    /// Least time between two JWKS fetches of one realm (unknown `kid` or failure retry).
    pub jwks_refetch_interval: Duration,
    /// Bounds on how long fetched keys count as fresh, and the value without `max-age`.
    pub jwks_ttl_min: Duration,
    pub jwks_ttl_default: Duration,
    pub jwks_ttl_max: Duration,
    /// Timeout of every request to a realm (keys, discovery, token endpoint).
    pub realm_timeout: Duration,
    /// Verified tokens remembered.
    pub token_cache_entries: u64,
    /// Identity assertions remembered (see [`crate::assertion`]).
    pub assertion_cache_entries: u64,
    /// A session's access token is refreshed this long before it expires.
    pub session_refresh_margin_s: u64,
    /// Longest time between the login redirect and the callback.
    pub login_timeout_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            clock_skew_s: 60,
            max_token_bytes: 8192,
            jwks_refetch_interval: Duration::from_secs(10),
            jwks_ttl_min: Duration::from_secs(60),
            jwks_ttl_default: Duration::from_secs(300),
            jwks_ttl_max: Duration::from_secs(86400),
            realm_timeout: Duration::from_secs(5),
            token_cache_entries: 100_000,
            assertion_cache_entries: 100_000,
            session_refresh_margin_s: 30,
            login_timeout_s: 600,
        }
    }
}

/// Who the request was admitted as; plain data kept in the request CTX (rate limits key on
/// it).
#[derive(Debug, Default)]
pub enum Grant {
    /// Admitted by the `public` policy: no identity (the per-client rate limit applies).
    #[default]
    Public,
    /// Admitted by a verified JWT or session (the identity is in [`AuthCtx`]).
    Identity,
    /// Admitted by an API key, for this namespace (if the path or route names one).
    ApiKey(api_key::KeyGrant),
}

/// Who a request proved to be, as sent upstream.
pub struct Identity {
    /// The [`RealmRt::id`] it was verified under.
    pub realm: u64,
    /// `exp` of the access token (unix seconds).
    pub exp: u64,
    pub subject: HeaderValue,
    pub roles: HeaderValue,
    /// `Bearer <access token>` for `forward_token` routes, when the token did not come in the
    /// request's own `Authorization` header (sessions).
    pub bearer: Option<HeaderValue>,
    /// The user's name, for the shell (see [`jwt::Claims::name`]).
    pub name: Option<Box<str>>,
    /// The policy that verified it, and the subject and roles as the token says them: the
    /// identity assertion's `auth`, `sub` and `roles`.
    pub via: crate::assertion::Via,
    pub sub: Box<str>,
    pub role_names: Box<[Box<str>]>,
}

impl Identity {
    pub fn new(
        realm: u64,
        claims: &jwt::Claims,
        bearer: Option<HeaderValue>,
        via: crate::assertion::Via,
    ) -> Identity {
        let mut sub = Vec::with_capacity(claims.sub.len());
        jwt::push_header_item(&mut sub, &claims.sub);
        let mut roles = Vec::new();
        for r in &claims.roles {
            jwt::push_header_item(&mut roles, r);
        }
        // push_header_item emits visible ASCII only: always a valid header value.
        let hv = |b: Vec<u8>| HeaderValue::from_bytes(&b).unwrap_or(HeaderValue::from_static(""));
        Identity {
            realm,
            exp: claims.exp,
            subject: hv(sub),
            roles: hv(roles),
            bearer,
            name: claims.name.as_deref().map(Into::into),
            via,
            sub: claims.sub.as_str().into(),
            role_names: claims.roles.iter().map(|r| r.as_str().into()).collect(),
        }
    }
}

/// The auth part of the request context.
#[derive(Default)]
pub struct AuthCtx {
    pub identity: Option<Arc<Identity>>,
    /// `Set-Cookie` values for the proxied response (a refreshed session).
    pub set_cookies: Vec<HeaderValue>,
    /// The route checked credentials: `Authorization` goes upstream only with `forward_token`.
    pub checked: bool,
    pub forward_token: bool,
}

/// A response the gateway writes itself instead of proxying.
pub struct Reply {
    pub head: Box<ResponseHeader>,
    pub body: Bytes,
}

/// One request as auth sees it.
pub struct Request<'a> {
    pub req: &'a RequestHeader,
    /// The request's scheme is https (`crate::request::scheme::Scheme`): the cookies' `Secure`
    /// and `__Host-` names, the login redirect URI and the origin a logout must come from.
    pub https: bool,
    /// The tenant's id (session cookies are bound to it) and its realm, if it has one.
    pub tenant: &'a str,
    pub realm: Option<&'a Arc<RealmRt>>,
    pub request_id: &'a HeaderValue,
}

/// Shared auth state: settings, the realm HTTP client, session keys, the verified-token cache.
pub struct Auth {
    pub config: AuthConfig,
    pub http: reqwest::Client,
    pub keys: SessionKeys,
    pub metrics: Arc<AuthMetrics>,
    tokens: Cache<[u8; 32], Arc<Identity>, ahash::RandomState>,
    /// Identity assertions minted for upstream requests.
    pub assertions: crate::assertion::Assertions,
}

/// Expire cached tokens when they stop being acceptable (`exp` + skew).
struct TokenExpiry {
    skew: u64,
}

impl moka::Expiry<[u8; 32], Arc<Identity>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Identity>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let until = value.exp.saturating_add(self.skew);
        Some(Duration::from_secs(until.saturating_sub(unix_now())))
    }
}

impl Auth {
    pub fn new(
        config: AuthConfig,
        keys: SessionKeys,
        metrics: Arc<AuthMetrics>,
    ) -> Result<Auth, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.realm_timeout)
            .timeout(config.realm_timeout)
            .build()
            .map_err(|e| format!("realm HTTP client: {e}"))?;
        let tokens = Cache::builder()
            .max_capacity(config.token_cache_entries)
            .expire_after(TokenExpiry {
                skew: config.clock_skew_s,
            })
            .build_with_hasher(ahash::RandomState::new());
        metrics.declare_failures(AuthError::ALL.iter().map(|e| e.label()));
        let assertions = crate::assertion::Assertions::new(config.assertion_cache_entries);
        Ok(Auth {
            assertions,
            config,
            http,
            keys,
            metrics,
            tokens,
        })
    }

    /// Run the route's policy. `None`: the request passes (identity, if any, in `actx`);
    /// `Some`: the response to send instead (401/400/503, or a redirect to log in).
    pub async fn check(
        &self,
        r: &Request<'_>,
        policy: Policy,
        actx: &mut AuthCtx,
    ) -> Option<Reply> {
        actx.checked = true;
        actx.forward_token = policy.forward_token;
        let Some(realm) = r.realm else {
            // Validation refuses jwt/session routes without a realm; be safe anyway.
            return Some(self.refusal(r, AuthError::RealmUnavailable, policy));
        };
        let mut failure = AuthError::Missing;
        if policy.jwt {
            match self.bearer(r.req, realm).await {
                Ok(Some(identity)) => {
                    actx.identity = Some(identity);
                    return None;
                }
                Ok(None) => {}
                Err(e) if e.status() == 400 || e == AuthError::RealmUnavailable => {
                    self.metrics.failure(e.label());
                    return Some(self.refusal(r, e, policy));
                }
                Err(e) => failure = e,
            }
        }
        if policy.session {
            match self.session(r, realm, actx).await {
                Ok(true) => return None,
                Ok(false) => {}
                Err(e) => {
                    if failure == AuthError::Missing {
                        failure = e;
                    }
                }
            }
        }
        if policy.public {
            return None;
        }
        self.metrics.failure(failure.label());
        let mut reply =
            if policy.session && headers::is_navigation(r.req) && failure.status() == 401 {
                self.start_login(r, realm).await
            } else {
                self.refusal(r, failure, policy)
            };
        // An ended session's cookies are cleared on the refusal too.
        for cookie in actx.set_cookies.drain(..) {
            let _ = reply.head.append_header(http::header::SET_COOKIE, cookie);
        }
        Some(reply)
    }

    /// The bearer token of `Authorization`, verified (cache first). `Ok(None)`: no token.
    async fn bearer(
        &self,
        req: &RequestHeader,
        realm: &Arc<RealmRt>,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        let mut values = headers::authorizations(req);
        let value = match (values.next(), values.next()) {
            (None, _) => {
                check_query(req)?;
                return Ok(None);
            }
            (Some(v), None) => v,
            _ => return Err(AuthError::RepeatedAuthorization),
        };
        let token = headers::bearer(value).ok_or(AuthError::NotBearer)?;
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::TooLarge);
        }
        let token = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
        check_query(req)?;
        check_cookies(req, token)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(hit) = self.tokens.get(&digest) {
            if hit.realm == realm.id && now < hit.exp.saturating_add(self.config.clock_skew_s) {
                self.metrics.token_cache_hit.inc();
                return Ok(Some(hit));
            }
        }
        self.metrics.token_cache_miss.inc();
        let claims = self.verify_access(token, realm, None).await?;
        let identity = Arc::new(Identity::new(
            realm.id,
            &claims,
            None,
            crate::assertion::Via::Jwt,
        ));
        self.tokens.insert(digest, Arc::clone(&identity));
        Ok(Some(identity))
    }

    /// Full check of an access token against `realm` (no cache): keys, signature, claims.
    /// `also` is one more accepted audience (the login client, for the gateway's own tokens).
    pub async fn verify_access(
        &self,
        token: &str,
        realm: &Arc<RealmRt>,
        also: Option<&str>,
    ) -> Result<jwt::Claims, AuthError> {
        let expect = Expect::Access {
            audiences: &realm.audiences,
            also,
        };
        self.verify(token, realm, expect).await
    }

    async fn verify(
        &self,
        token: &str,
        realm: &Arc<RealmRt>,
        expect: Expect<'_>,
    ) -> Result<jwt::Claims, AuthError> {
        let parsed = jwt::parse(token, self.config.max_token_bytes)?;
        let key = realm
            .jwks
            .key(
                parsed.kid.as_deref(),
                &self.http,
                &self.config,
                &self.metrics,
            )
            .await?;
        parsed.verify(
            &key,
            &Rules {
                issuer: &realm.issuer,
                now: unix_now(),
                skew: self.config.clock_skew_s,
                expect,
            },
        )
    }

    /// 401/400/503 with the `WWW-Authenticate` challenge of jwt routes.
    fn refusal(&self, r: &Request<'_>, e: AuthError, policy: Policy) -> Reply {
        let html = wants_html(r.req.headers.get(http::header::ACCEPT));
        let (mut head, body) =
            error_response(e.status(), e.code(), e.description(), html, r.request_id);
        if policy.jwt && e.status() != 503 {
            let mut challenge = format!("Bearer realm=\"{}\"", r.tenant);
            if let Some(code) = e.bearer_error() {
                challenge.push_str(&format!(
                    ", error=\"{code}\", error_description=\"{}\"",
                    e.description()
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                let _ = head.insert_header(http::header::WWW_AUTHENTICATE, v);
            }
        }
        Reply { head, body }
    }
}

/// After auth, on the upstream request: who the request is (`x-realmgate-*`: the tenant, the
/// key id and namespace, or the subject and roles) and the credentials upstream must not see
/// (an API key; `Authorization` unless the route forwards the verified token; the gateway's
/// own cookies). `tenant` is the tenant's header value and the table's keys.
pub fn upstream_identity(
    up: &mut RequestHeader,
    tenant: Option<(&HeaderValue, &api_key::Keys)>,
    grant: &Grant,
    actx: &AuthCtx,
) -> pingora_error::Result<()> {
    if let Some((header, keys)) = tenant {
        up.insert_header(X_REALMGATE_TENANT, header.clone())?;
        if let Grant::ApiKey(api_key::KeyGrant { key, namespace }) = grant {
            up.insert_header(X_REALMGATE_KEY_ID, keys.get(*key).id.clone())?;
            if let Some(ns) = namespace {
                up.insert_header(X_REALMGATE_NAMESPACE, ns.clone())?;
            }
            // The secret stays at the edge: upstreams get the key id instead. Every
            // `Authorization` value goes too: the key admitted the request, and any other
            // credential beside it was not checked, so must not look as if it had been.
            up.remove_header(&api_key::X_API_KEY);
            up.remove_header(&http::header::AUTHORIZATION);
        }
    }
    if actx.checked {
        identity_headers(up, actx)?;
    }
    // On every route, admitted or public: a key's secret never leaves the edge, and neither
    // do the gateway's own cookies.
    api_key::strip_secrets(up);
    cookie::upstream_request(up)
}

/// After the upstream answered: the gateway's own cookies, and cookies for a parent domain, are
/// set by the gateway alone (see [`cookie::is_refused_set_cookie`]).
pub fn upstream_response(resp: &mut ResponseHeader) -> pingora_error::Result<()> {
    cookie::upstream_response(resp)
}

/// The identity headers, and `Authorization` only where the route forwards the verified
/// token.
fn identity_headers(up: &mut RequestHeader, a: &AuthCtx) -> pingora_error::Result<()> {
    let Some(id) = a.identity.as_ref() else {
        up.remove_header(&http::header::AUTHORIZATION);
        return Ok(());
    };
    up.insert_header(X_REALMGATE_SUBJECT, id.subject.clone())?;
    up.insert_header(X_REALMGATE_ROLES, id.roles.clone())?;
    match (a.forward_token, id.bearer.as_ref()) {
        (true, Some(bearer)) => up.insert_header(http::header::AUTHORIZATION, bearer.clone())?,
        // A verified bearer token of the request itself: it is already there.
        (true, None) => {}
        (false, _) => {
            up.remove_header(&http::header::AUTHORIZATION);
        }
    }
    Ok(())
}

/// RFC 6750 §2.3 `access_token` in the query: refused, the header is the only place.
fn check_query(req: &RequestHeader) -> Result<(), AuthError> {
    let Some(q) = req.uri.query() else {
        return Ok(());
    };
    let found = q
        .split('&')
        .any(|p| p.split('=').next() == Some("access_token"));
    if found {
        Err(AuthError::TokenInQuery)
    } else {
        Ok(())
    }
}

/// A cookie holding a JWT other than the bearer token: two credentials, refused.
fn check_cookies(req: &RequestHeader, token: &str) -> Result<(), AuthError> {
    let other = cookie::pairs(req).any(|(_, v)| {
        let v = v.strip_prefix(b"\"").unwrap_or(v);
        let v = v.strip_suffix(b"\"").unwrap_or(v);
        v != token.as_bytes()
            && v.starts_with(b"eyJ")
            && v.iter().filter(|b| **b == b'.').count() == 2
    });
    if other {
        Err(AuthError::TokenElsewhere)
    } else {
        Ok(())
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! A realm's signing keys (JWKS): fetched lazily, refreshed in the background when stale,
//! refetched once on an unknown `kid` — single-flight and at most once per interval — and
//! kept when the realm is unreachable.

use super::error::AuthError;
use super::jwt::{Key, ALLOWED};
use super::AuthConfig;
use crate::metrics::AuthMetrics;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys kept from one document.
const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// The usable keys of one JWKS document, by `kid` (an opaque map key).
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`: usable only by tokens without one, when alone.
    anonymous: Vec<Arc<Key>>,
    loaded: bool,
}

impl KeySet {
    /// Parse a JWKS document, keeping only signature keys whose algorithm is allowed and
    /// follows from the key itself. Skipped keys are reported for the log.
    pub fn parse(doc: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(doc).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut set = KeySet {
            loaded: true,
            ..KeySet::default()
        };
        let mut skipped = Vec::new();
        for (i, raw) in doc.keys.into_iter().take(MAX_KEYS).enumerate() {
            let jwk: Jwk = match serde_json::from_value(raw) {
                Ok(j) => j,
                Err(e) => {
                    skipped.push(format!("keys[{i}]: {e}"));
                    continue;
                }
            };
            match usable_key(&jwk) {
                Ok(key) => match jwk.common.key_id {
                    Some(kid) => match set.by_kid.entry(kid) {
                        std::collections::hash_map::Entry::Occupied(_) => {
                            skipped.push(format!("keys[{i}]: kid listed twice"));
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(Arc::new(key));
                        }
                    },
                    None => set.anonymous.push(Arc::new(key)),
                },
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        Ok((set, skipped))
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for a token's `kid`; without a kid, the realm's only key.
    pub fn find(&self, kid: Option<&str>) -> Result<&Arc<Key>, AuthError> {
        match kid {
            Some(kid) => self.by_kid.get(kid).ok_or(AuthError::UnknownKid),
            None => {
                let mut all = self.by_kid.values().chain(self.anonymous.iter());
                match (all.next(), all.next()) {
                    (Some(only), None) => Ok(only),
                    (None, _) => Err(AuthError::UnknownKid),
                    _ => Err(AuthError::NoKid),
                }
            }
        }
    }
}

/// The one algorithm a JWK verifies: its `alg` when given (and consistent with the key type),
/// else what the curve implies. RSA keys without `alg` are ambiguous and skipped.
fn usable_key(jwk: &Jwk) -> Result<Key, String> {
    if let Some(u) = &jwk.common.public_key_use {
        if *u != PublicKeyUse::Signature {
            return Err("not a signature key".into());
        }
    }
    let declared = match jwk.common.key_algorithm {
        Some(ka) => Some(
            Algorithm::try_from(ka)
                .ok()
                .filter(|a| ALLOWED.contains(a))
                .ok_or_else(|| format!("algorithm {ka} is not accepted"))?,
        ),
        None => None,
    };
    let alg = match (&jwk.algorithm, declared) {
        (AlgorithmParameters::RSA(rsa), alg) => {
            let n = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                rsa.n.trim_end_matches('='),
            )
            .map_err(|_| "RSA modulus is not base64url")?;
            let bits = n.iter().skip_while(|b| **b == 0).count();
            if bits < MIN_RSA_BYTES {
                return Err("RSA key shorter than 2048 bits".into());
            }
            match alg {
                Some(
                    a @ (Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512),
                ) => a,
                Some(a) => return Err(format!("RSA key declared for {a:?}")),
                None => return Err("RSA key without alg is ambiguous".into()),
            }
        }
        (AlgorithmParameters::EllipticCurve(ec), alg) => {
            let implied = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("unsupported curve".into()),
            };
            if alg.is_some_and(|a| a != implied) {
                return Err("alg does not match the curve".into());
            }
            implied
        }
        (AlgorithmParameters::OctetKeyPair(okp), alg) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("unsupported curve".into());
            }
            if alg.is_some_and(|a| a != Algorithm::EdDSA) {
                return Err("alg does not match the curve".into());
            }
            Algorithm::EdDSA
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            return Err("symmetric keys are never accepted".into())
        }
        _ => return Err("unsupported key type".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(Key { alg, key })
}

/// One realm's JWKS state, shared by every table version that names the same URI.
pub struct Jwks {
    pub uri: Box<str>,
    keys: ArcSwap<KeySet>,
    /// Unix ms until which the keys are fresh; 0 before the first fetch.
    fresh_until: AtomicU64,
    /// Bumped on every successful fetch: waiters that queued behind a fetch see it and return.
    generation: AtomicU64,
    /// Bumped after every fetch attempt, failed ones too: a waiter that queued behind an
    /// attempt takes its outcome instead of starting a fetch of its own (a hanging realm
    /// must not be asked once per waiter, one after the other).
    attempts: AtomicU64,
    /// Single flight: one fetch at a time; holds the time of the last attempt.
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(uri: &str) -> Jwks {
        Jwks {
            uri: uri.into(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            fresh_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The key for `kid`, fetching the keys first if there are none yet, and once more (rate
    /// limited) if the kid is unknown.
    pub async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        http: &reqwest::Client,
        config: &AuthConfig,
        metrics: &Arc<AuthMetrics>,
    ) -> Result<Arc<Key>, AuthError> {
        let generation = self.generation.load(Ordering::Acquire);
        let keys = self.keys.load();
        if !keys.loaded {
            drop(keys);
            self.refresh_bounded(generation, http, config, metrics)
                .await;
            let keys = self.keys.load();
            if !keys.loaded {
                return Err(AuthError::RealmUnavailable);
            }
            return keys.find(kid).cloned();
        }
        if unix_ms() > self.fresh_until.load(Ordering::Relaxed) {
            self.refresh_in_background(http, config, metrics);
        }
        match keys.find(kid) {
            Ok(key) => Ok(Arc::clone(key)),
            Err(AuthError::UnknownKid) => {
                drop(keys);
                self.refresh_bounded(generation, http, config, metrics)
                    .await;
                self.keys.load().find(kid).cloned()
            }
            Err(e) => Err(e),
        }
    }

    /// The keys as they are now (tests and diagnostics).
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    fn refresh_in_background(
        self: &Arc<Self>,
        http: &reqwest::Client,
        config: &AuthConfig,
        metrics: &Arc<AuthMetrics>,
    ) {
        // Someone is fetching already: nothing to do.
        if self.fetch.try_lock().is_err() {
            return;
        }
        let (me, http, config, metrics) = (
            Arc::clone(self),
            http.clone(),
            config.clone(),
            Arc::clone(metrics),
        );
        let generation = self.generation.load(Ordering::Acquire);
        tokio::spawn(async move { me.refresh(generation, &http, &config, &metrics).await });
    }

    /// [`Jwks::refresh`] for a request waiting on it: bounded by the realm timeout from this
    /// waiter's own start, however long the queue in front of it.
    async fn refresh_bounded(
        &self,
        seen: u64,
        http: &reqwest::Client,
        config: &AuthConfig,
        metrics: &AuthMetrics,
    ) {
        let bounded = tokio::time::timeout(
            config.realm_timeout,
            self.refresh(seen, http, config, metrics),
        );
        if bounded.await.is_err() {
            log::debug!("jwks {}: gave up waiting for the realm's keys", self.uri);
        }
    }

    /// Fetch unless someone else fetched since `seen`, another attempt ended while this one
    /// waited, or the last attempt is younger than the refetch interval. On failure the old
    /// keys stay.
    async fn refresh(
        &self,
        seen: u64,
        http: &reqwest::Client,
        config: &AuthConfig,
        metrics: &AuthMetrics,
    ) {
        let attempts = self.attempts.load(Ordering::Acquire);
        let mut last = self.fetch.lock().await;
        if self.generation.load(Ordering::Acquire) != seen
            || self.attempts.load(Ordering::Acquire) != attempts
        {
            return;
        }
        let interval = if self.keys.load().loaded {
            config.jwks_refetch_interval
        } else {
            // Nothing to serve with yet: retry sooner, still never in a storm.
            config.jwks_refetch_interval.min(Duration::from_secs(1))
        };
        if last.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        *last = Some(Instant::now());
        let fetched = fetch(http, &self.uri, config).await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match fetched {
            Ok((set, skipped, ttl)) => {
                for s in &skipped {
                    log::warn!("jwks {}: skipped {s}", self.uri);
                }
                metrics.jwks_fetch_ok.inc();
                self.keys.store(Arc::new(set));
                self.fresh_until
                    .store(unix_ms() + ttl.as_millis() as u64, Ordering::Relaxed);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                metrics.jwks_fetch_error.inc();
                log::warn!(
                    "jwks {}: fetch failed, keeping {} cached key(s): {e}",
                    self.uri,
                    self.keys.load().len()
                );
            }
        }
    }
}

async fn fetch(
    http: &reqwest::Client,
    uri: &str,
    config: &AuthConfig,
) -> Result<(KeySet, Vec<String>, Duration), String> {
    let resp = http
        .get(uri)
        .header("accept", "application/json")
        .timeout(config.realm_timeout)
        .send()
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let ttl = max_age(resp.headers().get("cache-control"))
        .unwrap_or(config.jwks_ttl_default)
        .clamp(config.jwks_ttl_min, config.jwks_ttl_max);
    let body = read_bounded(resp, MAX_JWKS_BYTES).await?;
    let (set, skipped) = KeySet::parse(&body)?;
    Ok((set, skipped, ttl))
}

/// Read a response body, refusing more than `max` bytes.
pub async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("body larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body: {e}"))? {
        if body.len() + chunk.len() > max {
            return Err(format!("body larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `max-age` of a Cache-Control header (`no-cache`/`no-store` count as 0).
fn max_age(v: Option<&http::HeaderValue>) -> Option<Duration> {
    let v = v?.to_str().ok()?;
    let mut age = None;
    for d in v.split(',').map(str::trim) {
        if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            age = n.parse().ok().map(Duration::from_secs);
        }
    }
    age
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn cache_control() {
        let h = |s: &'static str| Some(http::HeaderValue::from_static(s));
        assert_eq!(
            max_age(h("public, max-age=300").as_ref()),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age(h("no-cache").as_ref()), Some(Duration::ZERO));
        assert_eq!(max_age(h("private").as_ref()), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn keys_need_an_unambiguous_allowed_algorithm() {
        let n = URL_SAFE_NO_PAD.encode([0xc5u8; 256]); // 2048 bits
        let doc = format!(
            r#"{{"keys": [
            {{"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": "{n}", "e": "AQAB"}},
            {{"kty": "RSA", "kid": "noalg", "n": "{n}", "e": "AQAB"}},
            {{"kty": "RSA", "kid": "enc", "alg": "RSA-OAEP", "use": "enc", "n": "{n}", "e": "AQAB"}},
            {{"kty": "RSA", "kid": "short", "alg": "RS256", "n": "AQAB", "e": "AQAB"}},
            {{"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "{n}", "e": "AQAB"}},
            {{"kty": "oct", "kid": "oct", "k": "c2VjcmV0"}},
            {{"kty": "EC", "kid": "ec", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty": "EC", "kid": "ec-lie", "alg": "ES384", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty": "weird", "kid": "w"}}
        ]}}"#
        );
        let (set, skipped) = KeySet::parse(doc.as_bytes()).expect("parse");
        let mut kids: Vec<_> = set.by_kid.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["ec", "rs"], "skipped: {skipped:?}");
        assert_eq!(skipped.len(), 7, "{skipped:?}");
        assert_eq!(set.by_kid["ec"].alg, Algorithm::ES256);
        assert!(matches!(set.find(None), Err(AuthError::NoKid)));
        assert!(matches!(
            set.find(Some("../../dev/null")),
            Err(AuthError::UnknownKid)
        ));
        assert!(KeySet::parse(b"{\"nokeys\": 1}").is_err());
    }
}

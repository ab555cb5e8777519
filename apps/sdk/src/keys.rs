//! The fleet's public keys: fetched from the JWKS URL, kept, and fetched again when an
//! assertion names a `kid` not seen yet (a rotation) or the set is older than its TTL — at
//! most once per refetch interval, however many requests ask, so a flood of unknown `kid`s
//! costs the JWKS server one request per interval.

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::DecodingKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Why no key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The set is known and has no such `kid`.
    Unknown,
    /// No set could be fetched yet.
    Unavailable,
}

pub(crate) struct KeySet {
    url: Option<String>,
    http: reqwest::Client,
    refetch_interval: Duration,
    ttl: Duration,
    state: RwLock<State>,
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last tried.
    tried: Option<Instant>,
}

impl KeySet {
    pub fn new(url: String, refetch_interval: Duration, ttl: Duration, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        KeySet {
            url: Some(url),
            http,
            refetch_interval,
            ttl,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// A fixed set, never fetched (tests, or an app that pins the keys).
    pub fn fixed(set: &JwkSet) -> Self {
        let ks = KeySet {
            url: None,
            http: reqwest::Client::new(),
            refetch_interval: Duration::MAX,
            ttl: Duration::MAX,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        };
        ks.install(set);
        ks
    }

    /// JWKS requests made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyError> {
        let (found, stale) = self.lookup(kid);
        if let (Some(key), false) = (&found, stale) {
            return Ok(Arc::clone(key));
        }
        self.refresh().await;
        match self.lookup(kid) {
            (Some(key), _) => Ok(key),
            (None, _) if self.read().fetched.is_some() => Err(KeyError::Unknown),
            (None, _) => Err(KeyError::Unavailable),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key, and whether the set is past its TTL.
    fn lookup(&self, kid: &str) -> (Option<Arc<DecodingKey>>, bool) {
        let s = self.read();
        let stale = s.fetched.is_none_or(|t| t.elapsed() >= self.ttl);
        (s.keys.get(kid).cloned(), stale && self.url.is_some())
    }

    /// Fetch the set, unless a fetch was tried within the refetch interval (callers that
    /// queue behind a fetch then use its result).
    async fn refresh(&self) {
        let Some(url) = &self.url else {
            return;
        };
        let _one = self.fetching.lock().await;
        if self
            .read()
            .tried
            .is_some_and(|t| t.elapsed() < self.refetch_interval)
        {
            return;
        }
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .tried = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let got = async {
            let resp = self.http.get(url).send().await?.error_for_status()?;
            resp.json::<JwkSet>().await
        }
        .await;
        match got {
            Ok(set) => self.install(&set),
            // The old keys stay in use; the URL is configuration, not a secret.
            Err(e) => log::warn!("realmgate JWKS {url}: {e}"),
        }
    }

    /// Keep the set's ES256 P-256 keys (anything else is ignored).
    fn install(&self, set: &JwkSet) {
        let keys: HashMap<String, Arc<DecodingKey>> = set
            .keys
            .iter()
            .filter(|k| {
                k.common
                    .key_algorithm
                    .is_none_or(|a| a == KeyAlgorithm::ES256)
                    && matches!(
                        &k.algorithm,
                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec)
                            if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256
                    )
            })
            .filter_map(|k| {
                let kid = k.common.key_id.clone()?;
                DecodingKey::from_jwk(k).ok().map(|d| (kid, Arc::new(d)))
            })
            .collect();
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        s.keys = keys;
        s.fetched = Some(Instant::now());
    }
}

//! The API's own bounds, applied before any handler runs: how many requests are served at
//! once, and how fast each caller may mint keys (a token bucket per caller).

use super::{error::ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Requests served at once by default; more are answered 503 at once.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// Keys one caller may mint per minute by default, after a burst of [`DEFAULT_MINT_BURST`].
pub const DEFAULT_MINT_PER_MINUTE: u32 = 60;
pub const DEFAULT_MINT_BURST: u32 = 20;
/// Idle callers' buckets are dropped past this many, so the map stays small.
const MAX_BUCKETS: usize = 10_000;

/// The API's bounds, from realmctl's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    pub max_concurrent_requests: usize,
    /// Key mints per caller (the operator, or each calling key): steady rate per minute.
    pub mint_per_minute: u32,
    /// ... and how many may come at once.
    pub mint_burst: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            mint_per_minute: DEFAULT_MINT_PER_MINUTE,
            mint_burst: DEFAULT_MINT_BURST,
        }
    }
}

/// A token bucket per caller: `burst` tokens, refilled at `per_minute`.
pub struct MintQuota {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl MintQuota {
    pub fn new(limits: &ApiLimits) -> MintQuota {
        MintQuota {
            per_second: f64::from(limits.mint_per_minute) / 60.0,
            burst: f64::from(limits.mint_burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one mint for `caller`, or say how long until one is available.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        self.take_at(caller, Instant::now())
    }

    fn take_at(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(caller) {
            // Full buckets are the same as no bucket: forget them.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + rate * now.saturating_duration_since(*at).as_secs_f64() < burst
            });
        }
        let (tokens, at) = buckets
            .entry(caller.to_owned())
            .or_insert((self.burst, now));
        let refilled = (*tokens
            + self.per_second * now.saturating_duration_since(*at).as_secs_f64())
        .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            return Ok(());
        }
        *tokens = refilled;
        if self.per_second <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
    }
}

/// At most `max_concurrent_requests` requests in handlers at once; the rest get 503 with
/// `Retry-After` without their bodies being read. Outermost, so it bounds every route.
pub async fn concurrency(State(s): State<AppState>, req: Request, next: Next) -> Response {
    // A long poll waits on its own bound (`AppState::long_polls`), taken by its handler.
    if super::table::is_long_poll(req.uri()) {
        return next.run(req).await;
    }
    match s.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::Busy.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate_per_caller() {
        let q = MintQuota::new(&ApiLimits {
            mint_per_minute: 60,
            mint_burst: 3,
            ..ApiLimits::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(q.take_at("key:a", t0), Ok(()));
        }
        let wait = q.take_at("key:a", t0).expect_err("over the burst");
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Each caller has its own bucket.
        assert_eq!(q.take_at("operator", t0), Ok(()));
        // One a second comes back, never more than the burst.
        assert_eq!(q.take_at("key:a", t0 + Duration::from_millis(1000)), Ok(()));
        assert!(q
            .take_at("key:a", t0 + Duration::from_millis(1100))
            .is_err());
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(q.take_at("key:a", later), Ok(()));
        }
        assert!(q.take_at("key:a", later).is_err());
    }
}

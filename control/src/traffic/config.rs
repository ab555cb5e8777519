//! `gateways.traffic:` in realmctl's configuration: how often each gateway's `/metrics` is
//! scraped, how long and how much one scrape may take, and how many tenants are kept.

use serde::Deserialize;
use std::time::Duration;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
pub struct TrafficFile {
    /// Milliseconds between scrapes (default 10000); 0 turns scraping off.
    pub scrape_interval_ms: Option<u64>,
    /// Longest wait for one gateway's answer (default 2000, at most the interval).
    pub timeout_ms: Option<u64>,
    /// Largest `/metrics` body read (default 8 MiB); a bigger one is a failed scrape.
    pub max_body_bytes: Option<usize>,
    /// Tenants with a ring of their own (default 1000); beyond, the least active are dropped.
    pub max_tenants: Option<usize>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSettings {
    /// `None`: no scraping (the API answers empty series).
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub max_body_bytes: usize,
    pub max_tenants: usize,
}

/// The window the rings cover.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// At most this many rounds are held, whatever the interval (memory: tenants × points).
pub const MAX_POINTS: usize = 3600;
const MIN_INTERVAL_MS: u64 = 100;
const MAX_TENANTS: usize = 100_000;

impl Default for TrafficSettings {
    fn default() -> Self {
        TrafficSettings {
            interval: Some(Duration::from_secs(10)),
            timeout: Duration::from_secs(2),
            max_body_bytes: 8 << 20,
            max_tenants: 1000,
        }
    }
}

impl TrafficSettings {
    /// Rounds held: the last hour at the scrape interval, at most [`MAX_POINTS`].
    pub fn points(&self) -> usize {
        let step = self.interval.map_or(1, |i| i.as_millis().max(1));
        let points = WINDOW.as_millis().div_ceil(step);
        usize::try_from(points)
            .unwrap_or(MAX_POINTS)
            .clamp(2, MAX_POINTS)
    }
}

/// Check the section; every problem goes to `problems`.
pub fn resolve(f: Option<TrafficFile>, problems: &mut Vec<String>) -> TrafficSettings {
    let d = TrafficSettings::default();
    let Some(f) = f else { return d };
    let interval = match f.scrape_interval_ms {
        Some(0) => None,
        Some(ms) if ms < MIN_INTERVAL_MS => {
            problems.push(format!(
                "gateways.traffic.scrape_interval_ms: at least {MIN_INTERVAL_MS} (or 0: off)"
            ));
            d.interval
        }
        Some(ms) => Some(Duration::from_millis(ms)),
        None => d.interval,
    };
    let timeout = match f.timeout_ms {
        Some(0) => {
            problems.push("gateways.traffic.timeout_ms: must be at least 1".into());
            d.timeout
        }
        Some(ms) => Duration::from_millis(ms),
        None => interval.map_or(d.timeout, |i| d.timeout.min(i)),
    };
    if interval.is_some_and(|i| timeout > i) {
        problems.push(
            "gateways.traffic.timeout_ms: must not exceed scrape_interval_ms (a slow gateway would delay the next round)".into(),
        );
    }
    let max_body_bytes = match f.max_body_bytes {
        Some(n) if n < 1024 => {
            problems.push("gateways.traffic.max_body_bytes: must be at least 1024".into());
            d.max_body_bytes
        }
        Some(n) => n,
        None => d.max_body_bytes,
    };
    let max_tenants = match f.max_tenants {
        Some(n) if n == 0 || n > MAX_TENANTS => {
            problems.push(format!("gateways.traffic.max_tenants: 1 to {MAX_TENANTS}"));
            d.max_tenants
        }
        Some(n) => n,
        None => d.max_tenants,
    };
    TrafficSettings {
        interval,
        timeout,
        max_body_bytes,
        max_tenants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> TrafficFile {
        serde_yaml::from_str(yaml).expect("yaml")
    }

    #[test]
    fn defaults_and_bounds() {
        let mut p = Vec::new();
        assert_eq!(resolve(None, &mut p), TrafficSettings::default());
        assert_eq!(TrafficSettings::default().points(), 360);
        let s = resolve(Some(file("scrape_interval_ms: 500")), &mut p);
        assert_eq!(
            (s.interval, s.timeout, s.points()),
            (
                Some(Duration::from_millis(500)),
                Duration::from_millis(500),
                3600
            )
        );
        assert!(resolve(Some(file("scrape_interval_ms: 0")), &mut p)
            .interval
            .is_none());
        assert!(p.is_empty(), "{p:?}");
        for (bad, why) in [
            ("scrape_interval_ms: 5", "scrape_interval_ms: at least 100"),
            ("timeout_ms: 0", "timeout_ms: must be at least 1"),
            (
                "scrape_interval_ms: 1000\ntimeout_ms: 2000",
                "must not exceed",
            ),
            (
                "max_body_bytes: 10",
                "max_body_bytes: must be at least 1024",
            ),
            ("max_tenants: 0", "max_tenants: 1 to"),
        ] {
            let mut p = Vec::new();
            resolve(Some(file(bad)), &mut p);
            assert!(p.len() == 1 && p[0].contains(why), "{bad}: {p:?}");
        }
    }
}

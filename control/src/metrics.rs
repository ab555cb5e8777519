//! Every metric realmctl exports, defined once. Labels are bounded: gateways come from the
//! configuration or discovery (a dropped gateway's series are removed), routes from the
//! router's own patterns, results from a fixed set.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    pub table_version: IntGauge,
    pub table_bytes: IntGauge,
    pub tenants: IntGauge,
    compiles: IntCounter,
    compile_seconds: Histogram,
    pushes: IntCounterVec,
    push_seconds: Histogram,
    applied: IntGaugeVec,
    requests: IntCounterVec,
    /// 1 while this process may write (holds the Lease, or none is configured).
    pub leader: IntGauge,
    pub lease_transitions: IntGauge,
    pub lease_failures: IntCounter,
    /// Gateways discovered from EndpointSlices (ready, not terminating).
    pub discovered_gateways: IntGauge,
    /// Push workers running: one per gateway, static or discovered.
    pub push_workers: IntGauge,
    /// Discovery failures (list or watch refused, API server away), and complete lists.
    pub discovery_errors: IntCounter,
    pub discovery_lists: IntCounter,
    /// Seconds until each certificate's not-after, set at each scrape.
    cert_expiry: IntGaugeVec,
    /// Tables sent, by kind (`full`: `PUT`, `delta`: `PATCH`).
    table_pushes: IntCounterVec,
    /// Deltas not applied, after which the full table was sent, by reason.
    delta_fallbacks: IntCounterVec,
    /// Audit entries whose write or commit failed (each logged), brought up to the
    /// service's count at each scrape.
    audit_lost: IntCounter,
}

/// Why a gateway was sent the full table after a delta (the `reason` label).
pub const DELTA_FALLBACK_REASONS: [&str; 5] = [
    "wrong_base",
    "digest_mismatch",
    "conflict",
    "unsupported",
    "rejected",
];

/// Certificates with a label of their own; the rest report their soonest expiry as
/// `certificate="_other"`, so an alert on the nearest expiry still fires.
pub const CERT_LABEL_BUDGET: usize = 1000;

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let table_version =
            IntGauge::new("realmctl_table_version", "Newest compiled table version")?;
        let table_bytes =
            IntGauge::new("realmctl_table_bytes", "Size of the newest compiled table")?;
        let tenants = IntGauge::new("realmctl_tenants", "Tenants in the newest compiled table")?;
        let compiles = IntCounter::new("realmctl_table_compiles_total", "Tables compiled")?;
        let compile_seconds = Histogram::with_opts(
            HistogramOpts::new("realmctl_table_compile_seconds", "Time to compile a table")
                .buckets(vec![
                    0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
        )?;
        let pushes = IntCounterVec::new(
            Opts::new(
                "realmctl_pushes_total",
                "Table pushes to gateways, by gateway and result",
            ),
            &["gateway", "result"],
        )?;
        let push_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "realmctl_push_seconds",
                "Time for one table push to be answered",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        let applied = IntGaugeVec::new(
            Opts::new(
                "realmctl_gateway_applied_version",
                "Table version each gateway serves",
            ),
            &["gateway"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "realmctl_http_requests_total",
                "API requests, by route and status class",
            ),
            &["method", "route", "class"],
        )?;
        let leader = IntGauge::new(
            "realmctl_leader",
            "1 while this realmctl may write (it holds the Lease, or none is configured)",
        )?;
        let lease_transitions = IntGauge::new(
            "realmctl_lease_transitions",
            "leaseTransitions of the Lease as last read",
        )?;
        let lease_failures = IntCounter::new(
            "realmctl_lease_failures_total",
            "Reads or writes of the Lease that failed",
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(lease_transitions.clone()))?;
        registry.register(Box::new(lease_failures.clone()))?;
        let discovered_gateways = IntGauge::new(
            "realmctl_discovered_gateways",
            "Gateways discovered from the gateway Service's EndpointSlices",
        )?;
        let push_workers = IntGauge::new(
            "realmctl_push_workers",
            "Push workers running (one per gateway)",
        )?;
        let discovery_errors = IntCounter::new(
            "realmctl_gateway_discovery_errors_total",
            "Failed EndpointSlice lists and watches",
        )?;
        let discovery_lists = IntCounter::new(
            "realmctl_gateway_discovery_lists_total",
            "Complete EndpointSlice lists (the first, and after each expired watch)",
        )?;
        for m in [&discovered_gateways, &push_workers] {
            registry.register(Box::new(m.clone()))?;
        }
        for m in [&discovery_errors, &discovery_lists] {
            registry.register(Box::new(m.clone()))?;
        }
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "realmctl_certificate_expiry_seconds",
                "Seconds until each certificate's not-after (negative once expired; beyond \
                 the label budget, the soonest of the rest as certificate=\"_other\")",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(cert_expiry.clone()))?;
        let table_pushes = IntCounterVec::new(
            Opts::new(
                "realmctl_table_pushes_total",
                "Tables sent to gateways, by kind (full: PUT, delta: PATCH)",
            ),
            &["kind"],
        )?;
        let delta_fallbacks = IntCounterVec::new(
            Opts::new(
                "realmctl_table_delta_fallbacks_total",
                "Deltas a gateway did not apply, so the full table was sent, by reason",
            ),
            &["reason"],
        )?;
        for kind in ["full", "delta"] {
            table_pushes.with_label_values(&[kind]);
        }
        for reason in DELTA_FALLBACK_REASONS {
            delta_fallbacks.with_label_values(&[reason]);
        }
        registry.register(Box::new(table_pushes.clone()))?;
        registry.register(Box::new(delta_fallbacks.clone()))?;
        registry.register(Box::new(table_version.clone()))?;
        registry.register(Box::new(table_bytes.clone()))?;
        registry.register(Box::new(tenants.clone()))?;
        registry.register(Box::new(compiles.clone()))?;
        registry.register(Box::new(compile_seconds.clone()))?;
        registry.register(Box::new(pushes.clone()))?;
        registry.register(Box::new(push_seconds.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        let audit_lost = IntCounter::new(
            "realmctl_audit_entries_lost_total",
            "Audit entries of answered calls whose write or commit failed (each logged)",
        )?;
        registry.register(Box::new(audit_lost.clone()))?;
        Ok(Metrics {
            registry,
            table_version,
            table_bytes,
            tenants,
            compiles,
            compile_seconds,
            pushes,
            push_seconds,
            applied,
            requests,
            leader,
            lease_transitions,
            lease_failures,
            discovered_gateways,
            push_workers,
            discovery_errors,
            discovery_lists,
            cert_expiry,
            table_pushes,
            delta_fallbacks,
            audit_lost,
        })
    }

    /// Bring the lost audit entries' counter up to `total`, the service's count.
    pub fn set_audit_entries_lost(&self, total: u64) {
        let now = self.audit_lost.get();
        if total > now {
            self.audit_lost.inc_by(total - now);
        }
    }

    /// A table sent: `delta` (`PATCH`) or `full` (`PUT`).
    pub fn table_pushed(&self, delta: bool) {
        let kind = if delta { "delta" } else { "full" };
        self.table_pushes.with_label_values(&[kind]).inc();
    }

    /// A delta was not applied; `reason` is one of [`DELTA_FALLBACK_REASONS`].
    pub fn delta_fallback(&self, reason: &str) {
        self.delta_fallbacks.with_label_values(&[reason]).inc();
    }

    /// One table compiled in `took`: its version, size in bytes and tenant count.
    pub fn observe_compile(&self, took: Duration, version: u64, bytes: usize, tenants: usize) {
        self.compiles.inc();
        self.compile_seconds.observe(took.as_secs_f64());
        self.table_version.set(to_i64(version));
        self.table_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.tenants.set(i64::try_from(tenants).unwrap_or(i64::MAX));
    }

    /// One push answered (or failed) after `took`; `result` is one of the fixed outcomes.
    pub fn observe_push(&self, gateway: &str, result: &str, took: Duration) {
        self.pushes.with_label_values(&[gateway, result]).inc();
        self.push_seconds.observe(took.as_secs_f64());
    }

    pub fn set_applied(&self, gateway: &str, version: u64) {
        self.applied
            .with_label_values(&[gateway])
            .set(to_i64(version));
    }

    /// A gateway no longer pushed to (discovery dropped it): its series go, so a fleet
    /// whose pods come and go does not grow the label set without bound. `results`: every
    /// push result label there may be a series for.
    pub fn forget_gateway<'a>(&self, gateway: &str, results: impl IntoIterator<Item = &'a str>) {
        let _ = self.applied.remove_label_values(&[gateway]);
        for result in results {
            let _ = self.pushes.remove_label_values(&[gateway, result]);
        }
    }

    /// `route` is the router's pattern (`/v1/tenants/{id}`), never the raw path.
    pub fn observe_request(&self, method: &str, route: &str, status: u16) {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[method, route, class])
            .inc();
    }

    /// The certificates by name and not-after (Unix seconds), at `now` (seconds): replaces
    /// every series, so a removed certificate's goes.
    pub fn certificate_expiry<'a>(&self, certs: impl Iterator<Item = (&'a str, u64)>, now: u64) {
        self.cert_expiry.reset();
        let left = |not_after: u64| {
            i64::try_from(i128::from(not_after) - i128::from(now)).unwrap_or(i64::MIN)
        };
        let mut rest: Option<i64> = None;
        for (i, (name, not_after)) in certs.enumerate() {
            if i < CERT_LABEL_BUDGET {
                self.cert_expiry
                    .with_label_values(&[name])
                    .set(left(not_after));
            } else {
                rest = Some(rest.map_or(left(not_after), |r| r.min(left(not_after))));
            }
        }
        if let Some(r) = rest {
            self.cert_expiry.with_label_values(&["_other"]).set(r);
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics encoding failed: {e}");
        }
        out
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_expiry_is_seconds_left_with_bounded_labels() {
        let m = Metrics::new().expect("metrics");
        let names: Vec<String> = (0..CERT_LABEL_BUDGET + 5)
            .map(|i| format!("c{i}"))
            .collect();
        let certs = names.iter().enumerate().map(|(i, n)| {
            let not_after = if i == CERT_LABEL_BUDGET + 3 {
                900
            } else {
                5000
            };
            (n.as_str(), not_after)
        });
        m.certificate_expiry(certs, 1000);
        let text = String::from_utf8(m.render()).expect("utf-8");
        assert!(text.contains("realmctl_certificate_expiry_seconds{certificate=\"c0\"} 4000"));
        assert!(
            text.contains("realmctl_certificate_expiry_seconds{certificate=\"_other\"} -100"),
            "the soonest of the rest, expired"
        );
        let series = text
            .lines()
            .filter(|l| l.starts_with("realmctl_certificate_expiry_seconds{"))
            .count();
        assert_eq!(series, CERT_LABEL_BUDGET + 1);
        m.certificate_expiry(std::iter::empty(), 1000);
        let text = String::from_utf8(m.render()).expect("utf-8");
        assert!(!text.contains("realmctl_certificate_expiry_seconds{"));
    }
}

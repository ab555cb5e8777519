//! Every metric the gateway exports, defined once. Per-tenant counters are resolved when a
//! table is compiled, so a request increments an atomic and never touches a label map; the
//! number of tenant labels is bounded (the rest count as `_other`).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Label for requests whose host resolved to no tenant.
const NO_TENANT: &str = "";
/// Label shared by tenants beyond the label budget.
const OTHER_TENANT: &str = "_other";

/// One tenant's request counters by status class. Shared (`Arc`) by the tenants beyond the
/// label budget, so a 100k-tenant table costs one reference count per tenant, not five.
pub struct TenantCounters {
    classes: [IntCounter; 5],
    duration: Histogram,
}

impl TenantCounters {
    /// One answered request: its status, and its time from the head read to the end.
    pub fn count(&self, status: u16, seconds: Option<f64>) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].inc();
        if let Some(s) = seconds {
            self.duration.observe(s);
        }
    }
}

/// The per-tenant families: requests by status class, and request durations.
#[derive(Clone)]
struct TenantFamilies {
    requests: IntCounterVec,
    durations: HistogramVec,
}

impl TenantFamilies {
    fn counters(&self, tenant: &str) -> TenantCounters {
        TenantCounters {
            classes: CLASSES.map(|class| self.requests.with_label_values(&[tenant, class])),
            duration: self.durations.with_label_values(&[tenant]),
        }
    }

    /// Drop a tenant's series (absent ones are fine to skip).
    fn remove(&self, tenant: &str) {
        for class in CLASSES {
            let _ = self.requests.remove_label_values(&[tenant, class]);
        }
        let _ = self.durations.remove_label_values(&[tenant]);
    }
}

pub struct Metrics {
    registry: Registry,
    families: TenantFamilies,
    pub upstream_latency: Histogram,
    pub table_version: IntGauge,
    /// When the table in force was swapped in, Unix seconds with milliseconds: how stale a
    /// gateway is, and when a fleet converged (benches/convergence.py reads it).
    pub table_applied_at: Gauge,
    pub table_applies: IntCounter,
    pub table_rejections: IntCounter,
    pub upstream_endpoints: IntGaugeVec,
    /// Not-after of each certificate of the table in force, by certificate name.
    cert_expiry: IntGaugeVec,
    /// Seconds until that not-after, derived from `cert_expiry` at each scrape.
    cert_expiry_left: IntGaugeVec,
    pub unresolved: TenantCounters,
    pub auth: Arc<AuthMetrics>,
    other: Arc<TenantCounters>,
    label_budget: usize,
    labelled: Mutex<HashSet<Box<str>>>,
}

impl Metrics {
    pub fn new(label_budget: usize) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "realmgate_requests_total",
                "Requests answered, by tenant and status class",
            ),
            &["tenant", "class"],
        )?;
        // Few buckets: a labelled tenant costs 16 series here (the label budget bounds them).
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "realmgate_request_duration_seconds",
                "Time from a request's head read to the end of its answer, by tenant",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["tenant"],
        )?;
        let upstream_latency = Histogram::with_opts(
            HistogramOpts::new(
                "realmgate_upstream_latency_seconds",
                "Time from choosing an upstream endpoint to its response header",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
        )?;
        let table_version =
            IntGauge::new("realmgate_table_version", "Version of the table in force")?;
        let table_applied_at = Gauge::new(
            "realmgate_table_applied_timestamp_seconds",
            "When the table in force was swapped in, Unix seconds",
        )?;
        let table_applies = IntCounter::new("realmgate_table_applies_total", "Tables applied")?;
        let table_rejections = IntCounter::new(
            "realmgate_table_rejections_total",
            "Tables refused (invalid, not newer, or not persisted)",
        )?;
        let upstream_endpoints = IntGaugeVec::new(
            Opts::new(
                "realmgate_upstream_endpoints",
                "Endpoints per pool by health",
            ),
            &["upstream", "state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(table_version.clone()))?;
        registry.register(Box::new(table_applied_at.clone()))?;
        registry.register(Box::new(table_applies.clone()))?;
        registry.register(Box::new(table_rejections.clone()))?;
        registry.register(Box::new(upstream_endpoints.clone()))?;
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "realmgate_certificate_expiry_timestamp_seconds",
                "Not-after of each certificate in the table, Unix seconds (beyond the label \
                 budget: the earliest of the rest, as certificate=\"_other\")",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(cert_expiry.clone()))?;
        // The form the issue names, for alerts written as `< 7 * 86400`; the timestamp above
        // stays (it needs no clock on the gateway and does not change between tables).
        let cert_expiry_left = IntGaugeVec::new(
            Opts::new(
                "realmgate_certificate_expiry_seconds",
                "Seconds until each certificate's not-after at the scrape (negative once \
                 expired; same labels as realmgate_certificate_expiry_timestamp_seconds)",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(cert_expiry_left.clone()))?;
        let auth = Arc::new(AuthMetrics::new(&registry)?);
        let families = TenantFamilies {
            requests,
            durations,
        };
        let unresolved = families.counters(NO_TENANT);
        let other = Arc::new(families.counters(OTHER_TENANT));
        Ok(Metrics {
            registry,
            families,
            upstream_latency,
            table_version,
            table_applied_at,
            table_applies,
            table_rejections,
            upstream_endpoints,
            cert_expiry,
            cert_expiry_left,
            unresolved,
            auth,
            other,
            label_budget,
            labelled: Mutex::new(HashSet::new()),
        })
    }

    /// Counters for each tenant of a new table, in order; drops the series of tenants that
    /// left.
    pub fn tenant_labels<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Vec<Arc<TenantCounters>> {
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashSet::new();
        let out = ids
            .enumerate()
            .map(|(i, id)| {
                if i < self.label_budget {
                    next.insert(Box::from(id));
                    Arc::new(self.families.counters(id))
                } else {
                    Arc::clone(&self.other)
                }
            })
            .collect();
        for gone in labelled.difference(&next) {
            self.families.remove(gone);
        }
        *labelled = next;
        out
    }

    /// Counters for a tenant a change adds: its own series while the label budget has room
    /// (the budget is the same as for full tables), else `_other`.
    pub fn tenant_label(&self, id: &str) -> Arc<TenantCounters> {
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if labelled.contains(id) || labelled.len() < self.label_budget {
            labelled.insert(Box::from(id));
            Arc::new(self.families.counters(id))
        } else {
            Arc::clone(&self.other)
        }
    }

    /// A tenant a change removed: its series go, and its label is free for another tenant.
    pub fn release_tenant_label(&self, id: &str) {
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if labelled.remove(id) {
            self.families.remove(id);
        }
    }

    /// Tenants with a series of their own.
    pub fn labelled_tenants(&self) -> usize {
        self.labelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Prometheus text exposition.
    /// The certificates of the table now in force, by name and not-after (Unix seconds).
    /// Labels are bounded like tenants': past the budget, the earliest not-after of the rest
    /// is reported as `_other`, so an alert on the soonest expiry still fires.
    pub fn certificate_expiry<'a>(&self, certs: impl Iterator<Item = (&'a str, u64)>) {
        self.cert_expiry.reset();
        let mut rest: Option<u64> = None;
        for (i, (name, not_after)) in certs.enumerate() {
            if i < self.label_budget {
                self.cert_expiry
                    .with_label_values(&[name])
                    .set(i64::try_from(not_after).unwrap_or(i64::MAX));
            } else {
                rest = Some(rest.map_or(not_after, |r| r.min(not_after)));
            }
        }
        if let Some(r) = rest {
            self.cert_expiry
                .with_label_values(&[OTHER_TENANT])
                .set(i64::try_from(r).unwrap_or(i64::MAX));
        }
    }

    pub fn render(&self) -> Vec<u8> {
        self.derive_expiry_left(now_secs());
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Metrics {
    /// `realmgate_certificate_expiry_seconds` from the not-afters in force, at `now`.
    fn derive_expiry_left(&self, now: i64) {
        use prometheus::core::Collector;
        self.cert_expiry_left.reset();
        for family in self.cert_expiry.collect() {
            for m in family.get_metric() {
                let Some(name) = m.get_label().first().map(|l| l.get_value()) else {
                    continue;
                };
                let not_after = m.get_gauge().get_value() as i64;
                self.cert_expiry_left
                    .with_label_values(&[name])
                    .set(not_after.saturating_sub(now));
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Auth metrics: failures by reason (a closed set), the verified-token cache, JWKS fetches,
/// logins, refreshes and logouts. Every series is created up front, so the request path only
/// increments atomics.
pub struct AuthMetrics {
    failures: IntCounterVec,
    pub token_cache_hit: IntCounter,
    pub token_cache_miss: IntCounter,
    pub jwks_fetch_ok: IntCounter,
    pub jwks_fetch_error: IntCounter,
    pub login_ok: IntCounter,
    pub login_failed: IntCounter,
    pub refresh_ok: IntCounter,
    pub refresh_failed: IntCounter,
    pub logouts: IntCounter,
}

impl AuthMetrics {
    fn new(registry: &Registry) -> Result<AuthMetrics, prometheus::Error> {
        let failures = IntCounterVec::new(
            Opts::new(
                "realmgate_auth_failures_total",
                "Requests refused by auth, by reason (tokens are never logged)",
            ),
            &["reason"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "realmgate_token_cache_total",
                "Bearer tokens looked up in the verified-token cache, by result",
            ),
            &["result"],
        )?;
        let jwks = IntCounterVec::new(
            Opts::new(
                "realmgate_jwks_fetches_total",
                "Realm JWKS fetches by result; on error the cached keys stay in use",
            ),
            &["result"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "realmgate_logins_total",
                "Browser logins completed, by result",
            ),
            &["result"],
        )?;
        let refreshes = IntCounterVec::new(
            Opts::new(
                "realmgate_session_refreshes_total",
                "Session token refreshes, by result",
            ),
            &["result"],
        )?;
        let logouts = IntCounter::new("realmgate_logouts_total", "Browser logouts")?;
        for c in [&failures, &cache, &jwks, &logins, &refreshes] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(logouts.clone()))?;
        Ok(AuthMetrics {
            failures,
            token_cache_hit: cache.with_label_values(&["hit"]),
            token_cache_miss: cache.with_label_values(&["miss"]),
            jwks_fetch_ok: jwks.with_label_values(&["ok"]),
            jwks_fetch_error: jwks.with_label_values(&["error"]),
            login_ok: logins.with_label_values(&["ok"]),
            login_failed: logins.with_label_values(&["failed"]),
            refresh_ok: refreshes.with_label_values(&["ok"]),
            refresh_failed: refreshes.with_label_values(&["failed"]),
            logouts,
        })
    }

    /// Start the failure series of every reason at zero, so dashboards see them before the
    /// first refusal.
    pub fn declare_failures<'a>(&self, reasons: impl IntoIterator<Item = &'a str>) {
        for reason in reasons {
            let _ = self.failures.with_label_values(&[reason]);
        }
    }

    /// Count a refusal; `reason` is the error's stable label.
    pub fn failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    /// A standalone set (unit tests).
    pub fn detached() -> AuthMetrics {
        // A private registry cannot hold duplicates, so this cannot fail.
        AuthMetrics::new(&Registry::new()).expect("fresh registry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_the_tenant_label_budget() {
        let m = Metrics::new(2).expect("metrics");
        let all = m.tenant_labels(["a", "b", "c"].into_iter());
        assert!(Arc::ptr_eq(&all[2], &m.other), "beyond the budget");
        assert_eq!(m.labelled_tenants(), 2);
        let d = m.tenant_label("d");
        assert!(Arc::ptr_eq(&d, &m.other), "no room");
        all[0].count(200, Some(0.02));
        m.release_tenant_label("a");
        assert_eq!(m.labelled_tenants(), 1);
        let e = m.tenant_label("e");
        assert!(!Arc::ptr_eq(&e, &m.other), "the freed label is taken");
        e.count(200, Some(0.003));
        e.count(503, None);
        let text = String::from_utf8(m.render()).expect("utf-8");
        assert!(text.contains("tenant=\"e\""), "{text}");
        // The duration: in its bucket and above, not below; a request without one counts
        // by status only.
        for (le, n) in [("0.0025", 0), ("0.005", 1), ("+Inf", 1)] {
            let line = format!(
                "realmgate_request_duration_seconds_bucket{{tenant=\"e\",le=\"{le}\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("realmgate_requests_total{class=\"5xx\",tenant=\"e\"} 1"),
            "{text}"
        );
        assert!(!text.contains("tenant=\"a\""), "{text}");
        assert_eq!(m.labelled_tenants(), 2);
    }

    #[test]
    fn certificate_expiry_seconds_follow_the_timestamps() {
        let m = Metrics::new(1).expect("metrics");
        m.certificate_expiry([("a", 5000u64), ("b", 900), ("c", 7000)].into_iter());
        m.derive_expiry_left(1000);
        let text = String::from_utf8({
            let mut out = Vec::new();
            let _ = TextEncoder::new().encode(&m.registry.gather(), &mut out);
            out
        })
        .expect("utf-8");
        assert!(text.contains("realmgate_certificate_expiry_seconds{certificate=\"a\"} 4000"));
        assert!(
            text.contains("realmgate_certificate_expiry_seconds{certificate=\"_other\"} -100"),
            "beyond the budget: the soonest of the rest\n{text}"
        );
        assert!(
            text.contains("realmgate_certificate_expiry_timestamp_seconds{certificate=\"a\"} 5000")
        );
        m.certificate_expiry(std::iter::empty());
        m.derive_expiry_left(1000);
        let text = String::from_utf8(m.render()).expect("utf-8");
        assert!(!text.contains("realmgate_certificate_expiry_seconds{"));
    }
}

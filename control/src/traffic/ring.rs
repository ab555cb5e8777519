//! The traffic rings: each scrape round turns every gateway's counters into rates (against
//! that gateway's previous scrape) and sums them into one point for the fleet and one per
//! tenant. Counter resets (a restarted gateway) count from zero, never negative; a gateway
//! back after an outage averages over the whole gap, never a spike; a round no gateway
//! answered is a gap.

use super::parse::{Counts, Scrape};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Tenant labels that are no tenant: unresolved hosts, and the gateway's past-the-budget
/// bucket. They count in the fleet's total only.
const NOT_TENANTS: [&str; 2] = ["", "_other"];
/// Index of `5xx` in [`Counts`].
const SERVER_ERRORS: usize = 4;

/// One round of the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetPoint {
    /// Unix seconds.
    pub t: u64,
    /// `None`: no gateway gave a rate this round (a gap).
    pub rates: Option<Rates>,
    /// p95 of the request durations of every tenant (and of requests with none),
    /// milliseconds; `None` without requests.
    pub p95_ms: Option<f64>,
    /// Gateways whose rates are in this point.
    pub gateways: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub rps: f64,
    /// 5xx answers per second.
    pub errors: f64,
    /// A tenant's p95 request duration over the round, milliseconds (`None`: no request
    /// with a duration; always `None` in the fleet's rates, whose p95 is in its point).
    pub p95_ms: Option<f64>,
}

impl Rates {
    /// The 5xx share (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.rps > 0.0 {
            (self.errors / self.rps).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// One tenant's point: the round it belongs to.
#[derive(Debug, Clone, Copy)]
struct TenantPoint {
    round: u64,
    /// Requests counted in the round (the counters' growth, not a rate times a step: the
    /// rounds' timestamps are whole seconds).
    requests: f32,
    rps: f32,
    errors: f32,
    p95_ms: Option<f32>,
}

impl TenantPoint {
    fn rates(&self) -> Rates {
        Rates {
            rps: f64::from(self.rps),
            errors: f64::from(self.errors),
            p95_ms: self.p95_ms.map(f64::from),
        }
    }
}

/// A gateway's previous scrape, which the next is compared with.
struct Baseline {
    at_ms: u64,
    scrape: Scrape,
}

/// The rings, bounded: `points` rounds, `max_tenants` tenants.
pub struct Rings {
    points: usize,
    max_tenants: usize,
    baselines: HashMap<String, Baseline>,
    /// Rounds held, oldest first; the last is round `next_round - 1`.
    fleet: VecDeque<FleetPoint>,
    next_round: u64,
    tenants: HashMap<String, VecDeque<TenantPoint>>,
    /// Tenants dropped (least active beyond `max_tenants`) since start.
    pub dropped: u64,
}

/// A tenant's series as the API shows it: one entry per round held, `None` for a gap.
pub type Series = Vec<(u64, Option<Rates>)>;

impl Rings {
    pub fn new(points: usize, max_tenants: usize) -> Rings {
        Rings {
            points: points.max(2),
            max_tenants: max_tenants.max(1),
            baselines: HashMap::new(),
            fleet: VecDeque::new(),
            next_round: 0,
            tenants: HashMap::new(),
            dropped: 0,
        }
    }

    /// Record one round at `now_ms`: each gateway's scrape (`None`: it did not answer).
    /// Gateways not listed are forgotten.
    pub fn round(&mut self, now_ms: u64, scrapes: Vec<(String, Option<Scrape>)>) {
        self.baselines
            .retain(|url, _| scrapes.iter().any(|(u, _)| u == url));
        // A baseline older than the window says nothing about now.
        let oldest_ms = now_ms.saturating_sub(self.window_ms(now_ms));
        self.baselines.retain(|_, b| b.at_ms >= oldest_ms);
        let mut fleet = Rates::default();
        let mut latency: Vec<(f64, f64)> = Vec::new();
        let mut tenants: HashMap<String, (Rates, f64)> = HashMap::new();
        let mut durations: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        let mut gateways = 0u32;
        for (url, scrape) in scrapes {
            let Some(scrape) = scrape else { continue };
            if let Some(prev) = self.baselines.get(&url) {
                let secs = now_ms.saturating_sub(prev.at_ms) as f64 / 1000.0;
                if secs > 0.0 {
                    gateways += 1;
                    for (tenant, counts) in &scrape.requests {
                        let d = deltas(counts, prev.scrape.requests.get(tenant));
                        let (rps, errors) = (d.iter().sum::<f64>() / secs, d[SERVER_ERRORS] / secs);
                        fleet.rps += rps;
                        fleet.errors += errors;
                        if !NOT_TENANTS.contains(&tenant.as_str()) {
                            let (t, requests) = tenants.entry(tenant.clone()).or_default();
                            t.rps += rps;
                            t.errors += errors;
                            *requests += d.iter().sum::<f64>();
                        }
                    }
                    for (tenant, now) in &scrape.durations {
                        let before = prev.scrape.durations.get(tenant);
                        let d = histogram_delta(now, before.map_or(&[][..], Vec::as_slice));
                        add_buckets(&mut latency, &d);
                        if !NOT_TENANTS.contains(&tenant.as_str()) {
                            add_buckets(durations.entry(tenant.clone()).or_default(), &d);
                        }
                    }
                }
            }
            self.baselines.insert(
                url,
                Baseline {
                    at_ms: now_ms,
                    scrape,
                },
            );
        }
        let round = self.next_round;
        self.next_round += 1;
        self.fleet.push_back(FleetPoint {
            t: now_ms / 1000,
            rates: (gateways > 0).then_some(fleet),
            p95_ms: quantile(&latency, 0.95).map(|s| s * 1000.0),
            gateways,
        });
        while self.fleet.len() > self.points {
            self.fleet.pop_front();
        }
        for (tenant, (r, requests)) in tenants {
            let p95_ms = durations
                .get(&tenant)
                .and_then(|h| quantile(h, 0.95))
                .map(|s| (s * 1000.0) as f32);
            self.tenants
                .entry(tenant)
                .or_default()
                .push_back(TenantPoint {
                    round,
                    requests: requests as f32,
                    rps: r.rps as f32,
                    errors: r.errors as f32,
                    p95_ms,
                });
        }
        let first = self.first_round();
        self.tenants.retain(|_, ring| {
            while ring.front().is_some_and(|p| p.round < first) {
                ring.pop_front();
            }
            !ring.is_empty()
        });
        self.bound_tenants();
    }

    /// The span the rings cover, from the rounds' own spacing (at least the newest gap).
    fn window_ms(&self, now_ms: u64) -> u64 {
        match self.fleet.front() {
            Some(p) if self.fleet.len() >= self.points => {
                now_ms.saturating_sub(p.t.saturating_mul(1000))
            }
            _ => u64::MAX,
        }
    }

    fn first_round(&self) -> u64 {
        self.next_round.saturating_sub(self.fleet.len() as u64)
    }

    /// Keep the `max_tenants` most active tenants (requests over the rings).
    fn bound_tenants(&mut self) {
        let over = self.tenants.len().saturating_sub(self.max_tenants);
        if over == 0 {
            return;
        }
        let mut activity: Vec<(f64, String)> = self
            .tenants
            .iter()
            .map(|(id, ring)| (ring.iter().map(|p| f64::from(p.rps)).sum(), id.clone()))
            .collect();
        activity.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, id) in activity.into_iter().take(over) {
            self.tenants.remove(&id);
            self.dropped += 1;
        }
    }

    pub fn fleet(&self) -> impl Iterator<Item = &FleetPoint> {
        self.fleet.iter()
    }

    /// A tenant's points, one per round held (a round without it: `None`).
    pub fn tenant(&self, id: &str) -> Series {
        let ring = self.tenants.get(id);
        let mut own = ring.into_iter().flatten().peekable();
        let first = self.first_round();
        self.fleet
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let round = first + i as u64;
                while own.peek().is_some_and(|p| p.round < round) {
                    own.next();
                }
                let r = own.peek().filter(|p| p.round == round).map(|p| p.rates());
                (f.t, r)
            })
            .collect()
    }

    /// Every tenant held: its newest rates and its requests over the rings.
    pub fn tenants(&self) -> Vec<TenantSummary> {
        let newest = self.next_round.saturating_sub(1);
        self.tenants
            .iter()
            .map(|(id, ring)| {
                let last = ring.back().filter(|p| p.round == newest);
                TenantSummary {
                    id: id.clone(),
                    now: last.map(TenantPoint::rates),
                    requests: ring.iter().map(|p| f64::from(p.requests)).sum(),
                }
            })
            .collect()
    }

    pub fn tracked(&self) -> usize {
        self.tenants.len()
    }
}

#[derive(Debug, Clone)]
pub struct TenantSummary {
    pub id: String,
    /// The newest round's rates (`None`: not in it).
    pub now: Option<Rates>,
    pub requests: f64,
}

/// Per class: what the counter grew by. A counter below its previous value was reset (the
/// gateway restarted) and counts from zero; a series absent before starts from zero too.
fn deltas(now: &Counts, before: Option<&Counts>) -> Counts {
    let mut out = *now;
    if let Some(b) = before {
        for (o, (n, b)) in out.iter_mut().zip(now.iter().zip(b)) {
            *o = if n >= b { n - b } else { *n };
        }
    }
    out
}

/// The buckets' growth since `before`; a smaller total (`+Inf`) means a reset: all of `now`.
fn histogram_delta(now: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let total = |h: &[(f64, f64)]| h.last().map_or(0.0, |b| b.1);
    if total(now) < total(before) {
        return now.to_vec();
    }
    now.iter()
        .map(|&(le, n)| {
            let b = before.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
            (le, (n - b).max(0.0))
        })
        .collect()
}

/// Sum bucket counts by `le` into `acc` (kept sorted).
fn add_buckets(acc: &mut Vec<(f64, f64)>, add: &[(f64, f64)]) {
    let mut merged: BTreeMap<u64, (f64, f64)> =
        acc.iter().map(|&(le, n)| (le.to_bits(), (le, n))).collect();
    for &(le, n) in add {
        merged.entry(le.to_bits()).or_insert((le, 0.0)).1 += n;
    }
    *acc = merged.into_values().collect();
    acc.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// The `q` quantile of cumulative buckets, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does (in the `+Inf` bucket: the highest finite bound). `None` when
/// the buckets count nothing.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, n) in buckets {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let width = n - below;
            let within = if width > 0.0 {
                (rank - below) / width
            } else {
                1.0
            };
            return Some(lower + (le - lower) * within);
        }
        lower = le;
        below = n;
    }
    Some(lower)
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;

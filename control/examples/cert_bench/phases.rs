//! Where one certificate's time went: its ACME requests (as the timing proxy saw them) cut
//! into phases at the milestones of realmctl's issuance (new order, challenge ready, order
//! ready, finalize, certificate downloaded), with the ACME round-trip time inside each phase.

use crate::proxy::{Event, Kind};
use std::time::{Duration, Instant};

pub const PHASES: [&str; 7] = [
    "tenant created → new order sent (registry, DNS record step, runner queue)",
    "new order → authorizations read (order journaled)",
    "challenge answers put in the table → every gateway applied it (then challenge ready sent)",
    "challenge ready → order ready (Pebble validates over http-01; realmctl polls)",
    "order ready → finalize sent (answers withdrawn from the table, P-256 key made and journaled)",
    "finalize → certificate downloaded (Pebble issues; realmctl polls)",
    "certificate downloaded → served (installed, table compiled, pushed to the gateways)",
];

/// One certificate's phases and the ACME round trips within each.
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    pub phase: [Duration; 7],
    pub acme: [Duration; 7],
    pub total: Duration,
}

/// The breakdown of `host`'s certificate: `events` are that host's requests, `created` when
/// its tenant was created, `served` when it was first served (or applied by every gateway).
pub fn breakdown(events: &[&Event], created: Instant, served: Instant) -> Option<Breakdown> {
    let mut ev: Vec<&Event> = events.to_vec();
    ev.sort_by_key(|e| e.start);
    let first = |k: Kind| ev.iter().find(|e| e.kind == k);
    let new_order = first(Kind::NewOrder)?;
    let authz_end = ev
        .iter()
        .find(|e| e.kind == Kind::Authz && e.start >= new_order.start)?
        .end;
    let challenge = first(Kind::Challenge)?;
    let ready = ev
        .iter()
        .find(|e| e.start >= challenge.start && e.order_status.as_deref() == Some("ready"))?;
    let finalize = first(Kind::Finalize)?;
    let certificate = ev.iter().rev().find(|e| e.kind == Kind::Certificate)?;
    let marks = [
        created,
        new_order.start,
        authz_end,
        challenge.start,
        ready.end,
        finalize.start,
        certificate.end,
        served.max(certificate.end),
    ];
    let mut b = Breakdown {
        total: marks[7].saturating_duration_since(created),
        ..Breakdown::default()
    };
    for i in 0..7 {
        b.phase[i] = marks[i + 1].saturating_duration_since(marks[i]);
        b.acme[i] = ev
            .iter()
            .filter(|e| e.start >= marks[i] && e.start < marks[i + 1])
            .map(|e| e.upstream)
            .sum();
    }
    Some(b)
}

/// The `q` quantile (0..=1) of `v`, nearest rank.
pub fn quantile(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

pub fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// The per-phase table: median and p90 of each phase, the median ACME time in it, and the
/// phase's share of all certificates' summed time.
pub fn table(breakdowns: &[Breakdown]) -> String {
    let mut out = String::from(
        "| phase | median ms | p90 ms | of which ACME round trips (median ms) | share of summed time |\n|---|---:|---:|---:|---:|\n",
    );
    let sum_total: f64 = breakdowns.iter().map(|b| b.total.as_secs_f64()).sum();
    for (i, name) in PHASES.iter().enumerate() {
        let p: Vec<Duration> = breakdowns.iter().map(|b| b.phase[i]).collect();
        let a: Vec<Duration> = breakdowns.iter().map(|b| b.acme[i]).collect();
        let sum: f64 = p.iter().map(Duration::as_secs_f64).sum();
        out += &format!(
            "| {name} | {} | {} | {} | {:.0}% |\n",
            ms(quantile(&p, 0.5)),
            ms(quantile(&p, 0.9)),
            ms(quantile(&a, 0.5)),
            100.0 * sum / sum_total.max(f64::EPSILON)
        );
    }
    let t: Vec<Duration> = breakdowns.iter().map(|b| b.total).collect();
    let acme: Vec<Duration> = breakdowns.iter().map(|b| b.acme.iter().sum()).collect();
    out += &format!(
        "| **total** | **{}** | **{}** | {} | 100% |\n",
        ms(quantile(&t, 0.5)),
        ms(quantile(&t, 0.9)),
        ms(quantile(&acme, 0.5))
    );
    out
}

/// Every request by kind: count, Pebble's summed time, and the proxy's own overhead.
pub fn requests(events: &[Event]) -> String {
    let mut kinds: Vec<Kind> = events.iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut out = String::from(
        "| ACME request | count | Pebble time, sum s | median ms | proxy overhead, sum s |\n|---|---:|---:|---:|---:|\n",
    );
    for k in kinds {
        let of: Vec<&Event> = events.iter().filter(|e| e.kind == k).collect();
        let up: Vec<Duration> = of.iter().map(|e| e.upstream).collect();
        let over: Duration = of
            .iter()
            .map(|e| {
                e.end
                    .saturating_duration_since(e.start)
                    .saturating_sub(e.upstream)
            })
            .sum();
        out += &format!(
            "| {} | {} | {:.2} | {:.1} | {:.2} |\n",
            k.name(),
            of.len(),
            up.iter().sum::<Duration>().as_secs_f64(),
            quantile(&up, 0.5).as_secs_f64() * 1000.0,
            over.as_secs_f64()
        );
    }
    out
}

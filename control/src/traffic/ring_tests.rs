//! Unit tests of the traffic rings: rates from counter deltas, resets, gaps, the tenant cap and p95.
use super::*;

fn scrape(tenants: &[(&str, [f64; 5])], latency: &[(f64, f64)]) -> Scrape {
    Scrape {
        requests: tenants.iter().map(|(t, c)| ((*t).to_owned(), *c)).collect(),
        // Durations of requests that resolved to no tenant: in the fleet's p95 only.
        durations: [(String::new(), latency.to_vec())].into_iter().collect(),
    }
}

fn ok(n: f64, errors: f64) -> [f64; 5] {
    [0.0, n, 0.0, 0.0, errors]
}

fn rps(r: &Rings, tenant: &str) -> Vec<Option<f64>> {
    r.tenant(tenant)
        .into_iter()
        .map(|(_, r)| r.map(|r| r.rps))
        .collect()
}

const A: &str = "http://a";
const B: &str = "http://b";

#[test]
fn rates_are_summed_over_gateways_from_counter_deltas() {
    let mut r = Rings::new(10, 10);
    r.round(
        10_000,
        vec![
            (A.into(), Some(scrape(&[("acme", ok(100.0, 0.0))], &[]))),
            (B.into(), Some(scrape(&[("acme", ok(50.0, 0.0))], &[]))),
        ],
    );
    // The first scrape of a gateway is its baseline: no rate yet (a gap).
    assert_eq!(r.fleet().next().map(|p| p.rates), Some(None));
    r.round(
        20_000,
        vec![
            (A.into(), Some(scrape(&[("acme", ok(150.0, 10.0))], &[]))),
            (
                B.into(),
                Some(scrape(
                    &[("acme", ok(100.0, 0.0)), ("beta", ok(5.0, 0.0))],
                    &[],
                )),
            ),
        ],
    );
    // acme: (50 + 10) + 50 over 10 s; beta appeared after B's baseline: it counts from 0.
    assert_eq!(rps(&r, "acme"), [None, Some(11.0)]);
    assert_eq!(rps(&r, "beta"), [None, Some(0.5)]);
    let p = r.fleet().last().copied().expect("point");
    let rates = p.rates.expect("rates");
    assert_eq!((rates.rps, rates.errors, p.gateways), (11.5, 1.0, 2));
    assert!((rates.error_rate() - 1.0 / 11.5).abs() < 1e-9);
    assert_eq!(p.t, 20);
}

#[test]
fn a_restarted_gateway_counts_from_zero_never_negative() {
    let mut r = Rings::new(10, 10);
    let h = |n: f64| [(0.01, n), (f64::INFINITY, n)];
    r.round(
        0,
        vec![(
            A.into(),
            Some(scrape(&[("acme", ok(1000.0, 50.0))], &h(1000.0))),
        )],
    );
    r.round(
        10_000,
        vec![(
            A.into(),
            Some(scrape(&[("acme", ok(1100.0, 50.0))], &h(1100.0))),
        )],
    );
    // Restart: counters start again (30 since).
    r.round(
        20_000,
        vec![(A.into(), Some(scrape(&[("acme", ok(30.0, 2.0))], &h(30.0))))],
    );
    r.round(
        30_000,
        vec![(
            A.into(),
            Some(scrape(&[("acme", ok(130.0, 2.0))], &h(130.0))),
        )],
    );
    let all: Vec<Rates> = r.fleet().filter_map(|p| p.rates).collect();
    assert_eq!(
        all.iter().map(|x| x.rps).collect::<Vec<_>>(),
        [10.0, 3.2, 10.0]
    );
    assert_eq!(
        all.iter().map(|x| x.errors).collect::<Vec<_>>(),
        [0.0, 0.2, 0.0]
    );
    for p in r.fleet().skip(1) {
        assert!(
            p.p95_ms.is_some_and(|ms| (0.0..=10.0).contains(&ms)),
            "{p:?}"
        );
    }
}

#[test]
fn an_outage_is_a_gap_and_the_return_averages_over_it() {
    let mut r = Rings::new(10, 10);
    r.round(
        0,
        vec![(A.into(), Some(scrape(&[("acme", ok(0.0, 0.0))], &[])))],
    );
    r.round(
        10_000,
        vec![(A.into(), Some(scrape(&[("acme", ok(100.0, 0.0))], &[])))],
    );
    r.round(20_000, vec![(A.into(), None)]);
    r.round(30_000, vec![(A.into(), None)]);
    // 300 more over the 30 s since the last answer: 10/s, not 300 in one step.
    r.round(
        40_000,
        vec![(A.into(), Some(scrape(&[("acme", ok(400.0, 0.0))], &[])))],
    );
    assert_eq!(rps(&r, "acme"), [None, Some(10.0), None, None, Some(10.0)]);
    let gateways: Vec<u32> = r.fleet().map(|p| p.gateways).collect();
    assert_eq!(gateways, [0, 1, 0, 0, 1]);
    // One gateway of two down: the other's rates, and the point says how many gave them.
    r.round(
        50_000,
        vec![
            (A.into(), Some(scrape(&[("acme", ok(500.0, 0.0))], &[]))),
            (B.into(), None),
        ],
    );
    let p = r.fleet().last().copied().expect("point");
    assert_eq!((p.rates.map(|x| x.rps), p.gateways), (Some(10.0), 1));
}

#[test]
fn the_rings_are_bounded_and_drop_the_least_active_tenants() {
    let mut r = Rings::new(3, 2);
    let mut n = 0.0;
    for round in 0..6u64 {
        n += 10.0;
        r.round(
            round * 1000,
            vec![(
                A.into(),
                Some(scrape(
                    &[
                        ("busy", ok(n * 10.0, 0.0)),
                        ("quiet", ok(n, 0.0)),
                        ("idle", ok(0.0, 0.0)),
                    ],
                    &[],
                )),
            )],
        );
        assert!(r.tracked() <= 2);
    }
    assert_eq!(r.fleet().count(), 3, "3 points held");
    assert_eq!(r.tenant("busy").len(), 3);
    assert!(r.tenant("idle").iter().all(|(_, x)| x.is_none()), "dropped");
    assert_eq!(rps(&r, "quiet"), [Some(10.0); 3]);
    assert!(r.dropped >= 1);
    // Non-tenant labels count in the fleet only.
    r.round(
        6000,
        vec![(
            A.into(),
            Some(scrape(&[("", ok(1.0, 0.0)), ("_other", ok(1.0, 0.0))], &[])),
        )],
    );
    assert!(r
        .tenants()
        .iter()
        .all(|t| !t.id.is_empty() && t.id != "_other"));
}

#[test]
fn a_gateway_no_longer_listed_is_forgotten() {
    let mut r = Rings::new(10, 10);
    r.round(
        0,
        vec![(A.into(), Some(scrape(&[("acme", ok(5.0, 0.0))], &[])))],
    );
    r.round(1000, vec![]);
    // Listed again: a fresh baseline, not a rate against the old one.
    r.round(
        2000,
        vec![(A.into(), Some(scrape(&[("acme", ok(500.0, 0.0))], &[])))],
    );
    assert_eq!(r.fleet().last().map(|p| p.rates), Some(None));
}

#[test]
fn quantiles_interpolate_like_histogram_quantile() {
    let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
    assert_eq!(quantile(&b, 0.5), Some(0.1));
    assert!((quantile(&b, 0.95).expect("q") - 0.19).abs() < 1e-9);
    // In the +Inf bucket: the highest finite bound.
    assert_eq!(
        quantile(&[(0.1, 1.0), (f64::INFINITY, 100.0)], 0.95),
        Some(0.1)
    );
    assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.95), None);
    assert_eq!(quantile(&[], 0.95), None);
    // A shrunken histogram (a reset) is taken whole.
    assert_eq!(
        histogram_delta(
            &[(0.1, 2.0), (f64::INFINITY, 3.0)],
            &[(0.1, 50.0), (f64::INFINITY, 90.0)]
        ),
        [(0.1, 2.0), (f64::INFINITY, 3.0)]
    );
}

#[test]
fn each_tenant_has_its_own_p95_and_the_fleet_s_covers_all() {
    // `fast` answers in under 10 ms, `slow` between 250 and 500 ms; two gateways each.
    let at = |n: f64, fast: f64, slow: f64| Scrape {
        requests: [("fast", ok(fast, 0.0)), ("slow", ok(slow, 0.0))]
            .into_iter()
            .map(|(t, c)| (t.to_owned(), c))
            .collect(),
        durations: [
            (
                "fast",
                vec![(0.01, fast), (0.25, fast), (f64::INFINITY, fast)],
            ),
            (
                "slow",
                vec![(0.01, 0.0), (0.25, 0.0), (0.5, slow), (f64::INFINITY, slow)],
            ),
        ]
        .into_iter()
        .map(|(t, h)| {
            (
                t.to_owned(),
                h.into_iter().map(|(le, c)| (le, c * n)).collect(),
            )
        })
        .collect(),
    };
    let mut r = Rings::new(10, 10);
    r.round(
        0,
        vec![
            (A.into(), Some(at(1.0, 0.0, 0.0))),
            (B.into(), Some(at(1.0, 0.0, 0.0))),
        ],
    );
    r.round(
        10_000,
        vec![
            (A.into(), Some(at(1.0, 100.0, 10.0))),
            (B.into(), Some(at(1.0, 100.0, 10.0))),
        ],
    );
    let p95 = |r: &Rings, t: &str| {
        r.tenant(t)
            .last()
            .and_then(|(_, r)| *r)
            .and_then(|r| r.p95_ms)
    };
    let fast = p95(&r, "fast").expect("fast has a p95");
    let slow = p95(&r, "slow").expect("slow has a p95");
    assert!(fast > 0.0 && fast <= 10.0, "{fast}");
    assert!((250.0..=500.0).contains(&slow), "{slow}");
    // 20 of 220 requests are slow: the fleet's p95 is among them.
    let fleet = r.fleet().last().and_then(|p| p.p95_ms).expect("fleet p95");
    assert!((250.0..=500.0).contains(&fleet), "{fleet}");
    // A round without requests of a tenant has no p95 for it, never a stale one.
    r.round(
        20_000,
        vec![
            (A.into(), Some(at(1.0, 100.0, 10.0))),
            (B.into(), Some(at(1.0, 100.0, 10.0))),
        ],
    );
    assert_eq!(p95(&r, "slow"), None);
}

#[test]
fn requests_in_the_window_are_counted_exactly_at_sub_second_scrapes() {
    // Rounds 300 ms apart: some share a whole second, so a rate times the step between
    // the rounds' timestamps would count 0 for them (or double for others).
    let mut r = Rings::new(100, 10);
    let mut total = 0.0;
    for i in 0..10u64 {
        let n = (i * i) as f64 * 7.0;
        r.round(
            10_000 + i * 300,
            vec![(A.into(), Some(scrape(&[("acme", ok(n, 0.0))], &[])))],
        );
        total = n;
    }
    let acme = r
        .tenants()
        .into_iter()
        .find(|t| t.id == "acme")
        .expect("acme");
    assert!(
        (acme.requests - total).abs() < 1e-3,
        "{} != {total}",
        acme.requests
    );
}

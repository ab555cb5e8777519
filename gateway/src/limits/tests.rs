//! Limits count per scope and answer with the time left in the window.

use super::*;

#[test]
fn admits_up_to_the_limit_then_refuses_with_a_reset() {
    let limiters = Limiters::default();
    let l = limiters.compile(
        scope_of(Some("acme")),
        &RateLimit {
            requests: 3,
            window_s: 60,
        },
    );
    let a = Counter::Key(stable_key("a"));
    let b = Counter::Key(stable_key("b"));
    for _ in 0..3 {
        assert!(l.admit(&a).is_ok());
    }
    let over = l.admit(&a).expect_err("fourth is over");
    assert!((1..=60).contains(&over.reset_s()), "{over:?}");
    assert!(l.admit(&b).is_ok(), "another key has its own counter");
    let mut resp = ResponseHeader::build(429, None).expect("resp");
    over.write_headers(&mut resp);
    assert_eq!(resp.headers["ratelimit-limit"], "3");
    assert_eq!(resp.headers["ratelimit-remaining"], "0");
    assert_eq!(
        resp.headers["retry-after"].to_str().ok(),
        Some(over.reset_s().to_string().as_str())
    );
}

#[test]
fn limits_of_one_scope_and_window_share_an_estimator_and_survive_recompiles() {
    let limiters = Limiters::default();
    let one = RateLimit {
        requests: 2,
        window_s: 30,
    };
    let acme = scope_of(Some("acme"));
    let l1 = limiters.compile(acme, &one);
    let key = Counter::Tenant(stable_key("acme"));
    assert!(l1.admit(&key).is_ok() && l1.admit(&key).is_ok());
    // A new table compiles the same limit again: the count carries over.
    let l2 = limiters.compile(acme, &one);
    assert!(l2.admit(&key).is_err());
    assert!(Arc::ptr_eq(&l1.rate, &l2.rate));
    let other = limiters.compile(
        acme,
        &RateLimit {
            requests: 2,
            window_s: 31,
        },
    );
    assert!(!Arc::ptr_eq(&l1.rate, &other.rate));
    // Another tenant never shares an estimator, whatever its window.
    let beta = limiters.compile(scope_of(Some("beta")), &one);
    assert!(!Arc::ptr_eq(&l1.rate, &beta.rate));
    assert!(!Arc::ptr_eq(
        &limiters.compile(scope_of(None), &one).rate,
        &l1.rate
    ));
    assert_eq!(stable_key("acme"), stable_key("acme"));
    assert_ne!(stable_key("acme"), stable_key("beta"));
}

/// One tenant's flood of distinct clients saturates only its own counters: another tenant's
/// client, with a limit of 5, is still admitted 5 times (a shared sketch would have answered
/// from counters the flood filled).
#[test]
fn one_tenants_traffic_never_limits_another() {
    let limiters = Limiters::default();
    let limit = RateLimit {
        requests: 5,
        window_s: 60,
    };
    let noisy = TenantLimits::compile(
        &limiters,
        "noisy",
        &realmgate_table::RateLimits {
            per_client: Some(limit),
            ..Default::default()
        },
    );
    let quiet = TenantLimits::compile(
        &limiters,
        "quiet",
        &realmgate_table::RateLimits {
            per_client: Some(limit),
            ..Default::default()
        },
    );
    for i in 0..200_000u32 {
        let ip = IpAddr::from(i.to_be_bytes());
        let _ = check(&noisy, None, || Some(ip));
    }
    let me: IpAddr = "192.0.2.7".parse().expect("ip");
    for n in 0..5 {
        assert!(
            check(&quiet, None, || Some(me)).is_ok(),
            "request {n} of 5 refused"
        );
    }
    assert!(check(&quiet, None, || Some(me)).is_err());
}

/// An IPv6 client is its /64: hopping addresses inside it does not buy more requests.
#[test]
fn ipv6_clients_count_as_their_64() {
    let limiters = Limiters::default();
    let t = TenantLimits::compile(
        &limiters,
        "acme",
        &realmgate_table::RateLimits {
            per_client: Some(RateLimit {
                requests: 3,
                window_s: 60,
            }),
            ..Default::default()
        },
    );
    for i in 0..3u16 {
        let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, i, 0, 0, 1]);
        assert!(check(&t, None, || Some(ip)).is_ok());
    }
    let hop = IpAddr::from([0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3]);
    assert!(
        check(&t, None, || Some(hop)).is_err(),
        "another address of the /64"
    );
    let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
    assert!(check(&t, None, || Some(other)).is_ok(), "another /64");
}

/// Estimators of tenants no table holds any more are dropped.
#[test]
fn pruning_drops_what_no_table_holds() {
    let limiters = Limiters::default();
    let limit = RateLimit {
        requests: 1,
        window_s: 60,
    };
    let kept = limiters.compile(scope_of(Some("a")), &limit);
    let gone = limiters.compile(scope_of(Some("b")), &limit);
    assert_eq!(limiters.len(), 2);
    drop(gone);
    limiters.prune();
    assert_eq!(limiters.len(), 1);
    drop(kept);
    limiters.prune();
    assert!(limiters.is_empty());
}

/// After a change, only the released scopes are looked at, and each once nothing holds it.
#[test]
fn released_scopes_are_pruned_once_unused() {
    let limiters = Limiters::default();
    let limit = RateLimit {
        requests: 1,
        window_s: 60,
    };
    let a = limiters.compile(scope_of(Some("a")), &limit);
    let b = limiters.compile(scope_of(Some("b")), &limit);
    drop(b);
    // Not released: a change leaves it alone (the next full table's prune takes it).
    limiters.prune_released();
    assert_eq!(limiters.len(), 2);
    limiters.release([scope_of(Some("a")), scope_of(Some("b"))]);
    limiters.prune_released();
    assert_eq!(limiters.len(), 1, "b is gone, a is still held");
    drop(a);
    limiters.prune_released();
    assert!(
        limiters.is_empty(),
        "a is pruned at the next prune once let go"
    );
    // A scope still in use is given up after a few prunes (bounded work per change).
    let c = limiters.compile(scope_of(Some("c")), &limit);
    limiters.release([scope_of(Some("c"))]);
    for _ in 0..5 {
        limiters.prune_released();
    }
    drop(c);
    limiters.prune_released();
    assert_eq!(limiters.len(), 1, "no longer pending");
    limiters.prune();
    assert!(limiters.is_empty());
}

/// A tenant without limits (most of a large table; they hold none) admits every request by
/// key, by client and in all, and touches no counter; one with only a tenant limit counts
/// every request against it, whoever sends it.
#[test]
fn a_tenant_without_limits_admits_everything_and_one_with_a_limit_counts() {
    let limiters = Limiters::default();
    let none = TenantLimits::compile(&limiters, "free", &Default::default());
    assert!(none.is_empty());
    let key = KeyLimit::compile(&limiters, Some("free"), "k1", None);
    let me: IpAddr = "192.0.2.7".parse().expect("ip");
    for _ in 0..1_000 {
        assert!(check(&none, None, || Some(me)).is_ok());
        assert!(check(&none, Some(&key), || Some(me)).is_ok());
    }
    let capped = TenantLimits::compile(
        &limiters,
        "capped",
        &realmgate_table::RateLimits {
            tenant: Some(RateLimit {
                requests: 3,
                window_s: 60,
            }),
            ..Default::default()
        },
    );
    assert!(!capped.is_empty());
    assert_eq!(capped.key, stable_key("capped"));
    let key = KeyLimit::compile(&limiters, Some("capped"), "k2", None);
    assert!(check(&capped, None, || Some(me)).is_ok());
    assert!(check(&capped, Some(&key), || None).is_ok());
    assert!(check(&capped, None, || None).is_ok());
    assert!(check(&capped, Some(&key), || Some(me)).is_err());
}

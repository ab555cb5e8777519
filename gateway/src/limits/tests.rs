//! Limits count per scope and answer with the time left in the window.

use super::*;

#[test]
fn admits_up_to_the_limit_then_refuses_with_a_reset() {
    let limiters = Limiters::default();
    let l = limiters.compile(&RateLimit {
        requests: 3,
        window_s: 60,
    });
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
fn limits_of_one_window_share_an_estimator_and_survive_recompiles() {
    let limiters = Limiters::default();
    let one = RateLimit {
        requests: 2,
        window_s: 30,
    };
    let l1 = limiters.compile(&one);
    let key = Counter::Tenant(stable_key("acme"));
    assert!(l1.admit(&key).is_ok() && l1.admit(&key).is_ok());
    // A new table compiles the same limit again: the count carries over.
    let l2 = limiters.compile(&one);
    assert!(l2.admit(&key).is_err());
    assert!(Arc::ptr_eq(&l1.rate, &l2.rate));
    let other = limiters.compile(&RateLimit {
        requests: 2,
        window_s: 31,
    });
    assert!(!Arc::ptr_eq(&l1.rate, &other.rate));
    assert_eq!(stable_key("acme"), stable_key("acme"));
    assert_ne!(stable_key("acme"), stable_key("beta"));
}

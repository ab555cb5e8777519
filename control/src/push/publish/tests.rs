//! The compile pacing: a lone change is compiled at once; the changes that follow within the
//! debounce wait for one table.

use super::*;
use crate::registry::Registry;

fn tenant(id: &str) -> Vec<u8> {
    format!(r#"{{"id": "{id}", "hosts": ["{id}.test"], "routes": [{{"prefix": "/", "upstream": "app", "auth": "public"}}]}}"#)
        .into_bytes()
}

/// The published version once it is at least `v`, and how long that took.
async fn published_at_least(
    rx: &mut watch::Receiver<Option<Arc<Compiled>>>,
    v: u64,
) -> (u64, Duration) {
    let started = Instant::now();
    let c = tokio::time::timeout(
        Duration::from_secs(30),
        rx.wait_for(|c| c.as_ref().is_some_and(|c| c.version >= v)),
    )
    .await
    .expect("published within 30 s")
    .expect("publisher running");
    let version = c.as_ref().map_or(0, |c| c.version);
    (version, started.elapsed())
}

#[tokio::test]
async fn a_lone_change_is_compiled_at_once_and_a_burst_after_it_is_one_table() {
    let c = Arc::new(
        Control::new(Registry::in_memory().await.expect("registry"))
            .await
            .expect("control"),
    );
    c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("upstream");
    let (tx, mut rx) = watch::channel(None);
    let (_ahead, ahead_rx) = watch::channel(0);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    // Long against a compile of two tenants, so each wait below is the pacing's.
    let debounce = Duration::from_secs(2);
    tokio::spawn(run(Arc::clone(&c), tx, metrics, debounce, ahead_rx));
    published_at_least(&mut rx, c.version()).await;

    // A quiet spell, then one change: compiled at once, not after the debounce.
    tokio::time::sleep(debounce + Duration::from_millis(200)).await;
    c.create_tenant(&tenant("lone")).await.expect("create");
    let lone = c.version();
    let (v, took) = published_at_least(&mut rx, lone).await;
    assert_eq!(v, lone);
    assert!(took < debounce / 2, "a lone change waited {took:?}");

    // A burst right after it: nothing new before the debounce has passed since the lone
    // change's compile, then one table with the whole burst.
    rx.borrow_and_update();
    for id in ["b1", "b2", "b3"] {
        c.create_tenant(&tenant(id)).await.expect("create");
    }
    let last = c.version();
    assert!(last >= lone + 3);
    tokio::time::sleep(debounce / 4).await;
    assert_eq!(rx.borrow().as_ref().map(|c| c.version), Some(lone));
    assert!(
        !rx.has_changed().expect("running"),
        "published within the debounce"
    );
    let (v, _) = published_at_least(&mut rx, last).await;
    assert_eq!(v, last, "the burst is one table");
}

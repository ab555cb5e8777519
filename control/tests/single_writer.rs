//! One writer per registry, across processes: a second realmctl started on the data
//! directory of a running one stands by (no API, no pushes, no provisioning) and takes over
//! when the first dies, with everything the first wrote.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_standby_waits_for_the_writer_and_takes_over_when_it_dies() {
    let dir = TempDir::new("single-writer");
    let mut first = Realmctl::start(&dir, &[]).await;
    let api = first.api();
    let (st, v) = api
        .call(
            Method::PUT,
            "/v1/upstreams/app",
            Some(json!({"endpoints": ["127.0.0.1:9"]})),
        )
        .await;
    assert!(st.is_success(), "{st} {v}");

    let (mut standby, addr) = first.spawn_standby(&dir);
    let log = dir.path().join("realmctl-standby.log");
    eventually(
        Duration::from_secs(20),
        "the standby says it stands by",
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains("standing by"))
                .map(|_| ())
        },
    )
    .await;
    // Standing by: alive, and not serving.
    assert!(standby.exited().is_none(), "the standby exited");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the standby serves while the writer runs"
    );
    // The writer still serves and writes.
    let (st, _) = api.call(Method::GET, "/v1/upstreams", None).await;
    assert_eq!(st, StatusCode::OK);

    // The writer dies without a word (SIGKILL): the standby takes over with its data.
    first.proc.kill();
    let standby_api = Api {
        base: format!("http://{addr}"),
        token: OPERATOR_TOKEN.into(),
        http: reqwest::Client::new(),
    };
    let v = eventually(Duration::from_secs(15), "the standby serves", || async {
        let r = standby_api
            .http
            .get(format!("{}/v1/upstreams", standby_api.base))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::OK).then_some(())?;
        r.json::<serde_json::Value>().await.ok()
    })
    .await;
    assert!(v.to_string().contains("127.0.0.1:9"), "{v}");
    assert!(std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("taking over"));
    standby.kill();
}

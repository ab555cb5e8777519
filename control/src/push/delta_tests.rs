//! A worker against a gateway on loopback that answers `PATCH /v1/table` as told: the delta
//! when it applies, the full table after each answer that falls back.

use super::super::worker::Worker;
use super::super::{Gateway, Outcome, PushSettings};
use crate::compile::delta::DeltaBody;
use crate::compile::full::Full;
use crate::compile::history::Deltas;
use crate::compile::Compiled;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use axum::routing::put;
use axum::Router;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The methods the gateway was sent, in order; PATCH answered with `patch`.
async fn gateway(patch: (StatusCode, &'static str)) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
    let app = Router::new().route(
        "/v1/table",
        put(move || async move {
            s1.lock().expect("lock").push("PUT".to_owned());
            (StatusCode::OK, r#"{"version": 8}"#)
        })
        .patch(move |body: Bytes| async move {
            let d: serde_json::Value = serde_json::from_slice(&body).expect("a delta");
            s2.lock()
                .expect("lock")
                .push(format!("PATCH from {}", d["base"]));
            patch
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn worker(url: &str, metrics: &Arc<Metrics>, applied: Option<u64>) -> Worker {
    let gateway = Arc::new(Gateway::new(url));
    if applied.is_some() {
        gateway.record(Outcome::Applied, applied, None);
    }
    let (ahead, _) = watch::channel(0);
    Worker {
        gateway,
        full_only_until: Mutex::new(None),
        binary: Default::default(),
        ahead: Arc::new(ahead),
        client: reqwest::Client::new(),
        token: None,
        settings: PushSettings::default(),
        metrics: Arc::clone(metrics),
    }
}

/// Version `version`, with a delta from the version before.
fn table_at(version: u64) -> Arc<Compiled> {
    let base = version - 1;
    Arc::new(Compiled {
        version,
        full: Full::ready(Bytes::from(format!(r#"{{"version": {version}}}"#))),
        tenants: 0,
        has_secrets: false,
        deltas: Deltas::only(
            version,
            DeltaBody {
                base,
                body: Bytes::from(format!(
                    r#"{{"base": {base}, "version": {version}, "state_digest": ""}}"#
                )),
                parts: 0,
            },
        ),
        state_digest: None,
    })
}

fn table() -> Arc<Compiled> {
    table_at(8)
}

fn metric(m: &Metrics, line: &str) -> bool {
    String::from_utf8(m.render())
        .expect("utf-8")
        .lines()
        .any(|l| l == line)
}

#[tokio::test]
async fn a_gateway_at_the_base_gets_the_delta_alone() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let (url, seen) = gateway((StatusCode::OK, r#"{"version": 8}"#)).await;
    let w = worker(&url, &metrics, Some(7));
    assert_eq!(w.push(&table()).await, Outcome::Applied);
    assert_eq!(*seen.lock().expect("lock"), ["PATCH from 7"]);
    assert_eq!(w.gateway.applied(), Some(8));
    assert!(metric(
        &metrics,
        r#"realmctl_table_pushes_total{kind="delta"} 1"#
    ));
    assert!(metric(
        &metrics,
        r#"realmctl_table_pushes_total{kind="full"} 0"#
    ));
}

#[tokio::test]
async fn every_answer_that_cannot_apply_falls_back_to_the_full_table() {
    for (status, body, reason) in [
        (
            StatusCode::CONFLICT,
            r#"{"error": "wrong_base", "version": 5}"#,
            "wrong_base",
        ),
        (
            StatusCode::CONFLICT,
            r#"{"error": "digest_mismatch"}"#,
            "digest_mismatch",
        ),
        (StatusCode::NOT_FOUND, "", "unsupported"),
        (StatusCode::METHOD_NOT_ALLOWED, "", "unsupported"),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "", "unsupported"),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"problems": ["no"]}"#,
            "rejected",
        ),
    ] {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (url, seen) = gateway((status, body)).await;
        let w = worker(&url, &metrics, Some(7));
        assert_eq!(w.push(&table()).await, Outcome::Applied, "{status}");
        assert_eq!(
            *seen.lock().expect("lock"),
            ["PATCH from 7", "PUT"],
            "{status}"
        );
        let line = format!(r#"realmctl_table_delta_fallbacks_total{{reason="{reason}"}} 1"#);
        assert!(metric(&metrics, &line), "{status}: {line}");
        assert!(metric(
            &metrics,
            r#"realmctl_table_pushes_total{kind="full"} 1"#
        ));
        // An older gateway is not asked again on the next change.
        let again = w.push(&table_at(9)).await;
        assert_eq!(again, Outcome::Applied);
        let expected_next = if reason == "unsupported" {
            "PUT"
        } else {
            "PATCH from 8"
        };
        assert_eq!(seen.lock().expect("lock")[2], expected_next, "{status}");
    }
}

#[tokio::test]
async fn a_gateway_elsewhere_or_unknown_gets_the_full_table() {
    for applied in [None, Some(3), Some(6)] {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (url, seen) = gateway((StatusCode::OK, "")).await;
        let w = worker(&url, &metrics, applied);
        assert_eq!(w.push(&table()).await, Outcome::Applied);
        assert_eq!(*seen.lock().expect("lock"), ["PUT"], "{applied:?}");
        assert!(metric(
            &metrics,
            r#"realmctl_table_pushes_total{kind="delta"} 0"#
        ));
    }
}

#[tokio::test]
async fn gateways_on_one_base_share_one_composition() {
    // Versions 2 to 4 each create 100 tenants: the delta from 1 composes 300 parts (on a
    // blocking thread).
    let secrets = crate::provision::secrets::SecretBox::random();
    let mut m = crate::model::Model::default();
    m.version = 1;
    m.upstreams.insert(
        crate::ids::UpstreamName::parse("app").expect("name"),
        crate::model::fixtures::upstream(&["127.0.0.1:9001"]),
    );
    let mut compiler = crate::compile::delta::DeltaCompiler::default();
    let mut table = compiler.compile(&m, &secrets).expect("compile");
    for v in 2..=4 {
        m.version = v;
        for i in 0..100 {
            let id = format!("n{v}-{i}");
            let (id, rec, hosts) =
                crate::model::fixtures::tenant(&id, &[&format!("{id}.test")], "app");
            m.put_tenant(id, rec, hosts);
        }
        table = compiler.compile(&m, &secrets).expect("compile");
    }
    let table = Arc::new(table);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let (url, seen) = gateway((StatusCode::OK, r#"{"version": 4}"#)).await;
    let workers: Vec<Worker> = (0..4).map(|_| worker(&url, &metrics, Some(1))).collect();
    let outcomes = futures_util::future::join_all(workers.iter().map(|w| w.push(&table))).await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Applied));
    assert_eq!(*seen.lock().expect("lock"), ["PATCH from 1"; 4]);
    assert_eq!(table.deltas.composed(), 1, "one composition for the four");
    assert!(metric(
        &metrics,
        r#"realmctl_table_pushes_total{kind="full"} 0"#
    ));
}

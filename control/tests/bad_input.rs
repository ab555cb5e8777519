//! Bad input through the real daemon: every rejection has the right status and lists every
//! problem, and none of it moves the table version or reaches a gateway. Concurrent writers
//! of one tenant lose nothing and see strictly increasing versions.

mod common;

use common::raw::raw_post;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);

fn problems(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p["at"].as_str().unwrap_or(""),
                        p["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn paths(v: &Value) -> Vec<String> {
    let mut p: Vec<String> = v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["at"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_precisely_and_changes_nothing() {
    let dir = TempDir::new("bad");
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(&dir, "g1", None).await;
    let g2 = Gateway::start(&dir, "g2", None).await;
    let ctl = Realmctl::start(&dir, &[&g1, &g2]).await;
    let api = ctl.api();
    let (s, _) = api
        .call(
            Method::PUT,
            "/v1/upstreams/app",
            Some(json!({"endpoints": [up.addr.to_string()]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, t) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body("acme", &["acme.test", "*.acme.test"], "app")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let version = t["table_version"].as_u64().expect("version");
    ctl.wait_in_sync(version, WITHIN).await;

    // Malformed JSON, and JSON that is not an object.
    for body in ["{\"id\": \"x\", \"hosts\": [", "not json", "[1, 2]", ""] {
        let (s, v) = api.raw(Method::POST, "/v1/tenants", body.to_owned()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}: {v}");
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(v["problems"].as_array().map(Vec::len), Some(1), "{v}");
    }

    // A huge body: 413 before any parsing.
    // Huge bodies: 413, whether announced by Content-Length or streamed chunked.
    let huge = format!(
        "{{\"id\": \"big\", \"display_name\": \"{}\"}}",
        "x".repeat(2 << 20)
    )
    .into_bytes();
    for chunked in [false, true] {
        let status = raw_post(
            ctl.addr,
            "/v1/tenants",
            OPERATOR_TOKEN,
            huge.clone(),
            chunked,
        )
        .await;
        assert_eq!(status, Some(413), "chunked: {chunked}");
    }
    // Just under the bound is read (and then judged on its content).
    let (s, v) = api
        .raw(
            Method::POST,
            "/v1/tenants",
            format!("{{\"x\": \"{}\"}}", "x".repeat(1_000_000)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Bad ids.
    for id in [
        "",
        "UPPER",
        "-dash",
        "dash-",
        "under_score",
        "dot.ted",
        &"a".repeat(64),
    ] {
        let mut body = tenant_body(id, &["new.test"], "app");
        body["display_name"] = json!("New");
        let (s, v) = api.call(Method::POST, "/v1/tenants", Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{id:?}");
        assert_eq!(paths(&v), ["id"], "{id:?}: {v}");
    }

    // Bad hosts, every one reported with its index; plus a duplicate within the request.
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body(
                "new",
                &[
                    "ok.test",
                    "a b.test",
                    "-x.test",
                    "*.*.test",
                    "h:80",
                    "OK.test",
                    &format!("{}.test", "a".repeat(64)),
                ],
                "app",
            )),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        paths(&v),
        ["hosts[1]", "hosts[2]", "hosts[3]", "hosts[4]", "hosts[5]", "hosts[6]"],
        "{v}"
    );
    assert!(
        problems(&v)
            .iter()
            .any(|p| p.starts_with("hosts[5]") && p.contains("listed twice")),
        "{v}"
    );

    // Hosts held by another tenant, after normalisation: 409 naming the holder.
    for host in ["ACME.TEST", "acme.test.", "*.Acme.Test"] {
        let (s, v) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(tenant_body("thief", &[host], "app")),
            )
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::CONFLICT, Some("host_conflict")),
            "{host}: {v}"
        );
        assert_eq!(v["details"]["hosts"][0]["tenant"], "acme");
    }
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body("acme", &["other.test"], "app")),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("tenant_exists"))
    );

    // Unknown upstreams, and every other field problem in one answer.
    let body = json!({"id": "new", "hosts": ["new.test"], "display_name": "",
        "routes": [{"prefix": "/", "upstream": "ghost", "auth": "public"},
                   {"prefix": "/a/../b", "upstream": "app", "auth": "public"},
                   {"prefix": "/c", "upstream": "app", "auth": "sso"}],
        "status": "paused", "colour": "red"});
    let (s, v) = api.call(Method::POST, "/v1/tenants", Some(body)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        paths(&v),
        [
            "colour",
            "display_name",
            "routes[0].upstream",
            "routes[1].prefix",
            "routes[2].auth",
            "status"
        ],
        "{v}"
    );
    assert!(
        problems(&v)
            .iter()
            .any(|p| p.contains("unknown upstream \"ghost\"")),
        "{v}"
    );

    // Patches are checked the same way; unknown tenants are 404; pools too.
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"routes": [{"prefix": "/", "upstream": "ghost", "auth": "public"}]})),
        )
        .await;
    assert_eq!(
        (s, paths(&v)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["routes[0].upstream".to_owned()]
        )
    );
    let (s, _) = api
        .call(
            Method::PATCH,
            "/v1/tenants/ghost",
            Some(json!({"display_name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/upstreams/app",
            Some(json!({"endpoints": ["localhost:80"]})),
        )
        .await;
    assert_eq!(
        (s, paths(&v)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["endpoints[0]".to_owned()]
        )
    );
    let (s, v) = api.call(Method::DELETE, "/v1/upstreams/app", None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("upstream_in_use"))
    );

    // Wrong or missing token.
    let wrong = Api {
        token: "not-the-operator-token".into(),
        ..api.clone()
    };
    let (s, _) = wrong
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body("new", &["new.test"], "app")),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // None of it reached the registry or the gateways.
    let (_, summary) = api.call(Method::GET, "/v1/table?summary=1", None).await;
    assert_eq!(summary["version"].as_u64(), Some(version));
    assert_eq!(summary["tenants"].as_u64(), Some(1));
    for g in [&g1, &g2] {
        assert_eq!(g.version().await, Some(version));
        assert_eq!(g.get("acme.test").await.map(|r| r.0), Some(200));
        assert_eq!(g.get("new.test").await.map(|r| r.0), Some(404));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_to_one_tenant_lose_nothing() {
    let dir = TempDir::new("concurrent");
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(&dir, "g1", None).await;
    let g2 = Gateway::start(&dir, "g2", None).await;
    let ctl = Realmctl::start(&dir, &[&g1, &g2]).await;
    let api = ctl.api();
    api.call(
        Method::PUT,
        "/v1/upstreams/app",
        Some(json!({"endpoints": [up.addr.to_string()]})),
    )
    .await;
    let (s, _) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body("acme", &["acme.test"], "app")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Eight writers each add their own host by read-modify-write with If-Match, retrying on
    // 412; four more change the display name blindly at the same time.
    const WRITERS: usize = 8;
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let (_, t) = api.call(Method::GET, "/v1/tenants/acme", None).await;
                let mut hosts: Vec<Value> = t["hosts"].as_array().cloned().unwrap_or_default();
                hosts.push(json!(format!("w{i}.acme.test")));
                let rev = t["revision"].as_u64().unwrap_or(0);
                let r = api
                    .http
                    .patch(format!("{}/v1/tenants/acme", api.base))
                    .bearer_auth(&api.token)
                    .header("if-match", format!("\"{rev}\""))
                    .json(&json!({"hosts": hosts}))
                    .send()
                    .await
                    .expect("send");
                match r.status() {
                    StatusCode::OK => {
                        let t: Value = r.json().await.expect("json");
                        seen.push((
                            t["revision"].as_u64().unwrap_or(0),
                            t["table_version"].as_u64().unwrap_or(0),
                        ));
                        return seen;
                    }
                    StatusCode::PRECONDITION_FAILED => continue,
                    other => panic!("writer {i}: unexpected {other}"),
                }
            }
        }));
    }
    for i in 0..4 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let (s, t) = api
                .call(
                    Method::PATCH,
                    "/v1/tenants/acme",
                    Some(json!({"display_name": format!("Acme {i}")})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{t}");
            vec![(
                t["revision"].as_u64().unwrap_or(0),
                t["table_version"].as_u64().unwrap_or(0),
            )]
        }));
    }
    let mut changes = Vec::new();
    for t in tasks {
        changes.extend(t.await.expect("task"));
    }
    // Every acknowledged change has its own revision and version, in the same order.
    changes.sort_unstable();
    for pair in changes.windows(2) {
        assert!(
            pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
            "not strictly increasing: {changes:?}"
        );
    }
    let (_, t) = api.call(Method::GET, "/v1/tenants/acme", None).await;
    let hosts: Vec<&str> = t["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for i in 0..WRITERS {
        assert!(
            hosts.contains(&format!("w{i}.acme.test").as_str()),
            "w{i} lost: {hosts:?}"
        );
    }
    assert_eq!(t["revision"].as_u64(), changes.last().map(|c| c.0));

    // And the gateways serve the final state.
    let last = changes.last().map(|c| c.1).expect("changes");
    ctl.wait_in_sync(last, WITHIN).await;
    for g in [&g1, &g2] {
        for i in 0..WRITERS {
            assert_eq!(
                g.get(&format!("w{i}.acme.test")).await.map(|r| r.0),
                Some(200)
            );
        }
    }
}

//! The admin listener: token auth, table push (200/409/422), table info, health, readiness, metrics.

use std::time::Duration;

use realmgate_e2e::{eventually, json_contains, Gateway, GatewayOpts, RawConn, Table, Upstream};
use serde_json::{json, Value};

const TOKEN: &str = "e2e-admin-token-3f9c1a";

struct Fixture {
    gw: Gateway,
    a: Upstream,
    b: Upstream,
}

async fn fixture() -> Fixture {
    let a = Upstream::start("app-a").await;
    let b = Upstream::start("app-b").await;
    let gw = Gateway::start(GatewayOpts {
        token: TOKEN.to_string(),
        ..GatewayOpts::default()
    })
    .await;
    Fixture { gw, a, b }
}

impl Fixture {
    /// Version `v`; acme.test routes to `to` ("app-a" or "app-b").
    fn table(&self, v: u64, to: &str) -> Value {
        Table::new(v)
            .upstream("app-a", [self.a.addr()])
            .upstream("app-b", [self.b.addr()])
            .tenant("acme", &["acme.test"], &[("/", to)])
            .build()
    }

    async fn acme_upstream(&self) -> String {
        self.gw.echo("acme.test", "/").await.upstream
    }
}

fn assert_digest(v: &Value) {
    let d = v["digest"].as_str().unwrap_or_default();
    let hex = d.strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "digest {d:?} is not sha256:<64 hex>"
    );
}

/// The `problems` of a 422, after checking its shape.
fn problems(status: u16, body: &Value) -> Vec<String> {
    assert_eq!(
        status, 422,
        "expected 422 invalid_table, got {status}: {body}"
    );
    assert_eq!(body["error"], "invalid_table", "{body}");
    let list: Vec<String> = body["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems array: {body}"))
        .iter()
        .map(|p| {
            p.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| p.to_string())
        })
        .collect();
    assert!(!list.is_empty(), "empty problems list: {body}");
    list
}

fn assert_all_listed(list: &[String], needles: &[&str]) {
    let missing: Vec<&&str> = needles
        .iter()
        .filter(|n| !list.iter().any(|p| p.contains(**n)))
        .collect();
    assert!(
        missing.is_empty(),
        "problems {missing:?} not reported; got {list:#?}"
    );
}

/// Authentication comes before the body: an unauthenticated push announcing a table-sized
/// body is answered 401 from its headers alone, without the gateway waiting for (or
/// buffering) a byte of it — whatever the auth header looks like.
#[tokio::test(flavor = "multi_thread")]
async fn admin_refuses_before_reading_a_body() {
    let f = fixture().await;
    let auths = [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Basic Zm9vOmJhcg==\r\n",
        "Authorization: Bearer\r\n",
    ];
    for path in ["/v1/table", "/v1/table?full=1"] {
        for method in ["PUT", "POST", "GET"] {
            for auth in auths {
                let head = format!(
                    "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\nContent-Length: 209715200\r\n\r\n"
                );
                // Only the head is sent: a 401 proves nothing of the body was needed.
                let resp = RawConn::connect(f.gw.admin_addr())
                    .await
                    .send(head.as_bytes())
                    .await;
                assert!(
                    resp.status == 401 || (resp.status == 405 && method == "POST"),
                    "{method} {path} with {auth:?}: {} {}",
                    resp.status,
                    resp.text()
                );
            }
        }
    }
    // The token still works, with the scheme in any case and several spaces (RFC 9110).
    let body = f.table(1, "app-a").to_string();
    let (status, resp) =
        f.gw.push_with(body, Some(&format!("bearer   {TOKEN}")))
            .await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = f.gw.admin_get_json("/v1/table").await;
    assert_eq!((status, &resp["version"]), (200, &json!(1)), "{resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn table_admin_requires_the_token() {
    let f = fixture().await;
    let body = f.table(1, "app-a").to_string();
    let wrong_auth = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer ".to_string()),
    ];
    for auth in &wrong_auth {
        let (status, resp) = f.gw.push_with(body.clone(), auth.as_deref()).await;
        assert_eq!(
            (status, &resp["error"]),
            (401, &json!("unauthorized")),
            "PUT with {auth:?}: {resp}"
        );
        let mut req = f.gw.client().get(f.gw.admin_url("/v1/table"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = f.gw.fetch(req).await;
        assert_eq!(r.status, 401, "GET /v1/table with {auth:?}: {}", r.text);
    }
    // Nothing was applied.
    let (status, info) = f.gw.table_info().await;
    assert_eq!(
        (status, &info["error"]),
        (404, &json!("no_table")),
        "{info}"
    );
    // The right token (the file holds it with a trailing newline) works.
    let (status, resp) = f.gw.push(&f.table(1, "app-a")).await;
    assert_eq!(status, 200, "{resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_table_is_applied_and_reported() {
    let f = fixture().await;
    let (status, info) = f.gw.table_info().await;
    assert_eq!(
        (status, &info["error"]),
        (404, &json!("no_table")),
        "{info}"
    );

    let t1 = f.table(1, "app-a");
    let (status, resp) = f.gw.push(&t1).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["version"], 1);
    assert_digest(&resp);
    assert_eq!(f.acme_upstream().await, "app-a");

    let (status, info) = f.gw.table_info().await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["version"], 1);
    assert_eq!(
        info["digest"], resp["digest"],
        "push and GET disagree on the digest"
    );

    let (status, full) = f.gw.admin_get_json("/v1/table?full=1").await;
    assert_eq!(status, 200, "{full}");
    assert!(
        json_contains(&full, &t1),
        "?full=1 is not the pushed table:\n{full:#}\nvs\n{t1:#}"
    );

    let t5 = f.table(5, "app-b");
    let (status, resp5) = f.gw.push(&t5).await;
    assert_eq!((status, &resp5["version"]), (200, &json!(5)), "{resp5}");
    assert_ne!(
        resp5["digest"], resp["digest"],
        "different tables, same digest"
    );
    assert_eq!(f.acme_upstream().await, "app-b");
    let (_, info) = f.gw.table_info().await;
    assert_eq!(
        (&info["version"], &info["digest"]),
        (&json!(5), &resp5["digest"])
    );
    let (_, full) = f.gw.admin_get_json("/v1/table?full=1").await;
    assert!(json_contains(&full, &t5), "?full=1 after v5:\n{full:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn version_not_newer_is_409_and_keeps_the_table() {
    let f = fixture().await;
    f.gw.push_ok(&f.table(2, "app-a")).await;
    for offered in [2, 1] {
        let (status, resp) = f.gw.push(&f.table(offered, "app-b")).await;
        assert_eq!(status, 409, "version {offered}: {resp}");
        assert_eq!(
            (&resp["error"], &resp["current"], &resp["offered"]),
            (&json!("version_not_newer"), &json!(2), &json!(offered)),
            "{resp}"
        );
        assert_eq!(
            f.acme_upstream().await,
            "app-a",
            "a refused table took effect"
        );
    }
    assert_eq!(f.gw.table_info().await.1["version"], 2);
    f.gw.push_ok(&f.table(3, "app-b")).await;
    assert_eq!(f.acme_upstream().await, "app-b");
}

/// One table with many independent problems (and no unknown field).
fn broken_table(a: &Upstream) -> Value {
    Table::new(2)
        .upstream("app-a", [a.addr()])
        .tenant(
            "t1",
            &["shared.test", "*.", "a..b"],
            &[("/", "app-a"), ("xyz", "app-a")],
        )
        .tenant(
            "t2",
            &["shared.test", "*foo.test"],
            &[("/", "nope-upstream"), ("/a/../b", "app-a")],
        )
        .tenant("Acme!", &["bang.test"], &[("/", "app-a")])
        .build()
}

const BROKEN_NEEDLES: &[&str] = &[
    "shared.test",   // host claimed by two tenants
    "*.",            // bad host pattern: empty wildcard suffix
    "a..b",          // bad host: empty label
    "*foo.test",     // bad host pattern: partial-label wildcard
    "xyz",           // bad prefix: no leading slash
    "/a/../b",       // bad prefix: not normalised
    "nope-upstream", // route to an unknown upstream
    "Acme!",         // bad tenant id
];

#[tokio::test(flavor = "multi_thread")]
async fn invalid_table_is_422_with_every_problem_and_keeps_the_table() {
    let f = fixture().await;
    f.gw.push_ok(&f.table(1, "app-a")).await;
    let (status, resp) = f.gw.push(&broken_table(&f.a)).await;
    let list = problems(status, &resp);
    assert_all_listed(&list, BROKEN_NEEDLES);
    assert!(
        list.len() >= BROKEN_NEEDLES.len(),
        "problems merged or lost: {list:#?}"
    );

    assert_eq!(f.acme_upstream().await, "app-a");
    assert_eq!(
        f.gw.echo("acme.test", "/")
            .await
            .header("x-realmgate-tenant"),
        Some("acme")
    );
    f.gw.request("bang.test", "/")
        .await
        .assert_error(404, "unknown_host");
    assert_eq!(f.gw.table_info().await.1["version"], 1);
    // The rejected version was not consumed.
    f.gw.push_ok(&f.table(2, "app-b")).await;
    assert_eq!(f.acme_upstream().await, "app-b");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_are_reported_with_every_other_problem() {
    let f = fixture().await;
    let mut t = broken_table(&f.a);
    t["extra_top"] = json!(1);
    t["tenants"][0]["colour"] = json!("red");
    t["upstreams"]["app-a"]["weight_typo"] = json!(3);
    t["tenants"][1]["routes"][0]["auht"] = json!("public");
    let (status, resp) = f.gw.push(&t).await;
    let list = problems(status, &resp);
    let mut needles = BROKEN_NEEDLES.to_vec();
    needles.extend(["extra_top", "colour", "weight_typo", "auht"]);
    assert_all_listed(&list, &needles);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_unknown_field_is_rejected() {
    let f = fixture().await;
    let mut t = f.table(1, "app-a");
    t["tenants"][0]["colour"] = json!("red");
    let (status, resp) = f.gw.push(&t).await;
    assert_all_listed(&problems(status, &resp), &["colour"]);
    assert_eq!(f.gw.table_info().await.0, 404, "nothing may be applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_policy_other_than_public_is_rejected() {
    let f = fixture().await;
    let mut t = f.table(1, "app-a");
    t["tenants"][0]["routes"][0]["auth"] = json!("bogus-policy");
    let (status, resp) = f.gw.push(&t).await;
    assert_all_listed(&problems(status, &resp), &["bogus-policy"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_422_and_keeps_the_table() {
    let f = fixture().await;
    f.gw.push_ok(&f.table(1, "app-a")).await;
    let auth = format!("Bearer {TOKEN}");
    for body in [
        "{\"version\": 2,",
        "not json",
        "",
        "[]",
        "{\"version\": \"two\"}",
    ] {
        let (status, resp) = f.gw.push_with(body.to_string(), Some(&auth)).await;
        problems(status, &resp);
    }
    assert_eq!(f.acme_upstream().await, "app-a");
    assert_eq!(f.gw.table_info().await.1["version"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_and_readyz() {
    let f = fixture().await;
    let r = f.gw.admin_get_anon("/healthz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = f.gw.admin_get_anon("/readyz").await;
    assert_eq!(r.status, 503, "ready without a table: {}", r.text);
    // A rejected table does not make it ready.
    let (status, _) = f.gw.push(&broken_table(&f.a)).await;
    assert_eq!(status, 422);
    assert_eq!(f.gw.admin_get_anon("/readyz").await.status, 503);

    f.gw.push_ok(&f.table(1, "app-a")).await;
    let r = f.gw.admin_get_anon("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(f.gw.admin_get_anon("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_requests_latency_and_table_state() {
    let f = fixture().await;
    let m = f.gw.metrics().await;
    // Before any push the counters are zero (or not yet exported, if they carry labels).
    assert_eq!(
        m.sum("realmgate_table_applies_total", &[]).unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        m.sum("realmgate_table_rejections_total", &[])
            .unwrap_or(0.0),
        0.0
    );

    f.gw.push_ok(&f.table(1, "app-a")).await;
    let (status, _) = f.gw.push(&broken_table(&f.a)).await;
    assert_eq!(status, 422);
    f.gw.push_ok(&f.table(7, "app-a")).await;

    for _ in 0..3 {
        f.gw.echo("acme.test", "/").await;
    }
    for _ in 0..2 {
        f.gw.request("nobody.test", "/")
            .await
            .assert_error(404, "unknown_host");
    }

    // Request metrics are recorded in the logging phase, after the response: poll briefly.
    let m = eventually(
        Duration::from_secs(3),
        "request counters to settle",
        || async {
            let m = f.gw.metrics().await;
            let ok = m.sum(
                "realmgate_requests_total",
                &[("tenant", "acme"), ("class", "2xx")],
            ) == Some(3.0)
                && m.sum(
                    "realmgate_requests_total",
                    &[("tenant", ""), ("class", "4xx")],
                ) == Some(2.0);
            ok.then_some(m)
        },
    )
    .await;
    assert_eq!(m.value("realmgate_table_version", &[]), 7.0);
    // Stamped when the table was swapped in: after the gateway started, not in the future.
    let applied_at = m.value("realmgate_table_applied_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        applied_at > now - 3600.0 && applied_at <= now,
        "applied at {applied_at}, now {now}"
    );
    assert_eq!(m.value("realmgate_table_applies_total", &[]), 2.0);
    assert_eq!(m.value("realmgate_table_rejections_total", &[]), 1.0);
    assert_eq!(
        m.sum(
            "realmgate_requests_total",
            &[("tenant", "acme"), ("class", "4xx")]
        )
        .unwrap_or(0.0),
        0.0
    );
    assert!(
        m.value("realmgate_upstream_latency_seconds_count", &[]) >= 3.0,
        "latency histogram count: {}",
        m.text
    );
    assert!(
        m.matching("realmgate_upstream_latency_seconds_bucket", &[])
            .any(|s| s.labels.contains_key("le")),
        "no histogram buckets: {}",
        m.text
    );
    assert!(
        m.text
            .contains("# TYPE realmgate_upstream_latency_seconds histogram"),
        "{}",
        m.text
    );
}

//! Provisioning across processes, against real components: the real `realmctl` and
//! `realmgate` binaries, a real Keycloak (tests/setup/keycloak.sh), a real PowerDNS
//! (tests/setup/powerdns.sh, checked with real DNS queries through `dig`), real libsql
//! files and a real Kubernetes API server (kube-apiserver + etcd, tests/setup/kubernetes.sh)
//! reached through a recording proxy that can also answer 500 to everything
//! (realmgate_e2e::kube).
//!
//! Keycloak and PowerDNS come from the environment that tests/run sets up
//! (`REALMGATE_KEYCLOAK_URL`, `REALMGATE_POWERDNS_*`); without them these tests skip and
//! say so, unless `REALMGATE_REQUIRE_PROVISION=1` (tests/run) makes that a failure.

mod common;

use common::provision::*;
use common::*;
use realmgate_e2e::kube::Kube;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_tenant_is_provisioned_everywhere_updated_and_deprovisioned() {
    let Some(s) = services("a_tenant_is_provisioned_everywhere") else {
        return;
    };
    let Stack {
        dir,
        kube,
        up: _up,
        gw,
        rc,
    } = Stack::start("prov-e2e", Some(&s), "prov").await;
    let api = rc.api();
    let id = format!("e2e{}", std::process::id());
    let host = format!("{id}.{}", s.zone);

    // The live stream, opened before creation would race; open it right after.
    let (st, v) = api
        .call(Method::POST, "/v1/tenants", Some(body(&id, &host)))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["provisioning"]["state"], "provisioning");
    let mut events = api
        .http
        .get(format!("{}/v1/tenants/{id}/events", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("events");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        match tokio::time::timeout(Duration::from_secs(60), events.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            other => panic!(
                "event stream ended before ready: {other:?}\n{seen}\n{}",
                rc.proc.log_text()
            ),
        }
    }
    assert!(
        seen.contains("\"state\":\"running\"") || seen.contains("event: progress"),
        "{seen}"
    );
    let v = wait_state(&api, &id, "ready", Duration::from_secs(5)).await;
    let steps = v["provisioning"]["steps"].as_array().expect("steps");
    let states: Vec<&str> = steps.iter().filter_map(|s| s["state"].as_str()).collect();
    // No ACME CA configured here: the certificate step is skipped, the rest done.
    assert_eq!(states, ["done", "done", "done", "done", "skipped"], "{v}");
    assert!(
        !v.to_string().contains("secret\":\""),
        "no secret in the view: {v}"
    );
    until_answers(
        &gw,
        &host,
        200,
        Some("upstream prov"),
        Duration::from_secs(5),
    )
    .await;

    // Keycloak: the realm and exactly the clients, role and user it should have.
    let kc = KcAdmin::login(&s).await;
    let (st, realm) = kc.get(&format!("/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(realm["displayName"], format!("Tenant {id}"));
    let (_, login) = kc.get(&format!("/{id}/clients?clientId=realmgate")).await;
    let login = &login[0];
    assert_eq!(login["standardFlowEnabled"], true);
    assert_eq!(login["attributes"]["pkce.code.challenge.method"], "S256");
    assert_eq!(
        login["redirectUris"],
        json!([format!("http://{host}:8080/.realmgate/callback")])
    );
    assert_eq!(login["webOrigins"], json!([format!("http://{host}:8080")]));
    assert_eq!(
        kc.count(&format!("/{id}/clients?clientId=tenant-admin"))
            .await,
        1
    );
    assert_eq!(kc.get(&format!("/{id}/roles/user")).await.0, StatusCode::OK);
    assert_eq!(
        kc.count(&format!("/{id}/users?username=admin&exact=true"))
            .await,
        1
    );

    // Credentials once; a token from the new realm for its API client.
    let (st, cred) = api
        .call(Method::POST, &format!("/v1/tenants/{id}/credentials"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{cred}");
    assert_eq!(cred["admin_username"], "admin");
    assert!(cred["admin_password"]
        .as_str()
        .is_some_and(|p| p.len() >= 16));
    let (st, _) = api
        .call(Method::POST, &format!("/v1/tenants/{id}/credentials"), None)
        .await;
    assert_eq!(st, StatusCode::GONE, "handed out once");
    let secret = cred["admin_client_secret"].as_str().expect("secret");
    assert!(!tenant_admin_token(&s, &id, secret).await.is_empty());

    assert!(
        !rc.proc
            .log_text()
            .contains(cred["admin_password"].as_str().unwrap_or("-")),
        "never logged"
    );

    // DNS answers; the Ingress has the right spec; the database file exists.
    assert_eq!(dig(&s, &host), ["127.0.0.7"]);
    let ing = kube
        .ingress("edge", &format!("realmgate-{id}"))
        .await
        .expect("ingress");
    assert_eq!(
        ing["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "realmctl"
    );
    assert_eq!(ing["metadata"]["labels"]["realmgate.dev/tenant"], id);
    assert_eq!(
        ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    assert_eq!(ing["spec"]["rules"][0]["host"], host);
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "realmgate"
    );
    assert_eq!(ing["spec"]["tls"][0]["secretName"], format!("{id}-tls"));
    let patches = kube.requests_for(&format!("realmgate-{id}"), "PATCH");
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].content_type, "application/apply-patch+yaml");
    assert_eq!(
        patches[0].query.get("fieldManager").map(String::as_str),
        Some("realmctl")
    );
    let db = dir.path().join(format!("realmctl-data/tenants/{id}.db"));
    assert!(db.exists());

    // Re-running finished steps changes nothing.
    let (st, _) = api
        .call(Method::POST, &format!("/v1/tenants/{id}/retry"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_state(&api, &id, "ready", Duration::from_secs(30)).await;
    assert_eq!(
        kube.requests_for(&format!("realmgate-{id}"), "PATCH").len(),
        1,
        "no new apply"
    );
    assert_eq!(
        kc.count(&format!("/{id}/clients?clientId=realmgate")).await,
        1
    );
    assert_eq!(
        kc.count(&format!("/{id}/users?username=admin&exact=true"))
            .await,
        1
    );
    assert_eq!(dig(&s, &host), ["127.0.0.7"]);

    // New hosts re-run what depends on them.
    let host2 = format!("{id}-b.{}", s.zone);
    let (st, v) = api
        .call(
            Method::PATCH,
            &format!("/v1/tenants/{id}"),
            Some(json!({"hosts": [host2]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    eventually(Duration::from_secs(30), "DNS follows the hosts", || async {
        (dig(&s, &host2) == ["127.0.0.7"] && dig(&s, &host).is_empty()).then_some(())
    })
    .await;
    wait_state(&api, &id, "ready", Duration::from_secs(30)).await;
    let ing = kube
        .ingress("edge", &format!("realmgate-{id}"))
        .await
        .expect("ingress");
    assert_eq!(ing["spec"]["rules"][0]["host"], host2);
    let (_, login) = kc.get(&format!("/{id}/clients?clientId=realmgate")).await;
    assert_eq!(
        login[0]["redirectUris"],
        json!([format!("http://{host2}:8080/.realmgate/callback")])
    );
    until_answers(&gw, &host2, 200, None, Duration::from_secs(5)).await;

    // Delete through the CLI: out of the table at once, then removes in reverse, the database
    // archived — and `--wait` returns only once all of that is done (no waiting after it).
    let url = rc.url();
    let cli_id = id.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"))
            .args([
                "tenant",
                "delete",
                &cli_id,
                "--wait",
                "--wait-timeout",
                "60",
            ])
            .env("REALMCTL_URL", url)
            .env("REALMCTL_TOKEN", OPERATOR_TOKEN)
            .env_remove("REALMCTL_TOKEN_FILE")
            .output()
    })
    .await
    .expect("join")
    .expect("run realmctl");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, _) = api
        .call(Method::GET, &format!("/v1/tenants/{id}"), None)
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "gone when `delete --wait` returns"
    );
    until_answers(&gw, &host2, 404, None, Duration::from_secs(5)).await;
    assert!(kube
        .ingress("edge", &format!("realmgate-{id}"))
        .await
        .is_none());
    assert!(dig(&s, &host2).is_empty());
    assert_eq!(kc.get(&format!("/{id}")).await.0, StatusCode::NOT_FOUND);
    assert!(!db.exists());
    let archived = std::fs::read_dir(dir.path().join("realmctl-data/tenants/archive"))
        .expect("archive")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{id}-"))
        });
    assert!(archived, "the database is archived, never deleted");
}

/// Wait until realmctl aborts at the crash point `point`, then start it again without it.
async fn restart_after_crash(rc: &mut Realmctl, point: &str) {
    eventually(
        Duration::from_secs(60),
        &format!("realmctl aborting at {point}"),
        || {
            let exited = rc.proc.exited().is_some();
            async move { exited.then_some(()) }
        },
    )
    .await;
    rc.restart_with(&[]).await;
}

#[tokio::test]
async fn killed_at_every_step_boundary_it_resumes_without_orphans_or_duplicates() {
    let Some(s) = services("killed_at_every_step_boundary") else {
        return;
    };
    let dir = TempDir::new("prov-crash");
    let kube = Kube::start(&["edge"]).await;
    let mut rc = Realmctl::start_with(&dir, &[], &provision_yaml(&dir, Some(&s), &kube), &[]).await;
    let api = rc.api();
    api.call(
        Method::PUT,
        "/v1/upstreams/app",
        Some(json!({"endpoints": ["127.0.0.1:9"]})),
    )
    .await;
    let kc = KcAdmin::login(&s).await;
    let points = [
        "identity:ensured",
        "identity:journaled",
        "database:ensured",
        "database:journaled",
        "ingress:ensured",
        "ingress:journaled",
        "dns:ensured",
        "dns:journaled",
        "routing:journaled",
    ];
    for (i, point) in points.iter().enumerate() {
        let id = format!("k{i}x{}", std::process::id());
        let host = format!("{id}.{}", s.zone);
        rc.restart_with(&[("REALMCTL_TEST_CRASH_AT", point)]).await;
        let api = rc.api();
        let (st, v) = api
            .call(Method::POST, "/v1/tenants", Some(body(&id, &host)))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{point}: {v}");
        restart_after_crash(&mut rc, point).await;
        let api = rc.api();
        wait_state(&api, &id, "ready", Duration::from_secs(60)).await;
        // Nothing duplicated, nothing missing.
        assert_eq!(
            kc.count(&format!("/{id}/clients?clientId=realmgate")).await,
            1,
            "{point}"
        );
        assert_eq!(
            kc.count(&format!("/{id}/clients?clientId=tenant-admin"))
                .await,
            1,
            "{point}"
        );
        assert_eq!(
            kc.count(&format!("/{id}/users?username=admin&exact=true"))
                .await,
            1,
            "{point}"
        );
        assert!(
            kube.ingress("edge", &format!("realmgate-{id}"))
                .await
                .is_some(),
            "{point}"
        );
        assert_eq!(dig(&s, &host), ["127.0.0.7"], "{point}");
        // The admin password realmctl holds is the one Keycloak has (reset if it died
        // between creating the user and journaling its password).
        let (st, cred) = api
            .call(Method::POST, &format!("/v1/tenants/{id}/credentials"), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{point}: {cred}");
        assert!(cred["admin_password"].is_string(), "{point}: {cred}");
    }
    assert_eq!(
        kube.ingress_count("edge").await,
        points.len(),
        "one Ingress per tenant"
    );

    // Deletion killed mid-way finishes too, and leaves nothing behind.
    for (i, point) in [
        "dns:removed",
        "ingress:remove-journaled",
        "identity:removed",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("k{i}x{}", std::process::id());
        let host = format!("{id}.{}", s.zone);
        rc.restart_with(&[("REALMCTL_TEST_CRASH_AT", point)]).await;
        let api = rc.api();
        let (st, _) = api
            .call(Method::DELETE, &format!("/v1/tenants/{id}"), None)
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{point}");
        restart_after_crash(&mut rc, point).await;
        wait_gone(&rc.api(), &id, Duration::from_secs(60)).await;
        assert!(
            kube.ingress("edge", &format!("realmgate-{id}"))
                .await
                .is_none(),
            "{point}"
        );
        assert!(dig(&s, &host).is_empty(), "{point}");
        assert_eq!(
            kc.get(&format!("/{id}")).await.0,
            StatusCode::NOT_FOUND,
            "{point}"
        );
    }
    drop(api);
}

#[tokio::test]
async fn a_failing_step_marks_the_tenant_failed_and_retry_finishes_it() {
    // Needs no Keycloak or PowerDNS: database (libsql files) and ingress (the real API server,
    // behind the test's proxy, told to fail).
    let Stack {
        dir: _dir,
        kube,
        up: _up,
        gw,
        rc,
    } = Stack::start("prov-fail", None, "f").await;
    let api = rc.api();
    kube.set_failing(true);
    let (st, _) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(body("flaky", "flaky.test")),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let v = eventually(Duration::from_secs(20), "retried with backoff", || async {
        let (_, v) = api.call(Method::GET, "/v1/tenants/flaky", None).await;
        (v["provisioning"]["steps"][2]["attempts"].as_u64() >= Some(3)
            && v["provisioning"]["state"] == "failed")
            .then_some(v)
    })
    .await;
    assert_eq!(v["provisioning"]["state"], "failed");
    assert!(
        v["provisioning"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ingress: Kubernetes")),
        "{v}"
    );
    assert_eq!(
        v["provisioning"]["steps"][1]["state"], "done",
        "database kept"
    );
    assert_eq!(v["provisioning"]["routed"], false);
    until_answers(&gw, "flaky.test", 404, None, Duration::from_secs(2)).await;
    // The CLI shows the error; `tenant retry --wait` finishes it once the cause is gone.
    kube.set_failing(false);
    // Off the test's runtime thread: the API server's proxy runs on it.
    let url = rc.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"))
            .args(["--url", &url, "tenant", "retry", "flaky", "--wait"])
            .env("REALMCTL_TOKEN", OPERATOR_TOKEN)
            .output()
    })
    .await
    .expect("join")
    .expect("realmctl tenant retry");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    until_answers(
        &gw,
        "flaky.test",
        200,
        Some("upstream f"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(kube.ingress_count("edge").await, 1);
}

#[tokio::test]
async fn an_ingress_field_another_manager_took_is_reported_not_overwritten() {
    // Needs no Keycloak or PowerDNS: the Ingress step against the real API server.
    let Stack {
        dir: _dir,
        kube,
        up: _up,
        gw: _gw,
        rc,
    } = Stack::start("prov-conflict", None, "c").await;
    let api = rc.api();
    let (st, _) = api
        .call(Method::POST, "/v1/tenants", Some(body("held", "held.test")))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_state(&api, "held", "ready", Duration::from_secs(30)).await;
    let path = "/apis/networking.k8s.io/v1/namespaces/edge/ingresses/realmgate-held";
    // Someone else takes the class over with server-side apply (forced, as kubectl's
    // `--force-conflicts` would).
    let (st, v) = kube
        .apply(
            path,
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": "realmgate-held", "namespace": "edge"},
                    "spec": {"ingressClassName": "other"}}),
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
    // A change that makes realmctl apply again: the conflict is the step's error.
    let (st, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/held",
            Some(json!({"hosts": ["held.test", "held2.test"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = eventually(
        Duration::from_secs(30),
        "the ingress step fails",
        || async {
            let (_, v) = api.call(Method::GET, "/v1/tenants/held", None).await;
            (v["provisioning"]["state"] == "failed").then_some(v)
        },
    )
    .await;
    let error = v["provisioning"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("another field manager") && error.contains("realmgate-tests"),
        "{v}"
    );
    // Not overwritten: the other manager's value stands.
    let ing = kube
        .ingress("edge", "realmgate-held")
        .await
        .expect("ingress");
    assert_eq!(ing["spec"]["ingressClassName"], "other");
}

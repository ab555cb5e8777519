//! The app shell managed through realmctl, across processes: a tenant's display name, catalog
//! and shell settings go through the real `realmctl` API into the table, a real `realmgate`
//! serves the shell to browser navigations and the app to frames, the settings survive a
//! realmctl restart, and bad settings are refused with the field that is wrong.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);

/// A GET as a browser sends it: a top-level navigation (`document`) or a frame (`iframe`).
async fn fetch(gw: &Gateway, host: &str, path: &str, dest: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", gw.listen))
        .header("host", host)
        .header("sec-fetch-dest", dest)
        .header("accept", "text/html")
        .send()
        .await
        .expect("gateway answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// The JSON context the gateway injected into the shell page.
fn context(page: &str) -> Option<Value> {
    let start = page.find(r#"id="realmgate-context""#)?;
    let body = &page[start..];
    let open = body.find('>')? + 1;
    let close = body.find("</script>")?;
    serde_json::from_str(&body[open..close]).ok()
}

fn ats(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["at"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_is_managed_through_realmctl_and_served_by_the_gateway() {
    let dir = TempDir::new("shell");
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&dir, "gw", None).await;
    let mut ctl = Realmctl::start(&dir, &[&gw]).await;
    let api = ctl.api();
    api.put_pool("app", up.addr).await;
    api.put_pool("pages", up.addr).await;

    // Bad settings: each wrong field named, nothing created.
    let (st, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "hosts": ["acme.test"], "display_name": "   ",
                "routes": [{"prefix": "/todos/", "upstream": "app", "auth": "public"}],
                "catalog": [{"name": "todos", "title": "Todos", "path": "/todos/", "icon": "Not An Icon"},
                            {"name": "crm", "title": "x".repeat(65), "path": "/crm/"}],
                "shell": {"enabled": true, "upstream": "missing", "excludes": ["no-slash"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut at = ats(&v);
    at.sort_unstable();
    assert_eq!(
        at,
        [
            "catalog[0].icon",
            "catalog[1].path",
            "catalog[1].title",
            "display_name",
            "shell.excludes[0]",
            "shell.upstream"
        ],
        "{v}"
    );
    let (st, _) = api.call(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A good one: the shell at `/` and in the catalog's apps, the app itself in frames.
    let (st, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "hosts": ["acme.test"], "display_name": "Acme <Ltd>",
                "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}],
                "catalog": [{"name": "todos", "title": "Todos", "path": "/todos/", "icon": "lucide:check-square"}],
                "shell": {"enabled": true, "excludes": ["/api/"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["shell"]["enabled"], true);
    assert_eq!(v["catalog"][0]["icon"], "lucide:check-square");
    let check_shell = |page: &str| {
        let ctx = context(page).unwrap_or_else(|| panic!("no context in {page}"));
        assert_eq!(ctx["tenant"]["display_name"], "Acme <Ltd>", "{ctx}");
        assert_eq!(ctx["catalog"][0]["name"], "Todos", "{ctx}");
        assert_eq!(ctx["catalog"][0]["path"], "/todos/", "{ctx}");
        assert_eq!(ctx["catalog"][0]["icon"], "lucide:check-square", "{ctx}");
    };
    let page = eventually(WITHIN, "the shell at /", || async {
        let (st, page) = fetch(&gw, "acme.test", "/", "document").await;
        (st == 200 && page.contains("realmgate-context")).then_some(page)
    })
    .await;
    check_shell(&page);
    let (st, page) = fetch(&gw, "acme.test", "/todos/", "document").await;
    assert_eq!(st, 200);
    check_shell(&page);
    assert_eq!(
        fetch(&gw, "acme.test", "/todos/", "iframe").await,
        (200, "upstream app".to_owned()),
        "a frame gets the app"
    );
    assert_eq!(
        fetch(&gw, "acme.test", "/api/x", "document").await,
        (200, "upstream app".to_owned()),
        "excluded"
    );

    // A pool the shell uses cannot be deleted; the tenant's own shell page comes from it.
    let (st, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"shell": {"enabled": true, "upstream": "pages"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = api.call(Method::DELETE, "/v1/upstreams/pages", None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["details"]["tenants"], json!(["acme"]), "{v}");

    // The settings survive a restart of realmctl.
    ctl.restart().await;
    let api = ctl.api();
    let (st, v) = api.call(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["shell"], json!({"enabled": true, "upstream": "pages"}));
    assert_eq!(v["catalog"][0]["icon"], "lucide:check-square");
    let (_, table) = api.call(Method::GET, "/v1/table", None).await;
    assert_eq!(table["tenants"][0]["display_name"], "Acme <Ltd>");
    assert_eq!(table["tenants"][0]["catalog"][0]["title"], "Todos");

    // `"shell": null` removes it: navigations go to the app again, and the pool is free.
    let (st, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"shell": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("shell").is_none(), "{v}");
    eventually(WITHIN, "no shell at /", || async {
        (fetch(&gw, "acme.test", "/", "document").await == (200, "upstream app".to_owned()))
            .then_some(())
    })
    .await;
    let (st, v) = api.call(Method::DELETE, "/v1/upstreams/pages", None).await;
    assert!(st.is_success(), "{v}");
}

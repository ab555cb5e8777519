//! Paging of the list endpoints through `app()`: cursors walk every entry once, bad
//! parameters are a 400 that changes nothing, and the tenant search is bounded.

use super::tests::{call, tenant, test_app};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

/// Follow `next` from the first page to the last; every entry's `id_field`, in order.
async fn walk(
    app: &axum::Router,
    path: &str,
    field: &str,
    id_field: &str,
    limit: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for _ in 0..100 {
        let url = match &after {
            Some(a) => format!("{path}{sep}limit={limit}&after={a}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (s, v) = call(app, Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{url}: {v}");
        let page = v[field].as_array().expect("a list");
        assert!(page.len() <= limit);
        seen.extend(
            page.iter()
                .map(|e| e[id_field].as_str().expect("id").to_owned()),
        );
        assert!(
            v.as_object().expect("object").contains_key("next"),
            "next, null at the end"
        );
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return seen,
        }
    }
    panic!("{path}: no last page");
}

async fn add_tenants(app: &axum::Router, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("t{i:02}");
        let host = if i % 3 == 0 {
            format!("{id}.shop.test")
        } else {
            format!("{id}.test")
        };
        let (s, v) = call(app, Method::POST, "/v1/tenants", Some(tenant(&id, &host))).await;
        assert!(s.is_success(), "{v}");
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn every_list_pages_with_a_cursor_and_ends_with_null() {
    let app = test_app().await;
    let ids = add_tenants(&app, 7).await;
    assert_eq!(walk(&app, "/v1/tenants", "tenants", "id", 3).await, ids);
    assert_eq!(
        walk(&app, "/v1/tenants", "tenants", "id", 7).await,
        ids,
        "exact fit"
    );
    for pool in ["b", "c", "d"] {
        let (s, _) = call(
            &app,
            Method::PUT,
            &format!("/v1/upstreams/{pool}"),
            Some(json!({"endpoints": ["127.0.0.1:9001"]})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    assert_eq!(
        walk(&app, "/v1/upstreams", "upstreams", "name", 2).await,
        ["app", "b", "c", "d"]
    );
    let mut keys = Vec::new();
    for _ in 0..5 {
        let (s, v) = call(
            &app,
            Method::POST,
            "/v1/keys",
            Some(json!({"namespaces": ["*"]})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        keys.push(v["id"].as_str().expect("id").to_owned());
    }
    keys.sort();
    assert_eq!(walk(&app, "/v1/keys", "keys", "id", 2).await, keys);
    for i in 0..3 {
        let (s, v) = call(
            &app,
            Method::POST,
            "/v1/apps",
            Some(json!({"name": format!("a{i}"), "pool": "app"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    assert_eq!(walk(&app, "/v1/apps", "apps", "id", 2).await.len(), 3);
    // Lists with nothing in them have a last page at once.
    for (path, field) in [
        ("/v1/certificates", "certificates"),
        ("/v1/domains", "domains"),
        ("/v1/tenants/t01/domains", "domains"),
    ] {
        assert!(
            walk(&app, path, field, "name", 5).await.is_empty(),
            "{path}"
        );
    }
    // Without a limit: 100 at most.
    let (_, v) = call(&app, Method::GET, "/v1/tenants", None).await;
    assert_eq!(
        (v["tenants"].as_array().map(Vec::len), &v["next"]),
        (Some(7), &Value::Null)
    );
}

#[tokio::test]
async fn bad_paging_parameters_are_400_everywhere() {
    let app = test_app().await;
    for path in [
        "/v1/tenants",
        "/v1/keys",
        "/v1/domains",
        "/v1/tenants/acme/domains",
        "/v1/certificates",
        "/v1/apps",
        "/v1/upstreams",
    ] {
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=ten",
            "limit=",
            "after=",
        ] {
            let url = format!("{path}?{bad}");
            let (s, v) = call(&app, Method::GET, &url, None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
            let text = v.to_string();
            assert!(
                text.contains("limit") || text.contains("after"),
                "{url}: says which: {v}"
            );
        }
        let (s, _) = call(&app, Method::GET, &format!("{path}?limit=1000"), None).await;
        assert_ne!(s, StatusCode::BAD_REQUEST, "{path}: 1000 is allowed");
    }
    let long = "a".repeat(101);
    let (s, _) = call(&app, Method::GET, &format!("/v1/tenants?q={long}"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_tenant_search_matches_ids_and_hosts_and_pages() {
    let app = test_app().await;
    add_tenants(&app, 10).await;
    // Hosts: t00, t03, t06, t09 are under shop.test.
    let (s, v) = call(&app, Method::GET, "/v1/tenants?q=SHOP", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = v["tenants"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["t00", "t03", "t06", "t09"],
        "case-insensitive, by host"
    );
    assert_eq!(
        walk(&app, "/v1/tenants?q=shop", "tenants", "id", 3).await,
        ["t00", "t03", "t06", "t09"]
    );
    assert_eq!(
        walk(&app, "/v1/tenants?q=t0", "tenants", "id", 4)
            .await
            .len(),
        10,
        "by id"
    );
    let (_, v) = call(&app, Method::GET, "/v1/tenants?q=nowhere", None).await;
    assert_eq!(
        (v["tenants"].as_array().map(Vec::len), &v["next"]),
        (Some(0), &Value::Null)
    );
}

#[test]
fn the_openapi_document_describes_paging_on_every_list() {
    let doc = super::openapi::spec();
    for (path, field) in super::paging::LISTS {
        let op = &doc["paths"][path]["get"];
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: parameters"))
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        let expected: &[&str] = if path == "/v1/tenants" {
            &["after", "limit", "q"]
        } else {
            &["after", "limit"]
        };
        assert_eq!(names, expected, "{path}");
        assert!(op["responses"]["400"].is_object(), "{path}: 400");
        let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().expect("name")],
            None => schema,
        };
        assert!(schema["properties"]["next"].is_object(), "{path}: next");
        assert!(schema["properties"][field].is_object(), "{path}: {field}");
    }
}

//! `/v1/certificates` and the tenant's https/hsts through `app()`: every bad certificate the
//! API must refuse gets a 4xx naming it and leaves what was stored as it was.

use super::tests::{app_with_limit, call, request, send, test_app, GATEWAY, OPERATOR};
use super::*;
use axum::body::Body as AxBody;
use axum::http::Method;
use serde_json::{json, Value};

#[path = "../../tests/common/pki.rs"]
mod pki;
use pki::Pki;

fn put_body(leaf: &pki::Leaf, chain: &str) -> Value {
    json!({"cert_pem": format!("{}{chain}", leaf.cert_pem), "key_pem": leaf.key_pem})
}

async fn table(app: &Router, token: &str) -> Value {
    let (status, _, body) = send(
        app,
        request(Method::GET, "/v1/table", Some(token), AxBody::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).expect("table json")
}

fn messages(v: &Value) -> String {
    v["problems"].to_string()
}

#[tokio::test]
async fn certificates_are_added_shown_without_keys_compiled_and_removed() {
    let app = test_app().await;
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(json!({
        "id": "acme", "hosts": ["acme.test", "www.acme.test", "other.test"],
        "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}],
        "https": "redirect", "hsts": {"max_age": 600}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let pki = Pki::new("test CA");
    let leaf = pki.leaf(&["acme.test", "*.acme.test"]);
    let (s, v) = call(
        &app,
        Method::PUT,
        "/v1/certificates/acme",
        Some(put_body(&leaf, &pki.ca_pem)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["hosts"],
        json!(["acme.test", "*.acme.test"]),
        "its own DNS names by default"
    );
    assert_eq!(v["tenants"], json!(["acme"]));
    assert_eq!(v["state"], "valid");
    assert!(v["fingerprint"]
        .as_str()
        .is_some_and(|f| f.starts_with("sha256:")));
    assert!(!v.to_string().contains("PRIVATE"), "never the key: {v}");
    let version = v["table_version"].clone();

    // The same again changes nothing.
    let (s, v) = call(
        &app,
        Method::PUT,
        "/v1/certificates/acme",
        Some(put_body(&leaf, &pki.ca_pem)),
    )
    .await;
    assert_eq!((s, &v["table_version"]), (StatusCode::OK, &version));

    let (_, list) = call(&app, Method::GET, "/v1/certificates", None).await;
    assert_eq!(list["certificates"][0]["name"], "acme");
    assert!(!list.to_string().contains("PRIVATE"));

    let (_, t) = call(&app, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(t["https"], "redirect");
    assert_eq!(t["hsts"], json!({"max_age": 600}));
    assert_eq!(t["certificates"][0]["name"], "acme");
    assert_eq!(
        t["certificates"][0]["hosts"],
        json!(["acme.test", "www.acme.test"])
    );
    assert!(t["certificates"][0]["days_left"]
        .as_i64()
        .is_some_and(|d| d > 0));
    assert_eq!(t["hosts_without_certificate"], json!(["other.test"]));

    // Gateways get the key; operators see it redacted.
    let full = table(&app, GATEWAY).await;
    assert_eq!(full["certificates"][0]["key_pem"], leaf.key_pem.as_str());
    assert_eq!(full["tenants"][0]["https"], "redirect");
    assert_eq!(full["tenants"][0]["hsts"]["max_age"], 600);
    let redacted = table(&app, OPERATOR).await;
    assert_eq!(redacted["certificates"][0]["key_pem"], "(redacted)");
    assert!(!redacted.to_string().contains("PRIVATE KEY"));

    let (s, _) = call(&app, Method::DELETE, "/v1/certificates/acme", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, Method::GET, "/v1/certificates/acme", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(table(&app, GATEWAY).await.get("certificates").is_none());
    let (s, _) = call(&app, Method::DELETE, "/v1/certificates/acme", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_certificates_are_refused_and_lose_nothing() {
    let app = app_with_limit(1 << 20).await;
    let pki = Pki::new("test CA");
    let good = pki.leaf(&["acme.test"]);
    let (s, stored) = call(
        &app,
        Method::PUT,
        "/v1/certificates/acme",
        Some(put_body(&good, "")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{stored}");
    let other = pki.leaf(&["acme.test"]);
    let past = pki.leaf_with(&["acme.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let future = pki.leaf_with(&["acme.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2090, 1, 1);
        p.not_after = rcgen::date_time_ymd(2091, 1, 1);
    });
    let wild = pki.leaf(&["*.beta.test"]);
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "malformed PEM",
            json!({"cert_pem": "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n", "key_pem": good.key_pem}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed PEM",
        ),
        (
            "no PEM at all",
            json!({"cert_pem": "hello", "key_pem": "world", "hosts": ["acme.test"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no CERTIFICATE block",
        ),
        (
            "key of another certificate",
            json!({"cert_pem": good.cert_pem, "key_pem": other.key_pem}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not belong to the certificate",
        ),
        (
            "chain in the wrong order",
            json!({"cert_pem": format!("{}{}", pki.ca_pem, good.cert_pem), "key_pem": good.key_pem}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not in order",
        ),
        (
            "expired",
            put_body(&past, ""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expired at 2002-01-01",
        ),
        (
            "not yet valid",
            put_body(&future, ""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not valid before 2090-01-01",
        ),
        (
            "wildcard of two labels",
            json!({"cert_pem": wild.cert_pem, "key_pem": wild.key_pem, "hosts": ["*.*.beta.test"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "covers exactly one label",
        ),
        (
            "a name the certificate does not cover",
            json!({"cert_pem": wild.cert_pem, "key_pem": wild.key_pem, "hosts": ["a.b.beta.test"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not covered",
        ),
        (
            "200 KB certificate",
            json!({"cert_pem": "A".repeat(200_000), "key_pem": good.key_pem}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "longer than 65536 bytes",
        ),
        (
            "unknown field",
            json!({"cert_pem": good.cert_pem, "key_pem": good.key_pem, "chain": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (s, v) = call(&app, Method::PUT, "/v1/certificates/acme", Some(body)).await;
        assert_eq!(s, status, "{what}: {v}");
        assert!(messages(&v).contains(needle), "{what}: {v}");
        assert!(
            messages(&v).contains("certificate \\\"acme\\\""),
            "{what} names it: {v}"
        );
        assert!(
            !v.to_string().contains("PRIVATE KEY"),
            "{what}: no key echoed"
        );
    }
    // Two certificates for the same exact host.
    let (s, v) = call(
        &app,
        Method::PUT,
        "/v1/certificates/acme-two",
        Some(put_body(&other, "")),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "certificate_host_conflict");
    assert_eq!(v["details"]["hosts"][0]["certificate"], "acme");
    // A 10 MB "certificate": 413 from its size alone.
    let huge = json!({"cert_pem": "A".repeat(10 << 20), "key_pem": "k"}).to_string();
    let (s, _, _) = send(
        &app,
        request(Method::PUT, "/v1/certificates/acme", Some(OPERATOR), huge),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // A bad name.
    let (s, v) = call(
        &app,
        Method::PUT,
        "/v1/certificates/Not%20a%20name",
        Some(put_body(&good, "")),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Nothing changed.
    let (_, now) = call(&app, Method::GET, "/v1/certificates/acme", None).await;
    assert_eq!(now, stored);
    let (_, list) = call(&app, Method::GET, "/v1/certificates", None).await;
    assert_eq!(list["certificates"].as_array().map(Vec::len), Some(1));
    let full = table(&app, GATEWAY).await;
    assert_eq!(full["certificates"][0]["key_pem"], good.key_pem.as_str());
}

#[tokio::test]
async fn tenant_https_and_hsts_are_validated_and_patched() {
    let app = test_app().await;
    let base = json!({"id": "acme", "hosts": ["acme.test"],
        "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]});
    let mut bad = base.clone();
    bad["https"] = json!("sometimes");
    bad["hsts"] = json!({"max_age": 100, "preload": true});
    let (s, v) = call(&app, Method::POST, "/v1/tenants", Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let text = messages(&v);
    assert!(
        text.contains("https") && text.contains("hsts"),
        "both listed: {v}"
    );
    let (s, v) = call(&app, Method::POST, "/v1/tenants", Some(base)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["https"], "off");
    assert!(v.get("hsts").is_none());
    let (s, v) = call(&app, Method::PATCH, "/v1/tenants/acme", Some(json!({
        "https": "only", "hsts": {"max_age": 31536000, "include_subdomains": true, "preload": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["https"], "only");
    assert_eq!(v["hsts"]["preload"], true);
    let (s, v) = call(
        &app,
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"hsts": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("hsts").is_none());
    assert_eq!(v["https"], "only", "untouched");
    let full = table(&app, GATEWAY).await;
    assert_eq!(full["tenants"][0]["https"], "only");
}

//! Headers the gateway strips, sets and keeps on the way to the upstream and back.

use realmgate_e2e::{
    get_request, is_valid_request_id, Echo, Gateway, GatewayOpts, Table, Upstream,
};

async fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start("app-a").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app-a", [up.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app-a")])
        .build();
    gw.push_ok(&table).await;
    (gw, up)
}

fn realmgate_headers(e: &Echo) -> Vec<&str> {
    e.headers
        .keys()
        .filter(|k| k.starts_with("x-realmgate-"))
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_identity_headers_are_replaced_by_the_gateway() {
    let (gw, _up) = gateway().await;
    let e = gw
        .fetch(
            gw.get("acme.test", "/")
                .header("x-realmgate-tenant", "evil")
                .header("X-Realmgate-Anything", "1")
                .header("x-realmgate-subject", "root")
                .header("x-realmgate-roles", "admin")
                .header("x-realmgate-namespace", "@other"),
        )
        .await
        .echo();
    assert_eq!(e.header_all("x-realmgate-tenant"), ["acme"]);
    assert_eq!(
        realmgate_headers(&e),
        ["x-realmgate-tenant"],
        "headers: {:?}",
        e.headers
    );

    // Repeated client copies, sent raw, are all dropped too.
    let r = gw
        .raw(get_request(
            Some(b"acme.test"),
            "/",
            &[
                ("X-REALMGATE-TENANT", "evil1"),
                ("x-realmgate-tenant", "evil2"),
                ("x-realmgate-key-id", "k"),
            ],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = Echo::from_json(&r.json());
    assert_eq!(e.header_all("x-realmgate-tenant"), ["acme"]);
    assert_eq!(
        realmgate_headers(&e),
        ["x-realmgate-tenant"],
        "headers: {:?}",
        e.headers
    );
    // Other client headers pass.
    let e = gw
        .fetch(gw.get("acme.test", "/").header("x-custom", "kept"))
        .await
        .echo();
    assert_eq!(e.header_all("x-custom"), ["kept"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_are_set_not_appended() {
    let (gw, _up) = gateway().await;
    let plain = gw.echo("acme.test:1234", "/").await;
    let spoofed = gw
        .fetch(
            gw.get("acme.test:1234", "/")
                .header("x-forwarded-for", "1.2.3.4")
                .header("X-Forwarded-Proto", "https")
                .header("x-forwarded-host", "evil.test"),
        )
        .await
        .echo();
    for e in [&plain, &spoofed] {
        assert_eq!(
            e.header_all("x-forwarded-for"),
            ["127.0.0.1"],
            "headers {:?}",
            e.headers
        );
        assert_eq!(
            e.header_all("x-forwarded-proto"),
            ["http"],
            "headers {:?}",
            e.headers
        );
        assert_eq!(
            e.header_all("x-forwarded-host"),
            ["acme.test:1234"],
            "headers {:?}",
            e.headers
        );
        assert_eq!(e.header_all("host"), ["acme.test:1234"]);
    }
    // x-forwarded-host is the Host as received, not the normalised one.
    let e = gw.echo("ACME.Test.", "/").await;
    assert_eq!(e.header_all("x-forwarded-host"), ["ACME.Test."]);
}

#[tokio::test(flavor = "multi_thread")]
async fn well_formed_request_id_is_kept_and_echoed() {
    let (gw, _up) = gateway().await;
    let longest = "A".repeat(128);
    for id in ["abc-123.X:y_z", "0", longest.as_str()] {
        let r = gw
            .fetch(gw.get("acme.test", "/").header("x-request-id", id))
            .await;
        let e = r.echo();
        assert_eq!(e.header_all("x-request-id"), [id]);
        assert_eq!(
            r.header("x-request-id"),
            Some(id),
            "response must echo the id"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_id_is_replaced() {
    let (gw, _up) = gateway().await;
    let too_long = "a".repeat(300);
    let just_too_long = "b".repeat(129);
    for bad in [
        too_long.as_str(),
        just_too_long.as_str(),
        "has space",
        "a/b",
        "x;y",
        "{id}",
    ] {
        let r = gw
            .fetch(gw.get("acme.test", "/").header("x-request-id", bad))
            .await;
        let e = r.echo();
        let sent = e
            .header("x-request-id")
            .expect("upstream got no x-request-id");
        assert_ne!(sent, bad);
        assert!(
            is_valid_request_id(sent),
            "generated id {sent:?} is malformed"
        );
        assert_eq!(
            r.header("x-request-id"),
            Some(sent),
            "response must echo the id sent upstream"
        );
    }
    // An empty value is malformed too.
    let r = gw
        .raw(get_request(
            Some(b"acme.test"),
            "/",
            &[("X-Request-Id", "")],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = Echo::from_json(&r.json());
    let sent = e
        .header("x-request-id")
        .expect("upstream got no x-request-id");
    assert!(
        is_valid_request_id(sent),
        "generated id {sent:?} is malformed"
    );
    assert_eq!(r.header("x-request-id"), Some(sent));
}

#[tokio::test(flavor = "multi_thread")]
async fn absent_request_id_is_generated_unique_and_echoed() {
    let (gw, _up) = gateway().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = gw.request("acme.test", "/").await;
        let e = r.echo();
        let sent = e
            .header("x-request-id")
            .expect("upstream got no x-request-id")
            .to_string();
        assert!(
            is_valid_request_id(&sent),
            "generated id {sent:?} is malformed"
        );
        assert_eq!(r.header("x-request-id"), Some(sent.as_str()));
        ids.push(sent);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "request ids repeat: {ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_responses_carry_the_request_id() {
    let (gw, _up) = gateway().await;
    let r = gw
        .fetch(
            gw.get("nobody.test", "/")
                .header("x-request-id", "keep-me-1"),
        )
        .await;
    let body = r.assert_error(404, "unknown_host");
    assert_eq!(body["request_id"], "keep-me-1");

    let r = gw
        .fetch(gw.get("nobody.test", "/").header("x-request-id", "bad id"))
        .await;
    let body = r.assert_error(404, "unknown_host");
    let id = body["request_id"].as_str().unwrap_or_default();
    assert!(
        is_valid_request_id(id) && id != "bad id",
        "request_id {id:?}"
    );

    let r = gw.raw(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    r.assert_error(400, "bad_host");
}

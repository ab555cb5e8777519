//! Host → tenant and path → route, through the real gateway: normalisation, lookup, and 400/404s.

use realmgate_e2e::{get_request, Echo, Gateway, GatewayOpts, RawConn, Table, Upstream};

/// The spine's example table, plus tenants that exercise exact-vs-wildcard, longest wildcard,
/// IDNA, a segment-boundary prefix and a tenant without a `/` route.
struct Spine {
    gw: Gateway,
    _ups: Vec<Upstream>,
}

async fn spine() -> Spine {
    let mut ups = Vec::new();
    for name in ["app-a", "app-b", "app-c", "app-d"] {
        ups.push(Upstream::start(name).await);
    }
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app-a", [ups[0].addr()])
        .upstream("app-b", [ups[1].addr()])
        .upstream("app-c", [ups[2].addr()])
        .upstream("app-d", [ups[3].addr()])
        .tenant("acme", &["acme.test"], &[("/", "app-a"), ("/api", "app-b")])
        .tenant(
            "beta",
            &["beta.test", "*.beta.test"],
            &[("/", "app-b"), ("/a/", "app-a")],
        )
        .tenant("gamma", &["special.beta.test"], &[("/", "app-c")])
        .tenant("delta", &["*.deep.beta.test"], &[("/", "app-d")])
        .tenant("wild", &["*.wild.test"], &[("/", "app-c")])
        .tenant("buch", &["xn--bcher-kva.test"], &[("/", "app-d")])
        .tenant("narrow", &["narrow.test"], &[("/only/", "app-a")])
        .build();
    gw.push_ok(&table).await;
    Spine { gw, _ups: ups }
}

fn get(host: &str, target: &str) -> Vec<u8> {
    get_request(Some(host.as_bytes()), target, &[])
}

/// Which (tenant, upstream) served a request that must have been proxied.
fn served_by(e: &Echo) -> (String, String) {
    (
        e.header("x-realmgate-tenant")
            .unwrap_or("<none>")
            .to_string(),
        e.upstream.clone(),
    )
}

fn pair(tenant: &str, upstream: &str) -> (String, String) {
    (tenant.to_string(), upstream.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_and_wildcard_hosts() {
    let s = spine().await;
    let cases = [
        ("acme.test", pair("acme", "app-a")),
        ("beta.test", pair("beta", "app-b")),
        ("x.beta.test", pair("beta", "app-b")),
        ("a.b.beta.test", pair("beta", "app-b")),
        ("anything.wild.test", pair("wild", "app-c")),
    ];
    for (host, want) in cases {
        let e = s.gw.echo(host, "/").await;
        assert_eq!(served_by(&e), want, "Host {host}");
        assert_eq!(
            e.header_all("host"),
            [host],
            "Host must reach the upstream unchanged"
        );
    }
    // A wildcard does not match its bare suffix.
    s.gw.request("wild.test", "/")
        .await
        .assert_error(404, "unknown_host");
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_beats_wildcard_and_longest_wildcard_wins() {
    let s = spine().await;
    let cases = [
        // exact special.beta.test (gamma) beats *.beta.test (beta)
        ("special.beta.test", pair("gamma", "app-c")),
        ("x.special.beta.test", pair("beta", "app-b")),
        // *.deep.beta.test (delta) is longer than *.beta.test (beta)
        ("x.deep.beta.test", pair("delta", "app-d")),
        ("a.b.deep.beta.test", pair("delta", "app-d")),
        ("deep.beta.test", pair("beta", "app-b")),
    ];
    for (host, want) in cases {
        let e = s.gw.echo(host, "/").await;
        assert_eq!(served_by(&e), want, "Host {host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_is_normalised_before_lookup() {
    let s = spine().await;
    for host in [
        "ACME.TEST",
        "Acme.Test",
        "acme.test:8080",
        "acme.test.",
        "ACME.test.:1",
    ] {
        let e = s.gw.echo(host, "/").await;
        assert_eq!(served_by(&e), pair("acme", "app-a"), "Host {host}");
        assert_eq!(
            e.header_all("host"),
            [host],
            "Host must reach the upstream unchanged"
        );
    }
    let e = s.gw.echo("X.Deep.Beta.Test.", "/").await;
    assert_eq!(served_by(&e), pair("delta", "app-d"));

    // IDNA: the table names xn--bcher-kva.test; a client may send the Unicode form in UTF-8.
    for host in [
        "bücher.test",
        "BÜCHER.test",
        "xn--bcher-kva.test",
        "XN--BCHER-KVA.TEST",
    ] {
        let r = s.gw.raw(get(host, "/")).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
        let e = Echo::from_json(&r.json());
        assert_eq!(served_by(&e), pair("buch", "app-d"), "Host {host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_is_404_json_or_html() {
    let s = spine().await;
    let body =
        s.gw.request("nobody.test", "/x")
            .await
            .assert_error(404, "unknown_host");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    // Neither a suffix nor a prefix of a known host is that host.
    s.gw.request("xacme.test", "/")
        .await
        .assert_error(404, "unknown_host");
    s.gw.request("acme.test.evil", "/")
        .await
        .assert_error(404, "unknown_host");

    for accept in [
        "text/html",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ] {
        let r =
            s.gw.fetch(s.gw.get("nobody.test", "/x").header("accept", accept))
                .await;
        assert_eq!(r.status, 404, "Accept {accept}: {}", r.text);
        let ct = r.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("text/html"),
            "Accept {accept}: content-type {ct:?}"
        );
        assert!(
            r.text.to_ascii_lowercase().contains("<html"),
            "not an HTML page: {}",
            r.text
        );
        assert!(
            r.header("x-request-id").is_some(),
            "HTML error lacks x-request-id"
        );
    }
    // A client that accepts JSON gets JSON.
    s.gw.fetch(
        s.gw.get("nobody.test", "/x")
            .header("accept", "application/json"),
    )
    .await
    .assert_error(404, "unknown_host");
}

#[tokio::test(flavor = "multi_thread")]
async fn absent_host_is_400() {
    let s = spine().await;
    s.gw.raw(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .assert_error(400, "bad_host");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_host_is_400() {
    let s = spine().await;
    for host in [
        "a b",
        "acme.test:notaport",
        "acme.test:99999",
        "-bad-.test",
        "[::1",
        "",
        "acme..test",
        "acme.test/evil",
    ] {
        let r = s.gw.raw(get(host, "/")).await;
        assert_eq!(
            r.status,
            400,
            "Host {host:?}: got {} {}",
            r.status,
            r.text()
        );
        r.assert_error(400, "bad_host");
    }
    assert_eq!(s._ups.iter().map(Upstream::hits).sum::<usize>(), 0);
}

/// Requests Pingora 0.9.1's HTTP/1 parser rejects itself, before any `ProxyHttp` phase runs
/// (pingora-core `protocols/http/authority.rs`: duplicate Host, userinfo in Host, an
/// absolute-form authority byte-different from Host), with the error code the contract gives.
const REJECTED_BY_PINGORA: &[(&str, &[u8], &str)] = &[
    (
        "duplicated Host",
        b"GET / HTTP/1.1\r\nHost: acme.test\r\nHost: acme.test\r\nConnection: close\r\n\r\n",
        "bad_host",
    ),
    (
        "two different Hosts",
        b"GET / HTTP/1.1\r\nHost: acme.test\r\nHost: beta.test\r\nConnection: close\r\n\r\n",
        "bad_host",
    ),
    (
        "Host repeated after another header",
        b"GET / HTTP/1.1\r\nHost: acme.test\r\nX-Other: 1\r\nhost: nobody.test\r\nConnection: close\r\n\r\n",
        "bad_host",
    ),
    (
        "userinfo in Host",
        b"GET / HTTP/1.1\r\nHost: user@acme.test\r\nConnection: close\r\n\r\n",
        "bad_host",
    ),
    (
        "absolute-form authority differs from Host",
        b"GET http://beta.test/x HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n",
        "host_mismatch",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn duplicated_host_userinfo_and_authority_mismatch_are_400() {
    let s = spine().await;
    for (what, req, _) in REJECTED_BY_PINGORA {
        let r = s.gw.raw(req).await;
        assert_eq!(r.status, 400, "{what}: got {} {}", r.status, r.text());
    }
    assert_eq!(
        s._ups.iter().map(Upstream::hits).sum::<usize>(),
        0,
        "a rejected request reached an upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_target_with_the_same_authority_is_proxied() {
    let s = spine().await;
    let r = s
        .gw
        .raw(b"GET http://acme.test/x?y=1 HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(
        r.status,
        200,
        "same authority must be proxied: {}",
        r.text()
    );
    let e = Echo::from_json(&r.json());
    assert_eq!(served_by(&e), pair("acme", "app-a"));
    assert_eq!(
        e.path, "/x?y=1",
        "the upstream gets the normalised path, origin-form"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn longest_prefix_route_wins() {
    let s = spine().await;
    let cases = [
        ("/", "app-b", "/"),
        ("/a/", "app-a", "/a/"),
        ("/a/x/y", "app-a", "/a/x/y"),
        // "/a/" ends in "/": it matches paths starting with "/a/" only.
        ("/a", "app-b", "/a"),
        ("/ab", "app-b", "/ab"),
        ("/b/a/x", "app-b", "/b/a/x"),
        // paths are case-sensitive
        ("/A/x", "app-b", "/A/x"),
    ];
    routes_to(&s, "x.beta.test", &cases).await;
}

/// Each `(target, upstream, path)`: a GET of `target` at `host` reaches `upstream` as `path`.
async fn routes_to(s: &Spine, host: &str, cases: &[(&str, &str, &str)]) {
    for &(target, upstream, path) in cases {
        let r = s.gw.raw(get(host, target)).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let e = Echo::from_json(&r.json());
        assert_eq!(
            (e.upstream.as_str(), e.path.as_str()),
            (upstream, path),
            "target {target}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_without_slash_matches_on_segment_boundary() {
    let s = spine().await;
    let cases = [
        ("/api", "app-b"),
        ("/api/", "app-b"),
        ("/api/x", "app-b"),
        ("/api?x=1", "app-b"),
        ("/apix", "app-a"),
        ("/api-v2/x", "app-a"),
        ("/ap", "app-a"),
    ];
    for (target, upstream) in cases {
        let r = s.gw.raw(get("acme.test", target)).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let e = Echo::from_json(&r.json());
        assert_eq!(e.upstream, upstream, "target {target}");
        assert_eq!(e.path, target, "target {target} is already normal");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_is_normalised_before_routing_and_sent_upstream() {
    let s = spine().await;
    let cases = [
        ("/a/../a/x", "app-a", "/a/x"),
        ("/%61/x", "app-a", "/a/x"),
        ("//a//x", "app-a", "/a/x"),
        ("/a/./x", "app-a", "/a/x"),
        ("/a/./x/.", "app-a", "/a/x/"),
        (
            "/b/../a/x?q=1&r=%2F&s=a%20b",
            "app-a",
            "/a/x?q=1&r=%2F&s=a%20b",
        ),
        ("/a/%7Euser/%2D%5F%2E", "app-a", "/a/~user/-_."),
        ("/a/../b", "app-b", "/b"),
        ("/a/..", "app-b", "/"),
    ];
    routes_to(&s, "beta.test", &cases).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_climbing_above_root_is_400() {
    let s = spine().await;
    for target in [
        "/../x",
        "/a/../../x",
        "/..",
        "/a/b/../../../x",
        "/%2e%2e/x",
        "/a/%2E%2E/%2e%2e/x",
        "/./../x",
    ] {
        let r = s.gw.raw(get("beta.test", target)).await;
        assert_eq!(r.status, 400, "{target}: got {} {}", r.status, r.text());
        r.assert_error(400, "bad_path");
    }
    assert_eq!(
        s._ups.iter().map(Upstream::hits).sum::<usize>(),
        0,
        "a rejected path must not reach any upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_without_matching_route_is_404_no_route() {
    let s = spine().await;
    s.gw.request("narrow.test", "/other")
        .await
        .assert_error(404, "no_route");
    s.gw.request("narrow.test", "/only")
        .await
        .assert_error(404, "no_route");
    let e = s.gw.echo("narrow.test", "/only/x").await;
    assert_eq!(served_by(&e), pair("narrow", "app-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_is_resolved_on_every_request_of_a_keep_alive_connection() {
    let s = spine().await;
    let mut conn = RawConn::connect(s.gw.listen_addr()).await;
    let req = |host: &str| format!("GET /k HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut seen = Vec::new();
    for host in [
        "acme.test",
        "special.beta.test",
        "x.deep.beta.test",
        "acme.test",
    ] {
        let r = conn.send(req(host).as_bytes()).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
        seen.push(served_by(&Echo::from_json(&r.json())));
    }
    assert_eq!(
        seen,
        [
            pair("acme", "app-a"),
            pair("gamma", "app-c"),
            pair("delta", "app-d"),
            pair("acme", "app-a")
        ]
    );
    let r = conn.send(req("nobody.test").as_bytes()).await;
    r.assert_error(404, "unknown_host");
}

//! HTTPS-only tenants over the plain listener, end to end: `redirect` answers 308 to the https
//! URL, `only` refuses with 403, ACME challenges are answered by the gateway from the table
//! (unknown tokens 404, never passed on), HSTS never goes out over plain HTTP —
//! and a trusted front proxy's `X-Forwarded-Proto: https` makes a request https (no redirect
//! loop behind an Ingress, HSTS sent), while anyone else's is ignored and replaced.

use realmgate_e2e::{get_request, Echo, Gateway, GatewayOpts, RawResponse, Table, Upstream};
use realmgate_table::{Hsts, HttpsMode, Tenant};

const HSTS: &str = "max-age=31536000; includeSubDomains";
const CHALLENGE_TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const THUMBPRINT: &str = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

/// A gateway (trusting loopback as a front proxy, or trusting nobody) with three tenants: one
/// per https mode, each with HSTS.
async fn gateway(trust_loopback: bool) -> (Gateway, Upstream) {
    let up = Upstream::start("app").await;
    let gateway_yaml = if trust_loopback {
        "  trusted_proxies: [\"127.0.0.1/32\"]\n".to_owned()
    } else {
        String::new()
    };
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml,
        ..GatewayOpts::default()
    })
    .await;
    let tenant = |id: &str, host: &str, https: HttpsMode| {
        let mut t = Tenant::test(id).host(host).route("/", "app", "public");
        t.https = https;
        t.hsts = Some(Hsts {
            max_age: 31_536_000,
            include_subdomains: true,
            preload: false,
        });
        t
    };
    let mut table = Table::new(1)
        .upstream("app", [up.addr()])
        .typed_tenant(tenant("red", "red.test", HttpsMode::Redirect))
        .typed_tenant(tenant("only", "only.test", HttpsMode::Only))
        .typed_tenant(tenant("off", "off.test", HttpsMode::Off))
        .build();
    table["acme_challenges"] = serde_json::json!([{
        "token": CHALLENGE_TOKEN,
        "key_authorization": format!("{CHALLENGE_TOKEN}.{THUMBPRINT}"),
        "hosts": ["red.test", "only.test"],
        "expires_at": "2099-01-01T00:00:00Z",
    }]);
    gw.push_ok(&table).await;
    (gw, up)
}

async fn get(gw: &Gateway, host: &str, target: &str, extra: &[(&str, &str)]) -> RawResponse {
    gw.raw(get_request(Some(host.as_bytes()), target, extra))
        .await
}

fn echo(r: &RawResponse) -> Echo {
    assert_eq!(r.status, 200, "expected a proxied 200: {}", r.text());
    Echo::from_json(&r.json())
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_redirected_or_refused_per_tenant() {
    let (gw, _up) = gateway(false).await;

    // redirect: 308 to the same host, path and query on https (port 443 omitted).
    for (host, target, location) in [
        ("red.test", "/", "https://red.test/"),
        ("red.test", "/a/b?x=1&y=2", "https://red.test/a/b?x=1&y=2"),
        ("RED.test:8080", "/a", "https://red.test/a"),
        (
            "red.test",
            "/.realmgate/login",
            "https://red.test/.realmgate/login",
        ),
    ] {
        let r = get(&gw, host, target, &[]).await;
        r.assert_error(308, "https_redirect");
        assert_eq!(r.header("location"), Some(location), "{host}{target}");
        assert_eq!(r.header("strict-transport-security"), None);
    }

    // only: refused with 403 JSON.
    let r = get(&gw, "only.test", "/x", &[]).await;
    r.assert_error(403, "https_required");
    assert_eq!(r.header("strict-transport-security"), None);

    // ACME challenges the table carries are answered on both, as text/plain, uncached and
    // without HSTS over plain HTTP; any other token is 404 from the gateway, never proxied.
    let path = format!("/.well-known/acme-challenge/{CHALLENGE_TOKEN}");
    for host in ["red.test", "only.test"] {
        let r = get(&gw, host, &path, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("{CHALLENGE_TOKEN}.{THUMBPRINT}"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("strict-transport-security"), None);
        let r = get(&gw, host, "/.well-known/acme-challenge/tok-1", &[]).await;
        assert_eq!(r.status, 404, "{}", r.text());
    }
    // Not for a host the entry does not name, even a routed one.
    assert_eq!(get(&gw, "off.test", &path, &[]).await.status, 404);
    // ... but not a path that only starts like one.
    let r = get(&gw, "only.test", "/.well-known/acme-challenge/../x", &[]).await;
    r.assert_error(403, "https_required");

    // off: served over plain HTTP, without HSTS.
    let r = get(&gw, "off.test", "/x", &[]).await;
    assert_eq!(echo(&r).header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(r.header("strict-transport-security"), None);
}

/// A client that is not a trusted proxy cannot say it used https.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_forwarded_proto_is_ignored_and_replaced() {
    let (gw, _up) = gateway(false).await;
    let xfp = [("x-forwarded-proto", "https")];
    let r = get(&gw, "red.test", "/a", &xfp).await;
    r.assert_error(308, "https_redirect");
    let r = get(&gw, "only.test", "/a", &xfp).await;
    r.assert_error(403, "https_required");
    let r = get(&gw, "off.test", "/a", &xfp).await;
    assert_eq!(echo(&r).header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(r.header("strict-transport-security"), None);
}

/// Behind a trusted TLS-terminating proxy (an Ingress): the proxy's word makes the request
/// https — served, not redirected again; `x-forwarded-proto: https` upstream; HSTS sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_says_https() {
    let (gw, _up) = gateway(true).await;
    for host in ["red.test", "only.test", "off.test"] {
        let r = get(&gw, host, "/a?q=1", &[("x-forwarded-proto", "https")]).await;
        let e = echo(&r);
        assert_eq!(e.header_all("x-forwarded-proto"), ["https"], "{host}");
        assert_eq!(r.header("strict-transport-security"), Some(HSTS), "{host}");
    }
    // Gateway-generated responses of an https request carry HSTS too.
    let r = get(
        &gw,
        "off.test",
        "/.realmgate/nothing",
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(
        r.header("strict-transport-security"),
        Some(HSTS),
        "{}",
        r.text()
    );

    // The proxy saying http, or garbage, or nothing: plain HTTP.
    for xfp in [Some("http"), Some("https, http"), Some("gopher"), None] {
        let extra: Vec<(&str, &str)> = xfp.map(|v| ("x-forwarded-proto", v)).into_iter().collect();
        let r = get(&gw, "red.test", "/a", &extra).await;
        r.assert_error(308, "https_redirect");
        assert_eq!(r.header("location"), Some("https://red.test/a"), "{xfp:?}");
        let r = get(&gw, "off.test", "/a", &extra).await;
        assert_eq!(
            echo(&r).header_all("x-forwarded-proto"),
            ["http"],
            "{xfp:?}"
        );
        assert_eq!(r.header("strict-transport-security"), None, "{xfp:?}");
    }
}

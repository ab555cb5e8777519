//! `resolve`, case by case: host → tenant → route, the shell's part and the target sent
//! upstream, against one table.

use super::*;
use crate::snapshot::test_util::{snapshot, table};

fn req(method: &str, host: Option<&str>, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, target.as_bytes(), None).expect("request");
    if let Some(h) = host {
        r.append_header("host", h).expect("host");
    }
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

/// A resolved request in one line: tenant, pool, route prefix, target, endpoint, shell part.
fn summary(s: &Snapshot, r: &Resolved) -> String {
    let rt = s.tenant(r.tenant);
    let pool = r.pool.map_or("-", |p| &*s.pool(p).name);
    let route = r.route.map_or("-", |i| &*rt.routes.get(i).prefix);
    let target = r.target.as_deref().unwrap_or("-");
    let endpoint = r.endpoint.map_or("-".to_owned(), |e| format!("{e:?}"));
    let shell = match &r.shell {
        ShellPart::NoShell => "-".to_owned(),
        ShellPart::FramedApp => "framed".to_owned(),
        ShellPart::Asset(a) => format!("asset {}", a.path),
        ShellPart::Page { page, builtin } => {
            format!(
                "page {:?} {}",
                page.active,
                if *builtin { "builtin" } else { "upstream" }
            )
        }
    };
    format!(
        "{} pool={pool} route={route} target={target} endpoint={endpoint} shell={shell}",
        rt.id
    )
}

const DOC: &[(&str, &str)] = &[("sec-fetch-dest", "document")];
const FRAME: &[(&str, &str)] = &[("sec-fetch-dest", "iframe")];

/// (method, host, target, headers, expected)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn requests_resolve_to_tenant_route_and_shell_part() {
    let s = snapshot(&table());
    // (method, host, target, headers, expected)
    let cases: &[Case] = &[
        (
            "GET",
            "acme.test",
            "/",
            &[],
            "acme pool=app route=/ target=- endpoint=- shell=-",
        ),
        (
            "GET",
            "ACME.test:8080",
            "/x",
            &[],
            "acme pool=app route=/ target=- endpoint=- shell=-",
        ),
        (
            "GET",
            "x.acme.test",
            "/api/v1",
            &[],
            "acme pool=api route=/api target=- endpoint=- shell=-",
        ),
        (
            "GET",
            "acme.test",
            "/apix",
            &[],
            "acme pool=app route=/ target=- endpoint=- shell=-",
        ),
        // Normalised paths are what is routed and what goes upstream, with the query.
        (
            "GET",
            "acme.test",
            "/x/../api/v1?q=1",
            &[],
            "acme pool=api route=/api target=/api/v1?q=1 endpoint=- shell=-",
        ),
        (
            "GET",
            "acme.test",
            "//@acme//k",
            &[],
            "acme pool=api route=/@acme/ target=/@acme/k endpoint=- shell=-",
        ),
        // Gateway endpoints come before routes.
        (
            "GET",
            "acme.test",
            "/.realmgate/login",
            &[],
            "acme pool=- route=- target=- endpoint=Login shell=-",
        ),
        (
            "GET",
            "acme.test",
            "/.realmgate/nope",
            &[],
            "acme pool=- route=- target=- endpoint=Unknown shell=-",
        ),
        // Shell tenants: navigations get the page, frames and the rest the app.
        (
            "GET",
            "shelly.test",
            "/",
            DOC,
            "shelly pool=- route=- target=- endpoint=- shell=page None builtin",
        ),
        (
            "HEAD",
            "shelly.test",
            "/todos/3",
            DOC,
            "shelly pool=- route=/todos/ target=- endpoint=- shell=page Some(0) builtin",
        ),
        (
            "GET",
            "shelly.test",
            "/todos/3",
            &[("accept", "x/y"), ("accept", "text/html")],
            "shelly pool=- route=/todos/ target=- endpoint=- shell=page Some(0) builtin",
        ),
        (
            "GET",
            "shelly.test",
            "/todos/3",
            FRAME,
            "shelly pool=app route=/todos/ target=- endpoint=- shell=framed",
        ),
        (
            "POST",
            "shelly.test",
            "/todos/3",
            DOC,
            "shelly pool=app route=/todos/ target=- endpoint=- shell=framed",
        ),
        (
            "GET",
            "shelly.test",
            "/api/x",
            DOC,
            "shelly pool=api route=/api/ target=- endpoint=- shell=framed",
        ),
        (
            "GET",
            "shelly.test",
            "/.realmgate/shell/shell.js",
            &[],
            "shelly pool=- route=- target=- endpoint=- shell=asset /.realmgate/shell/shell.js",
        ),
        (
            "GET",
            "shelly.test",
            "/.realmgate/logout",
            DOC,
            "shelly pool=- route=- target=- endpoint=Logout shell=framed",
        ),
        (
            "GET",
            "own.test",
            "/todos/",
            DOC,
            "own pool=shell route=/todos/ target=- endpoint=- shell=page Some(0) upstream",
        ),
        (
            "GET",
            "own.test",
            "/",
            DOC,
            "own pool=shell route=- target=- endpoint=- shell=page None upstream",
        ),
    ];
    for &(method, host, target, headers, expected) in cases {
        let r = resolve(&s, &req(method, Some(host), target, headers), false);
        match r {
            Ok(r) => assert_eq!(
                summary(&s, &r),
                expected,
                "{method} {host}{target} {headers:?}"
            ),
            Err(e) => panic!("{method} {host}{target}: refused {e:?}"),
        }
    }
}

#[test]
fn refusals_name_the_tenant_when_known() {
    let s = snapshot(&table());
    // (host, target, refusal)
    let cases: &[(Option<&str>, &str, Unresolved)] = &[
        (None, "/", (None, GatewayError::BadHost)),
        (Some("bad host"), "/", (None, GatewayError::BadHost)),
        (Some("other.test"), "/", (None, GatewayError::UnknownHost)),
        (
            Some("beta.test"),
            "/",
            (Some(1), GatewayError::TenantSuspended),
        ),
        (Some("acme.test"), "/%zz", (Some(0), GatewayError::BadPath)),
        (
            Some("acme.test"),
            "/a/%2e%2e%2f..",
            (Some(0), GatewayError::BadPath),
        ),
        (
            Some("shelly.test"),
            "/nothing",
            (Some(2), GatewayError::NoRoute),
        ),
        (Some("own.test"), "/api/", (Some(3), GatewayError::NoRoute)),
    ];
    for (host, target, refusal) in cases {
        let got = resolve(&s, &req("GET", *host, target, &[]), false);
        assert_eq!(got.as_ref().err(), Some(refusal), "{host:?}{target}");
    }
}

/// Tenants that serve https only: plain HTTP is redirected (`redirect`) or refused (`only`)
/// before route, auth or shell — gateway endpoints and unrouted paths alike — except ACME
/// challenges, judged on the normalised path.
#[test]
fn https_only_tenants_refuse_plain_http_before_routing() {
    use realmgate_table::{HttpsMode, Table, Tenant};
    let mut redirect = Tenant::test("red")
        .host("red.test")
        .realm("http://127.0.0.1:1/realms/red")
        .route("/app/", "app", "session");
    redirect.https = HttpsMode::Redirect;
    let mut only = Tenant::test("only")
        .host("only.test")
        .route("/", "app", "public");
    only.https = HttpsMode::Only;
    let plain = Tenant::test("plain")
        .host("plain.test")
        .route("/", "app", "public");
    let json = Table::test()
        .version(1)
        .upstream("app", &["127.0.0.1:9001"])
        .tenant(redirect)
        .tenant(only)
        .tenant(plain)
        .to_json();
    let s = snapshot(std::str::from_utf8(&json).expect("utf-8"));
    let acme = "/.well-known/acme-challenge/tok";
    // (host, target, https, outcome: Ok(pool) or the refusal)
    let cases: &[(&str, &str, bool, Result<bool, GatewayError>)] = &[
        (
            "red.test",
            "/app/x",
            false,
            Err(GatewayError::HttpsRedirect),
        ),
        (
            "red.test",
            "/nowhere",
            false,
            Err(GatewayError::HttpsRedirect),
        ),
        (
            "red.test",
            "/.realmgate/login",
            false,
            Err(GatewayError::HttpsRedirect),
        ),
        ("red.test", "/app/x", true, Ok(true)),
        ("red.test", "/.realmgate/login", true, Ok(false)),
        ("red.test", "/nowhere", true, Err(GatewayError::NoRoute)),
        ("red.test", acme, false, Err(GatewayError::NoRoute)),
        ("only.test", "/x", false, Err(GatewayError::HttpsRequired)),
        ("only.test", "/x", true, Ok(true)),
        ("only.test", acme, false, Ok(true)),
        // Dressed up as a challenge, normalised to another path: refused.
        (
            "only.test",
            "/.well-known/acme-challenge/../../x",
            false,
            Err(GatewayError::HttpsRequired),
        ),
        (
            "only.test",
            "/.well-known/acme-challenge/%2e%2e/x",
            false,
            Err(GatewayError::HttpsRequired),
        ),
        ("plain.test", "/x", false, Ok(true)),
        ("plain.test", "/x", true, Ok(true)),
    ];
    for &(host, target, https, ref want) in cases {
        let got = resolve(&s, &req("GET", Some(host), target, &[]), https)
            .map(|r| r.pool.is_some())
            .map_err(|(_, e)| e);
        assert_eq!(&got, want, "{host}{target} https={https}");
    }
}

//! The login flow follows the request's scheme: the redirect URI the realm is sent, `Secure`
//! and the `__Host-` name on every cookie set over https, none over plain HTTP.

use super::*;
use crate::auth::oidc::Endpoints;
use crate::auth::{AuthConfig, SessionKeys};
use crate::metrics::AuthMetrics;
use crate::snapshot::test_util::{snapshot, table};
use pingora_http::RequestHeader;
use url::Url;

fn auth() -> Auth {
    Auth::new(
        AuthConfig::default(),
        SessionKeys::random(),
        Arc::new(AuthMetrics::detached()),
    )
    .expect("auth")
}

fn req(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, target.as_bytes(), None).expect("request");
    r.append_header("host", host).expect("host");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

/// The `shelly` tenant's realm (a login client), its discovery already done.
fn realm(s: &crate::snapshot::Snapshot) -> Arc<RealmRt> {
    let t = s.hosts.lookup("shelly.test").expect("shelly");
    let realm = Arc::clone(s.tenant(t).realm.as_ref().expect("realm"));
    realm.discovery.preset(Endpoints {
        authorization: Url::parse("https://id.test/realms/shelly/auth").expect("url"),
        token: Url::parse("https://id.test/realms/shelly/token").expect("url"),
        end_session: Some(Url::parse("https://id.test/realms/shelly/logout").expect("url")),
    });
    realm
}

fn set_cookies(reply: &Reply) -> Vec<String> {
    reply
        .head
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

fn location(reply: &Reply) -> Url {
    let l = reply
        .head
        .headers
        .get(http::header::LOCATION)
        .expect("location");
    Url::parse(l.to_str().expect("ascii")).expect("absolute location")
}

#[tokio::test]
async fn login_redirect_uri_and_cookies_follow_the_scheme() {
    let s = snapshot(&table());
    let realm = realm(&s);
    let auth = auth();
    let rid = HeaderValue::from_static("rid");
    // (Host as sent, https, redirect URI)
    let cases = [
        (
            "shelly.test",
            true,
            "https://shelly.test/.realmgate/callback",
        ),
        (
            "shelly.test:443",
            true,
            "https://shelly.test/.realmgate/callback",
        ),
        (
            "shelly.test:8443",
            true,
            "https://shelly.test:8443/.realmgate/callback",
        ),
        (
            "shelly.test",
            false,
            "http://shelly.test/.realmgate/callback",
        ),
        (
            "shelly.test:80",
            false,
            "http://shelly.test/.realmgate/callback",
        ),
        (
            "shelly.test:8080",
            false,
            "http://shelly.test:8080/.realmgate/callback",
        ),
    ];
    for (host, https, redirect_uri) in cases {
        let r = req("GET", host, "/.realmgate/login?return_to=/todos/", &[]);
        let request = Request {
            req: &r,
            https,
            tenant: "shelly",
            realm: Some(&realm),
            request_id: &rid,
        };
        let reply = auth.endpoint(&request, Endpoint::Login).await;
        assert_eq!(reply.head.status.as_u16(), 302, "{host} {https}");
        let to = location(&reply);
        let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
        assert_eq!(q["redirect_uri"], redirect_uri, "{host} {https}");
        let cookies = set_cookies(&reply);
        assert_eq!(cookies.len(), 1, "the login state cookie");
        for c in &cookies {
            assert_eq!(c.ends_with("; Secure"), https, "{c}");
        }
    }
}

#[tokio::test]
async fn logout_cookies_follow_the_scheme() {
    let s = snapshot(&table());
    let realm = realm(&s);
    let auth = auth();
    let rid = HeaderValue::from_static("rid");
    // (Host, Origin, https)
    let cases = [
        ("shelly.test", "https://shelly.test", true),
        ("shelly.test:443", "https://shelly.test", true),
        ("shelly.test", "http://shelly.test", false),
    ];
    for (host, origin, https) in cases {
        let r = req("POST", host, "/.realmgate/logout", &[("origin", origin)]);
        let request = Request {
            req: &r,
            https,
            tenant: "shelly",
            realm: Some(&realm),
            request_id: &rid,
        };
        let reply = auth.endpoint(&request, Endpoint::Logout).await;
        assert_eq!(reply.head.status.as_u16(), 303, "{host} {origin}");
        let cookies = set_cookies(&reply);
        assert!(!cookies.is_empty());
        for c in &cookies {
            assert_eq!(c.ends_with("; Secure"), https, "{c}");
            assert_eq!(c.starts_with("__Host-"), https, "{c}");
            assert!(c.contains("Max-Age=0"), "{c}");
        }
    }
    // An https page's logout is not a plain-HTTP origin's, and the reverse.
    for (origin, https) in [("http://shelly.test", true), ("https://shelly.test", false)] {
        let r = req(
            "POST",
            "shelly.test",
            "/.realmgate/logout",
            &[("origin", origin)],
        );
        let request = Request {
            req: &r,
            https,
            tenant: "shelly",
            realm: Some(&realm),
            request_id: &rid,
        };
        let reply = auth.endpoint(&request, Endpoint::Logout).await;
        assert_eq!(reply.head.status.as_u16(), 403, "{origin} https={https}");
        assert!(set_cookies(&reply).is_empty());
    }
}

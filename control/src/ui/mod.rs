//! The operator UI at `/`: one static page and its script and styles, embedded in the
//! binary. The page holds no data; it calls the REST API under `/v1` as an operator signed in
//! through the operators' realm (`/auth/login`; an HttpOnly session cookie, and the session's
//! CSRF token from `/auth/session` on every change) or with the operator token typed in (kept
//! in the tab's `sessionStorage`, sent as a bearer token, never in a URL or a cookie).
//! Everything is rendered as text nodes, and the page's policy allows only its own script and
//! styles and no framing. Views: tenants (each with its custom domains: state, the TXT record
//! to publish, add and remove), certificates (ACME state, expiry, the CA's last error),
//! gateways (`gateways.js`: applied version, lag, last push error, source), upstream pools,
//! API keys and operator keys (`keys.js`: mint with the secret shown once, revoke), a
//! tenant's provisioning steps live from its event stream (`provisioning.js`), the audit log
//! (`audit.js`: before → after digests); a viewer is shown no controls that change anything.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/ui.js");
const STYLE: &str = include_str!("assets/ui.css");
const KEYS: &str = include_str!("assets/keys.js");
const GATEWAYS: &str = include_str!("assets/gateways.js");
/// The traffic charts (`GET /v1/traffic`), drawn with uPlot.
const TRAFFIC: &str = include_str!("assets/traffic.js");
/// uPlot, from npm (control/ui/package-lock.json), put in OUT_DIR by control/build.rs.
const UPLOT: &str = include_str!(concat!(env!("OUT_DIR"), "/uplot.js"));
const UPLOT_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/uplot.css"));
const FORMS: &str = include_str!("assets/forms.js");
const TENANT: &str = include_str!("assets/tenant.js");
const POOLS: &str = include_str!("assets/pools.js");
/// A tenant's provisioning steps, live (`GET /v1/tenants/{id}/events`).
const PROVISIONING: &str = include_str!("assets/provisioning.js");
const AUDIT: &str = include_str!("assets/audit.js");

/// The scripts besides `ui.js`, each one view (or the helpers the views share, or the chart
/// library), by file name.
const VIEWS: &[(&str, &str)] = &[
    ("keys", KEYS),
    ("gateways", GATEWAYS),
    ("uplot", UPLOT),
    ("traffic", TRAFFIC),
    ("forms", FORMS),
    ("tenant", TENANT),
    ("pools", POOLS),
    ("provisioning", PROVISIONING),
    ("audit", AUDIT),
];

/// The page's Content-Security-Policy: its own script and styles, API calls to its own origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; \
    frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/ui.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/ui.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/uplot.css",
            get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
        )
        .route("/ui/{script}", get(view_script))
}

/// `/ui/<view>.js`: one of [`VIEWS`].
async fn view_script(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let body = file
        .strip_suffix(".js")
        .and_then(|name| VIEWS.iter().find(|(n, _)| *n == name));
    match body {
        Some((_, body)) => asset("text/javascript; charset=utf-8", body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_assets_are_served_under_a_strict_policy_and_hold_no_inline_script() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/ui.js", "text/javascript"),
            ("/ui/ui.css", "text/css"),
            ("/ui/keys.js", "text/javascript"),
            ("/ui/gateways.js", "text/javascript"),
            ("/ui/traffic.js", "text/javascript"),
            ("/ui/uplot.js", "text/javascript"),
            ("/ui/uplot.css", "text/css"),
            ("/ui/forms.js", "text/javascript"),
            ("/ui/tenant.js", "text/javascript"),
            ("/ui/pools.js", "text/javascript"),
            ("/ui/provisioning.js", "text/javascript"),
            ("/ui/audit.js", "text/javascript"),
        ] {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            let ct = headers[header::CONTENT_TYPE].to_str().expect("type");
            assert!(ct.starts_with(kind), "{path}: {ct}");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(!body.is_empty());
        }
        // Only the page's own script: nothing inline for the policy to block.
        let (_, _, page) = get("/").await;
        let names: Vec<&str> = std::iter::once("ui")
            .chain(VIEWS.iter().map(|(n, _)| *n))
            .collect();
        for script in &names {
            assert!(page.contains(&format!(r#"<script src="/ui/{script}.js" defer></script>"#)));
        }
        assert_eq!(page.matches("<script").count(), names.len());
        // The scripts render text, never markup, and run nothing built from strings.
        for script in std::iter::once(SCRIPT).chain(VIEWS.iter().map(|(_, b)| *b)) {
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!script.contains(banned), "{banned}");
            }
        }
        // Nothing else under /ui/.
        for path in ["/ui/nope.js", "/ui/keys", "/ui/..%2Fui.js"] {
            assert_eq!(get(path).await.0, StatusCode::NOT_FOUND, "{path}");
        }
        // A realmctl that may not write says so (the Lease; /readyz gives the reason).
        assert!(page.contains(r#"id="leader""#) && SCRIPT.contains(r#"fetch("/readyz")"#));
    }

    #[test]
    fn the_markup_names_every_field_header_and_button() {
        // Every input has a label; every header cell its scope; every button text of its own.
        for id in [
            "token",
            "domain-input",
            "key-tenant",
            "key-namespaces",
            "key-expires",
            "operator-key-name",
            "operator-key-role",
            "operator-key-expires",
            // The tenant settings and pool dialogs (tenant.js, pools.js).
            "te-display-name",
            "te-hosts",
            "te-https",
            "te-hsts-max-age",
            "te-shell-upstream",
            "te-shell-excludes",
            "pe-name",
            "pe-endpoints",
            "pe-health-path",
            "pe-connect",
            "pe-read",
            "pe-write",
        ] {
            assert!(INDEX.contains(&format!(r#"<label for="{id}">"#)), "{id}");
        }
        assert!(!INDEX.contains("<th>") && INDEX.matches(r#"<th scope="col">"#).count() > 30);
        assert!(!INDEX.contains("></button>"));
        // The domain field's problems are announced and tied to it.
        assert!(INDEX.contains(r#"aria-describedby="domain-problems""#));
        assert!(INDEX.contains(r#"id="domain-problems" class="error problems" role="alert""#));
        // The views read the existing API only; changes from a session carry its CSRF token.
        for path in ["\"/v1/certificates\"", "\"/domains\"", "\"/auth/session\""] {
            assert!(SCRIPT.contains(path), "{path}");
        }
        for path in ["\"/v1/audit?limit=\" + AUDIT_PAGE", "\"/v1/audit?after=\""] {
            assert!(AUDIT.contains(path), "{path}");
        }
        // Provisioning progress comes from the tenant's event stream (same origin: the
        // session cookie goes along, and the policy's connect-src 'self' allows it).
        assert!(PROVISIONING.contains("new EventSource(\"/v1/tenants/\""));
        assert!(CSP.contains("connect-src 'self'"));
        assert!(SCRIPT.contains(r#"headers["x-csrf-token"] = session.csrf_token"#));
        assert!(INDEX.contains(r#"<table id="audit">"#) && INDEX.contains(r#"href="/auth/login""#));
        // The audit view pages back with "Older" (a real button, wired by the script).
        assert!(INDEX.contains(r#"<button type="button" id="audit-older" disabled>Older</button>"#));
        assert!(AUDIT.contains(r#"$("audit-older").addEventListener("click", olderAudit)"#));
        assert!(AUDIT.contains("const AUDIT_PAGE = 50;"));
    }
}

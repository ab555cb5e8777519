//! Answers of the shell itself: the built-in shell page and its assets (request filter), and a
//! tenant shell upstream's response on its way back (response filters).

use super::context::{builtin_csp, new_nonce, upstream_csp, User};
use super::decision::ShellPage;
use super::inject::{inject_all, prepare, Injector};
use super::ShellRt;
use crate::headers::X_REQUEST_ID;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_LENGTH,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS,
};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

const BUILTIN_HTML: &str = include_str!("assets/shell.html");

/// A file the gateway serves under `/.realmgate/shell/` on shell-enabled tenants.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

static ASSETS: [Asset; 3] = [
    Asset {
        path: "/.realmgate/shell/shell.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/shell.js"),
    },
    Asset {
        path: "/.realmgate/shell/shell.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/shell.css"),
    },
    Asset {
        path: "/.realmgate/shell/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
];

pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Shell responses differ by these request headers from app responses at the same URL.
const VARY_SHELL: HeaderValue = HeaderValue::from_static("Sec-Fetch-Dest, Accept");

/// A shell request's state in the CTX: its page, nonce and (for a shell upstream) injector.
pub struct ShellState {
    pub page: ShellPage,
    nonce: String,
    injector: Option<Injector>,
}

impl ShellState {
    pub fn new(page: ShellPage) -> ShellState {
        ShellState {
            page,
            nonce: new_nonce(),
            injector: None,
        }
    }

    /// To the shell upstream: ask for a body the injector can read as it streams.
    pub fn upstream_request(&self, up: &mut RequestHeader) -> Result<()> {
        up.insert_header(ACCEPT_ENCODING, HeaderValue::from_static("identity"))
    }

    /// The shell upstream's response header: our policy beside theirs, and injection set up
    /// when the body is HTML we can rewrite. `req` is the client's request.
    pub fn response(
        &mut self,
        shell: &ShellRt,
        req: &RequestHeader,
        resp: &mut ResponseHeader,
        user: Option<&User<'_>>,
    ) -> Result<()> {
        let head_only = req.method == http::Method::HEAD;
        let chunked = req.version == http::Version::HTTP_11;
        resp.append_header(CONTENT_SECURITY_POLICY, upstream_csp(&self.nonce))?;
        resp.append_header(VARY, VARY_SHELL)?;
        let element = shell.context.element(&self.nonce, self.page.active, user);
        if let Some(encoding) = prepare(resp, head_only, chunked, element.len())? {
            if !head_only {
                self.injector = Some(Injector::new(element, None, encoding));
            }
        }
        Ok(())
    }

    /// One body chunk of the shell upstream's response.
    pub fn body(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        match self.injector.as_mut() {
            Some(inj) => inj.filter(body, end),
            None => Ok(()),
        }
    }

    /// The built-in shell, answered by the gateway itself (through the same injector).
    pub async fn serve_builtin(
        &self,
        session: &mut Session,
        shell: &ShellRt,
        user: Option<&User<'_>>,
        request_id: &HeaderValue,
        hsts: Option<&HeaderValue>,
    ) -> Result<bool> {
        let element = shell.context.element(&self.nonce, self.page.active, user);
        let body = inject_all(BUILTIN_HTML.as_bytes(), element, Some(self.nonce.clone()))?;
        let mut resp = ResponseHeader::build(200, Some(9))?;
        resp.insert_header(CONTENT_TYPE, "text/html; charset=utf-8")?;
        resp.insert_header(CONTENT_LENGTH, body.len())?;
        resp.insert_header(CACHE_CONTROL, "no-store")?;
        resp.insert_header(
            CONTENT_SECURITY_POLICY,
            builtin_csp(&self.nonce, &shell.form_action),
        )?;
        resp.insert_header(VARY, VARY_SHELL)?;
        resp.insert_header(X_CONTENT_TYPE_OPTIONS, "nosniff")?;
        resp.insert_header(REFERRER_POLICY, "same-origin")?;
        resp.insert_header(X_REQUEST_ID, request_id.clone())?;
        write(session, resp, body, hsts).await
    }
}

/// One of the shell's static assets.
pub async fn serve_asset(
    session: &mut Session,
    asset: &'static Asset,
    request_id: &HeaderValue,
    hsts: Option<&HeaderValue>,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(200, Some(6))?;
    resp.insert_header(CONTENT_TYPE, asset.content_type)?;
    resp.insert_header(CONTENT_LENGTH, asset.body.len())?;
    resp.insert_header(CACHE_CONTROL, "public, max-age=300")?;
    resp.insert_header(X_CONTENT_TYPE_OPTIONS, "nosniff")?;
    resp.insert_header(CROSS_ORIGIN_RESOURCE_POLICY, "same-origin")?;
    resp.insert_header(X_REQUEST_ID, request_id.clone())?;
    write(
        session,
        resp,
        Bytes::from_static(asset.body.as_bytes()),
        hsts,
    )
    .await
}

const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

/// Write a response of the shell's own, with the tenant's `Strict-Transport-Security` when the
/// request is https (`hsts`, see `crate::request::scheme::hsts`).
async fn write(
    session: &mut Session,
    mut resp: ResponseHeader,
    body: Bytes,
    hsts: Option<&HeaderValue>,
) -> Result<bool> {
    if let Some(v) = hsts {
        resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, v.clone())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

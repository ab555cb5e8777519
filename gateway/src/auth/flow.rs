//! `session` routes and the gateway's login endpoints on every tenant host with a login
//! client: `/.realmgate/login`, `/.realmgate/callback`, `/.realmgate/logout`.

use super::cookie;
use super::error::AuthError;
use super::jwt::Expect;
use super::oidc::{self, origin, safe_return_to, TokenResponse};
use super::realm::RealmRt;
use super::session::{self, LoginTx, Purpose, SessionData};
use super::{unix_now, Auth, AuthCtx, Identity, Reply, Request};
use crate::errors::{error_response, wants_html, GatewayError};
use bytes::Bytes;
use http::HeaderValue;
use pingora_http::ResponseHeader;
use realmgate_table::host::HostBuf;
use std::sync::Arc;

/// A gateway endpoint under `/.realmgate/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Callback,
    Logout,
    /// The fleet's assertion keys (`/.realmgate/jwks.json`), public on every tenant host.
    Jwks,
    Unknown,
}

impl Endpoint {
    /// `Some` for every path under `/.realmgate/` (and `/.realmgate` itself).
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix(realmgate_table::GATEWAY_PATH_PREFIX)?;
        Some(match rest {
            "/login" => Endpoint::Login,
            "/callback" => Endpoint::Callback,
            "/logout" => Endpoint::Logout,
            "/jwks.json" => Endpoint::Jwks,
            "" => Endpoint::Unknown,
            r if r.starts_with('/') => Endpoint::Unknown,
            _ => return None,
        })
    }
}

impl Auth {
    /// The session cookie, opened and (near expiry) refreshed. `Ok(false)`: no session cookie.
    pub(super) async fn session(
        &self,
        r: &Request<'_>,
        realm: &Arc<RealmRt>,
        actx: &mut AuthCtx,
    ) -> Result<bool, AuthError> {
        let Some(sealed) = session::read_session(r.req, r.https) else {
            return Ok(false);
        };
        let tenant = r.tenant;
        let mut data: SessionData = self
            .keys
            .open(Purpose::Session, tenant, &sealed)
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .filter(|d: &SessionData| d.t == tenant)
            .ok_or(AuthError::SessionInvalid)?;
        let now = unix_now();
        if now + self.config.session_refresh_margin_s >= data.aexp {
            match self.refresh(realm, &data).await {
                Some(fresh) => {
                    data = fresh;
                    if let Some(cookies) = self.seal_session(&data, r.https) {
                        actx.set_cookies = cookies;
                    }
                }
                None if now < data.aexp => {}
                None => {
                    actx.set_cookies = session::clear_session(r.https);
                    return Err(AuthError::SessionExpired);
                }
            }
        }
        let claims = super::jwt::Claims {
            sub: data.sub,
            roles: data.roles,
            exp: data.aexp,
            name: data.name,
        };
        let bearer = HeaderValue::from_str(&format!("Bearer {}", data.at)).ok();
        let via = crate::assertion::Via::Session;
        actx.identity = Some(Arc::new(Identity::new(realm.id, &claims, bearer, via)));
        Ok(true)
    }

    async fn refresh(&self, realm: &Arc<RealmRt>, data: &SessionData) -> Option<SessionData> {
        let rt = data.rt.as_deref()?;
        if data.rexp != 0 && unix_now() >= data.rexp {
            return None;
        }
        let endpoints = realm
            .discovery
            .get(&realm.issuer, &self.http, &self.config)
            .await
            .ok()?;
        let result = match oidc::refresh(
            realm.login_client(),
            &endpoints,
            &self.http,
            &self.config,
            rt,
        )
        .await
        {
            Ok(tokens) => self.session_data(realm, &data.t, tokens, None).await.ok(),
            Err(e) => {
                log::info!("session refresh for tenant {} failed: {e}", data.t);
                None
            }
        };
        match &result {
            Some(_) => self.metrics.refresh_ok.inc(),
            None => self.metrics.refresh_failed.inc(),
        }
        // Keep the ID token of the login when the refresh answer has none.
        result.map(|mut d| {
            if d.it.is_none() {
                d.it = data.it.clone();
            }
            d
        })
    }

    /// Check a token endpoint answer and turn it into session data. With `nonce`, the ID token
    /// is required and checked (login); on refresh it is optional.
    async fn session_data(
        &self,
        realm: &Arc<RealmRt>,
        tenant: &str,
        tokens: TokenResponse,
        nonce: Option<&str>,
    ) -> Result<SessionData, AuthError> {
        let client_id = realm.client_id.as_deref().ok_or(AuthError::LoginFailed)?;
        let access = self
            .verify_access(&tokens.access_token, realm, Some(client_id))
            .await?;
        if let Some(nonce) = nonce {
            let id_token = tokens.id_token.as_deref().ok_or(AuthError::LoginFailed)?;
            let id = self
                .verify(id_token, realm, Expect::Id { client_id, nonce })
                .await?;
            if id.sub != access.sub {
                return Err(AuthError::LoginFailed);
            }
        }
        let now = unix_now();
        Ok(SessionData {
            t: tenant.to_owned(),
            sub: access.sub,
            roles: access.roles,
            at: tokens.access_token,
            aexp: access.exp,
            rt: tokens.refresh_token,
            rexp: tokens
                .refresh_expires_in
                .filter(|s| *s > 0)
                .map_or(0, |s| now + s),
            it: tokens.id_token,
            name: access.name,
        })
    }

    /// Sealed session cookies; the ID token is dropped first if they would not fit.
    fn seal_session(&self, data: &SessionData, https: bool) -> Option<Vec<HeaderValue>> {
        let seal = |d: &SessionData| {
            let plain = serde_json::to_vec(d).ok()?;
            let sealed = self.keys.seal(Purpose::Session, &d.t, &plain)?;
            session::session_cookies(&sealed, https)
        };
        seal(data).or_else(|| {
            let mut slim = data.clone();
            slim.it = None;
            seal(&slim)
        })
    }

    /// 302 to the realm's login page, remembering state, nonce, PKCE verifier and the page to
    /// return to in a sealed cookie on the callback path.
    pub(super) async fn start_login(&self, r: &Request<'_>, realm: &Arc<RealmRt>) -> Reply {
        let target = r.req.uri.path_and_query().map_or("/", |p| p.as_str());
        self.login_redirect(r, realm, safe_return_to(target)).await
    }

    async fn login_redirect(
        &self,
        r: &Request<'_>,
        realm: &Arc<RealmRt>,
        return_to: &str,
    ) -> Reply {
        let (Some(client_id), Some(origin)) = (realm.client_id.as_deref(), request_origin(r))
        else {
            return self.page(r, AuthError::LoginFailed);
        };
        let endpoints = match realm
            .discovery
            .get(&realm.issuer, &self.http, &self.config)
            .await
        {
            Ok(e) => e,
            Err(e) => return self.page(r, e),
        };
        let tx = LoginTx {
            t: r.tenant.to_owned(),
            state: session::random_token(24),
            nonce: session::random_token(24),
            verifier: session::random_token(32),
            redirect_uri: format!("{origin}/.realmgate/callback"),
            return_to: return_to.to_owned(),
            iat: unix_now(),
        };
        let url = oidc::authorization_url(
            &endpoints,
            client_id,
            &tx.redirect_uri,
            &tx.state,
            &tx.nonce,
            &tx.verifier,
        );
        let sealed = serde_json::to_vec(&tx)
            .ok()
            .and_then(|plain| self.keys.seal(Purpose::Login, &tx.t, &plain));
        let Some(sealed) = sealed else {
            return self.page(r, AuthError::LoginFailed);
        };
        let cookie = format!(
            "{}={sealed}; Max-Age={}; {}",
            session::tx_name(&tx.state),
            self.config.login_timeout_s,
            session::attributes(r.https, "/.realmgate/callback")
        );
        redirect(
            302,
            url.as_str(),
            [cookie]
                .iter()
                .filter_map(|c| HeaderValue::from_str(c).ok()),
        )
    }

    /// Serve a `/.realmgate/*` endpoint on a tenant host.
    pub async fn endpoint(&self, r: &Request<'_>, endpoint: Endpoint) -> Reply {
        let realm = match r.realm {
            Some(realm) if realm.client_id.is_some() && endpoint != Endpoint::Unknown => realm,
            _ => {
                let html = wants_html(r.req.headers.get(http::header::ACCEPT));
                let (head, body) = GatewayError::NoRoute.response(html, r.request_id);
                return Reply { head, body };
            }
        };
        match endpoint {
            Endpoint::Login => {
                let query = r.req.uri.query().unwrap_or("");
                let return_to = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "return_to")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| "/".into());
                self.login_redirect(r, realm, safe_return_to(&return_to))
                    .await
            }
            Endpoint::Callback => match self.callback(r, realm).await {
                Ok(reply) => {
                    self.metrics.login_ok.inc();
                    reply
                }
                Err(e) => {
                    self.metrics.login_failed.inc();
                    self.metrics.failure(e.label());
                    self.page(r, e)
                }
            },
            Endpoint::Logout => match r.req.method {
                // Only a same-origin POST ends the session: a cross-site page can make a
                // browser GET (or POST to) this URL, but cannot make it say it is this site.
                http::Method::POST => match same_origin(r) {
                    Ok(()) => self.logout(r, realm).await,
                    Err(e) => {
                        self.metrics.failure(e.label());
                        self.page(r, e)
                    }
                },
                // Links to the logout URL keep working: they get a page asking to confirm.
                http::Method::GET | http::Method::HEAD => logout_page(),
                _ => {
                    let mut reply = self.page(r, AuthError::LogoutMethod);
                    let _ = reply
                        .head
                        .insert_header(http::header::ALLOW, "GET, HEAD, POST");
                    reply
                }
            },
            // The JWKS is answered before the login endpoints (`crate::assertion::jwks`).
            Endpoint::Unknown | Endpoint::Jwks => self.page(r, AuthError::LoginFailed),
        }
    }

    async fn callback(&self, r: &Request<'_>, realm: &Arc<RealmRt>) -> Result<Reply, AuthError> {
        if r.req.method != http::Method::GET {
            return Err(AuthError::LoginState);
        }
        let query = r.req.uri.query().unwrap_or("");
        let (mut code, mut state, mut error) = (None, None, false);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "code" => code = Some(v.into_owned()),
                "state" => state = Some(v.into_owned()),
                "error" => error = true,
                _ => {}
            }
        }
        let state = state.ok_or(AuthError::LoginState)?;
        let name = session::tx_name(&state);
        let tenant = r.tenant;
        let tx: LoginTx = cookie::pairs(r.req)
            .filter(|(n, _)| *n == name.as_bytes())
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .find_map(|v| self.keys.open(Purpose::Login, tenant, v))
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or(AuthError::LoginState)?;
        let same_state: bool =
            subtle::ConstantTimeEq::ct_eq(tx.state.as_bytes(), state.as_bytes()).into();
        if !same_state || tx.t != tenant || unix_now() > tx.iat + self.config.login_timeout_s {
            return Err(AuthError::LoginState);
        }
        if error {
            return Err(AuthError::LoginFailed);
        }
        let code = code.ok_or(AuthError::LoginFailed)?;
        let endpoints = realm
            .discovery
            .get(&realm.issuer, &self.http, &self.config)
            .await?;
        let tokens = oidc::exchange_code(
            realm.login_client(),
            &endpoints,
            &self.http,
            &self.config,
            &code,
            &tx.redirect_uri,
            &tx.verifier,
        )
        .await
        .map_err(|e| {
            log::info!("login for tenant {tenant}: {e}");
            AuthError::LoginFailed
        })?;
        let data = self
            .session_data(realm, tenant, tokens, Some(&tx.nonce))
            .await?;
        let mut cookies = self
            .seal_session(&data, r.https)
            .ok_or(AuthError::LoginFailed)?;
        cookies.extend(clear_tx(&name, r.https));
        Ok(redirect(303, &tx.return_to, cookies.into_iter()))
    }

    /// After a same-origin POST ([`same_origin`]): clear the session and end the realm's
    /// session too (end-session endpoint with
    /// `id_token_hint`), coming back to the tenant's `/`.
    async fn logout(&self, r: &Request<'_>, realm: &Arc<RealmRt>) -> Reply {
        self.metrics.logouts.inc();
        let cookies = session::clear_session(r.https);
        let data: Option<SessionData> = session::read_session(r.req, r.https)
            .and_then(|s| self.keys.open(Purpose::Session, r.tenant, &s))
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        let home = request_origin(r).map(|o| format!("{o}/"));
        let (Some(data), Some(home), Some(client_id)) = (data, home, realm.client_id.as_deref())
        else {
            return redirect(303, "/", cookies.into_iter());
        };
        let location = match realm
            .discovery
            .get(&realm.issuer, &self.http, &self.config)
            .await
        {
            Ok(endpoints) => {
                oidc::end_session_url(&endpoints, client_id, data.it.as_deref(), &home)
                    .map(|u| u.to_string())
            }
            Err(_) => None,
        };
        redirect(303, location.as_deref().unwrap_or("/"), cookies.into_iter())
    }

    /// A login-flow error page (HTML for browsers).
    fn page(&self, r: &Request<'_>, e: AuthError) -> Reply {
        let html = wants_html(r.req.headers.get(http::header::ACCEPT));
        let (head, body) =
            error_response(e.status(), e.code(), e.description(), html, r.request_id);
        Reply { head, body }
    }
}

fn request_origin(r: &Request<'_>) -> Option<String> {
    let mut buf = HostBuf::default();
    let host = crate::tenant::request_host(r.req, &mut buf).ok()?;
    let raw = r
        .req
        .headers
        .get(http::header::HOST)
        .map_or(host.as_bytes(), |h| h.as_bytes());
    Some(origin(raw, host, r.https))
}

/// Did this request come from a page of the tenant host itself? Its `Origin` must be the
/// request's own origin (scheme from the connection, the Host as sent); without `Origin`, its
/// `Referer` must be of that origin. `Origin: null` (sandboxed or privacy-sensitive contexts),
/// a repeated header, or neither header is refused: a logout nobody can attribute to this site
/// is not performed.
fn same_origin(r: &Request<'_>) -> Result<(), AuthError> {
    let own = request_origin(r)
        .and_then(|o| url::Url::parse(&o).ok())
        .map(|u| u.origin())
        .ok_or(AuthError::CrossSiteLogout)?;
    let one = |name: http::header::HeaderName| {
        let mut values = r.req.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| AuthError::CrossSiteLogout),
            _ => Err(AuthError::CrossSiteLogout),
        }
    };
    let matches = match (one(http::header::ORIGIN)?, one(http::header::REFERER)?) {
        // An origin is exactly `scheme://host[:port]`: no path, no user, nothing else.
        (Some(o), _) => url::Url::parse(o).is_ok_and(|u| {
            let origin = u.origin();
            origin.ascii_serialization().eq_ignore_ascii_case(o) && origin == own
        }),
        (None, Some(referer)) => url::Url::parse(referer).is_ok_and(|u| u.origin() == own),
        (None, None) => false,
    };
    if matches {
        Ok(())
    } else {
        Err(AuthError::CrossSiteLogout)
    }
}

/// What a GET of the logout URL gets: a small page of this origin with a form that POSTs back
/// to it. Nothing changes until that POST; the page can never be framed (no clickjacking).
/// Its policy has no `form-action`: browsers check that directive on the redirect to the
/// realm's end-session endpoint too.
fn logout_page() -> Reply {
    const PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
        <meta name=\"viewport\" content=\"width=device-width\"><title>Sign out</title></head>\
        <body><form method=\"post\" action=\"/.realmgate/logout\"><p>Sign out of this site?</p>\
        <button type=\"submit\" id=\"rg-logout\">Sign out</button></form></body></html>\n";
    let mut head = ResponseHeader::build(200, Some(6))
        .unwrap_or_else(|_| ResponseHeader::build(500, None).expect("static status"));
    let _ = head.insert_header(http::header::CONTENT_TYPE, "text/html; charset=utf-8");
    let _ = head.insert_header(http::header::CONTENT_LENGTH, PAGE.len());
    let _ = head.insert_header(http::header::CACHE_CONTROL, "no-store");
    let _ = head.insert_header(
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    );
    let _ = head.insert_header(http::header::X_FRAME_OPTIONS, "DENY");
    Reply {
        head: Box::new(head),
        body: Bytes::from_static(PAGE.as_bytes()),
    }
}

fn clear_tx(name: &str, https: bool) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}=; Max-Age=0; {}",
        session::attributes(https, "/.realmgate/callback")
    ))
    .ok()
}

/// A redirect with `Set-Cookie`s; never cached.
pub fn redirect(status: u16, location: &str, cookies: impl Iterator<Item = HeaderValue>) -> Reply {
    let mut head = ResponseHeader::build(status, Some(8))
        .unwrap_or_else(|_| ResponseHeader::build(500, None).expect("static status"));
    if let Ok(v) = HeaderValue::from_str(location) {
        let _ = head.insert_header(http::header::LOCATION, v);
    }
    for c in cookies {
        let _ = head.append_header(http::header::SET_COOKIE, c);
    }
    let _ = head.insert_header(http::header::CACHE_CONTROL, "no-store");
    let _ = head.insert_header(http::header::CONTENT_LENGTH, 0);
    Reply {
        head: Box::new(head),
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod scheme_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        assert_eq!(
            Endpoint::from_path("/.realmgate/callback"),
            Some(Endpoint::Callback)
        );
        assert_eq!(
            Endpoint::from_path("/.realmgate/logout"),
            Some(Endpoint::Logout)
        );
        assert_eq!(
            Endpoint::from_path("/.realmgate/login"),
            Some(Endpoint::Login)
        );
        assert_eq!(
            Endpoint::from_path("/.realmgate/x"),
            Some(Endpoint::Unknown)
        );
        assert_eq!(Endpoint::from_path("/.realmgate"), Some(Endpoint::Unknown));
        assert_eq!(Endpoint::from_path("/.realmgatex"), None);
        assert_eq!(Endpoint::from_path("/app"), None);
    }
}

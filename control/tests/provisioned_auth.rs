//! A provisioned tenant's realm at work, across processes and against real components: the
//! real `realmctl` provisions two tenants in a real Keycloak (and records in a real
//! PowerDNS), its table reaches a real `realmgate`, and the gateway checks each tenant's
//! bearer tokens against that tenant's realm only, and logs a user in through the realm's
//! login client, whose secret travels in the table and is exchanged at Keycloak's token
//! endpoint. The login is driven over plain HTTP, as a browser would post Keycloak's HTML
//! forms (the Chromium-driven login lives in the gateway's tests); the first admin's
//! temporary password is changed on the way, as on a real first login. The Ingress goes to a
//! real Kubernetes API server (tests/setup/kubernetes.sh).

mod common;

use common::provision::*;
use common::*;
use reqwest::header::{ACCEPT, COOKIE, HOST, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// A minimal cookie jar for one origin: enough for Keycloak's and the gateway's cookies.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap_or_default();
            let pair = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.0.retain(|(n, _)| n != name.trim());
            let expired = value.is_empty() || v.to_ascii_lowercase().contains("max-age=0");
            if !expired {
                self.0.push((name.trim().to_owned(), value.to_owned()));
            }
        }
    }

    fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.join("; ")
    }
}

/// The `action` of the first form holding a field named `field`, HTML entities undone.
fn form_action(html: &str, field: &str) -> Option<String> {
    html.split("<form").skip(1).find_map(|form| {
        if !form.contains(&format!("name=\"{field}\"")) {
            return None;
        }
        let rest = &form[form.find("action=\"")? + 8..];
        Some(rest[..rest.find('"')?].replace("&amp;", "&"))
    })
}

/// One client for the browser's side: no redirects followed, each hop checked.
struct Visitor {
    http: reqwest::Client,
    gw: std::net::SocketAddr,
    /// `host:8080`: the origin the login client's redirect URI names.
    authority: String,
    gw_jar: Jar,
    kc_jar: Jar,
}

impl Visitor {
    /// A top-level navigation.
    async fn gateway(&mut self, path_and_query: &str) -> reqwest::Response {
        self.gateway_as(path_and_query, "document").await
    }

    /// A request with `Sec-Fetch-Dest: dest` (`document`, `iframe`, …).
    async fn gateway_as(&mut self, path_and_query: &str, dest: &str) -> reqwest::Response {
        let r = self
            .http
            .get(format!("http://{}{path_and_query}", self.gw))
            .header(HOST, &self.authority)
            .header(ACCEPT, "text/html")
            .header("sec-fetch-dest", dest)
            .header(COOKIE, self.gw_jar.header())
            .send()
            .await
            .expect("gateway answers");
        self.gw_jar.take(&r);
        r
    }

    async fn keycloak(&mut self, method: Method, url: &str, form: &[(&str, &str)]) -> String {
        let mut req = self
            .http
            .request(method, url)
            .header(COOKIE, self.kc_jar.header());
        if !form.is_empty() {
            req = req.form(form);
        }
        let r = req.send().await.expect("keycloak answers");
        self.kc_jar.take(&r);
        let status = r.status();
        let location = r.headers().get(LOCATION).cloned();
        let text = r.text().await.unwrap_or_default();
        match location {
            Some(l) if status.is_redirection() => {
                format!("LOCATION {}", l.to_str().expect("location"))
            }
            _ => {
                assert_eq!(status, StatusCode::OK, "Keycloak at {url}: {text}");
                text
            }
        }
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn provisioned_realms_guard_the_jwt_and_session_routes_of_their_own_tenant_only() {
    let Some(s) = services("provisioned_realms_guard") else {
        return;
    };
    // Bound, not `..`: the directory, the API server and the upstream must live as long as the test.
    let Stack {
        dir: _dir,
        kube: _kube,
        up: _up,
        gw,
        rc,
    } = Stack::start("prov-auth", Some(&s), "guarded").await;
    let api = rc.api();
    let pid = std::process::id();
    let ids = [format!("pa{pid}"), format!("pb{pid}")];
    let host = |id: &str| format!("{id}.{}", s.zone);
    for id in &ids {
        let (st, v) = api
            .call(
                Method::POST,
                "/v1/tenants",
                // The app under /app/ is framed by the tenant's app shell.
                Some(json!({"id": id, "hosts": [host(id)], "display_name": id,
                    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"},
                               {"prefix": "/api/", "upstream": "app", "auth": "jwt"},
                               {"prefix": "/app/", "upstream": "app", "auth": "session"}],
                    "catalog": [{"name": "app", "title": "App", "path": "/app/"}],
                    "shell": {"enabled": true}})),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    }
    let mut creds = Vec::new();
    for id in &ids {
        wait_state(&api, id, "ready", Duration::from_secs(90)).await;
        let (st, cred) = api
            .call(Method::POST, &format!("/v1/tenants/{id}/credentials"), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{cred}");
        creds.push(cred);
    }
    for id in &ids {
        until_answers(&gw, &host(id), 200, None, Duration::from_secs(10)).await;
    }

    // Bearer tokens: each realm's token opens its own tenant's jwt route and no other.
    let secret = |i: usize| creds[i]["admin_client_secret"].as_str().expect("secret");
    let tokens = [
        tenant_admin_token(&s, &ids[0], secret(0)).await,
        tenant_admin_token(&s, &ids[1], secret(1)).await,
    ];
    let master = KcAdmin::login(&s).await.token().await;
    let http = reqwest::Client::new();
    let api_status = |id: &str, token: Option<&str>| {
        let mut req = http
            .get(format!("http://{}/api/x", gw.listen))
            .header(HOST, host(id));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    assert_eq!(api_status(&ids[0], Some(&tokens[0])).await, 200);
    assert_eq!(api_status(&ids[1], Some(&tokens[1])).await, 200);
    assert_eq!(
        api_status(&ids[1], Some(&tokens[0])).await,
        401,
        "another tenant's token"
    );
    assert_eq!(
        api_status(&ids[0], Some(&tokens[1])).await,
        401,
        "another tenant's token"
    );
    assert_eq!(api_status(&ids[0], None).await, 401, "no token");
    assert_eq!(
        api_status(&ids[0], Some(&master)).await,
        401,
        "Keycloak's master realm"
    );

    // A browser's login on tenant A's session route, through A's realm and login client.
    let authority = format!("{}:8080", host(&ids[0]));
    let mut v = Visitor {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        gw: gw.listen,
        authority: authority.clone(),
        gw_jar: Jar::default(),
        kc_jar: Jar::default(),
    };
    let r = v.gateway("/app/page?x=1").await;
    assert!(
        r.status().is_redirection(),
        "a navigation goes to the login"
    );
    let mut to = location(&r);
    // The gateway's own login endpoint may come first; then the realm's authorization page.
    while to.starts_with('/') || to.starts_with(&format!("http://{authority}/")) {
        let path = to.trim_start_matches(&format!("http://{authority}"));
        let r = v.gateway(path).await;
        assert!(r.status().is_redirection(), "{path}: {}", r.status());
        to = location(&r);
    }
    let realm_base = format!("{}/realms/{}/", s.keycloak, ids[0]);
    assert!(to.starts_with(&realm_base), "not A's realm: {to}");
    assert!(to.contains("client_id=realmgate"), "{to}");
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    let page = v.keycloak(Method::GET, &to, &[]).await;
    let action = form_action(&page, "username").expect("Keycloak's login form");
    let password = creds[0]["admin_password"].as_str().expect("password");
    let mut answer = v
        .keycloak(
            Method::POST,
            &action,
            &[("username", "admin"), ("password", password)],
        )
        .await;
    // Keycloak's first-login required actions, answered as the new admin would: the temporary
    // password replaced, then the profile completed (the realm's user profile asks for an
    // email the provisioned admin does not have yet). Redirects within Keycloak are followed.
    let new_password = "a-new-Passw0rd-for-the-test";
    let email = format!("admin@{}", host(&ids[0]));
    for _ in 0..6 {
        if let Some(next) = answer
            .strip_prefix("LOCATION ")
            .filter(|l| l.starts_with(&s.keycloak))
        {
            let next = next.to_owned();
            answer = v.keycloak(Method::GET, &next, &[]).await;
        } else if let Some(action) = form_action(&answer, "password-new") {
            let form = [
                ("password-new", new_password),
                ("password-confirm", new_password),
            ];
            answer = v.keycloak(Method::POST, &action, &form).await;
        } else if let Some(action) = form_action(&answer, "email") {
            let form = [
                ("email", email.as_str()),
                ("firstName", "Admin"),
                ("lastName", ids[0].as_str()),
            ];
            answer = v.keycloak(Method::POST, &action, &form).await;
        } else {
            break;
        }
    }
    let callback = answer
        .strip_prefix("LOCATION ")
        .unwrap_or_else(|| panic!("no redirect back after the login: {answer}"));
    let path = callback
        .strip_prefix(&format!("http://{authority}"))
        .unwrap_or_else(|| panic!("redirected elsewhere: {callback}"));
    assert!(path.starts_with("/.realmgate/callback?"), "{path}");
    // The gateway exchanges the code with the login client's secret from the table.
    let r = v.gateway(path).await;
    assert!(
        r.status().is_redirection(),
        "callback answered {}\n{}",
        r.status(),
        gw.proc.log_text()
    );
    assert_eq!(location(&r), "/app/page?x=1");
    // Signed in: the navigation gets the shell, which knows the user by the token's name
    // (Keycloak's `name`: the first and last names given at the first login); the frame gets
    // the app.
    let r = v.gateway("/app/page?x=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap_or_default();
    let ctx = page
        .split(r#"id="realmgate-context""#)
        .nth(1)
        .and_then(|rest| Some(&rest[rest.find('>')? + 1..rest.find("</script>")?]))
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .unwrap_or_else(|| panic!("no shell context in {page}"));
    assert_eq!(ctx["user"]["name"], format!("Admin {}", ids[0]), "{ctx}");
    assert!(ctx["user"]["subject"].is_string(), "{ctx}");
    assert_eq!(ctx["catalog"][0]["path"], "/app/", "{ctx}");
    let r = v.gateway_as("/app/page?x=1", "iframe").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap_or_default(), "upstream guarded");

    // A's session is worth nothing at B.
    let r = http
        .get(format!("http://{}/app/page", gw.listen))
        .header(HOST, format!("{}:8080", host(&ids[1])))
        .header(COOKIE, v.gw_jar.header())
        .send()
        .await
        .expect("gateway");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "A's session at B");

    // Neither the login client's secret nor the session shows in realmctl's or the gateway's
    // logs, and the secret not in realmctl's view of the tenant.
    let kc = KcAdmin::login(&s).await;
    let (_, login) = kc
        .get(&format!("/{}/clients?clientId=realmgate", ids[0]))
        .await;
    let uuid = login[0]["id"].as_str().expect("login client");
    let (_, sec) = kc
        .get(&format!("/{}/clients/{uuid}/client-secret", ids[0]))
        .await;
    let login_secret = sec["value"].as_str().expect("login client secret");
    let (_, view) = api
        .call(Method::GET, &format!("/v1/tenants/{}", ids[0]), None)
        .await;
    assert!(!view.to_string().contains(login_secret), "{view}");
    let logs = format!("{}{}", rc.proc.log_text(), gw.proc.log_text());
    assert!(!logs.contains(login_secret), "login secret logged");
    // The table carries it to gateways only: an operator reads it redacted.
    let table = |token: &'static str| {
        let req = http
            .get(format!("{}/v1/table", rc.url()))
            .bearer_auth(token);
        async move {
            let r = req.send().await.expect("realmctl");
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.expect("table")
        }
    };
    let for_gateways = table(GATEWAY_TOKEN).await;
    assert!(for_gateways.contains(login_secret));
    let for_operators = table(OPERATOR_TOKEN).await;
    assert!(!for_operators.contains(login_secret), "{for_operators}");
    assert!(for_operators.contains("\"client_secret\":\"(redacted)\""));
    assert!(!logs.contains(password), "password logged");
    assert!(!logs.contains(&tokens[0]), "token logged");
    for (_, value) in &v.gw_jar.0 {
        assert!(!logs.contains(value.as_str()), "session cookie logged");
    }

    for id in &ids {
        let (st, _) = api
            .call(Method::DELETE, &format!("/v1/tenants/{id}"), None)
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
    }
    for id in &ids {
        wait_gone(&api, id, Duration::from_secs(30)).await;
    }
}

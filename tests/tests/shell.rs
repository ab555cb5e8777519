//! The app shell through the real gateway: who gets the shell, what is injected, how shell
//! upstream bodies stream through the injector, and the framing policy of app responses.

use std::time::Duration;

use realmgate_e2e::assertion::section;
use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{
    get_request, json_contains, Canned, Gateway, GatewayOpts, JwksServer, Scripted, Table, TestKey,
    Todos, Upstream,
};
use serde_json::{json, Value};

const DOC: (&str, &str) = ("sec-fetch-dest", "document");
const FRAME: (&str, &str) = ("sec-fetch-dest", "iframe");

fn catalog() -> Value {
    json!([{"name": "Todos", "path": "/todos/", "icon": "lucide:check-square"},
           {"name": "Notes", "path": "/notes/"}])
}

/// The context element's JSON and nonce, from a shell page.
fn context(html: &str) -> (Value, String) {
    let open = r#"<script type="application/json" id="realmgate-context" nonce=""#;
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("no context element in {html}"));
    let rest = &html[start + open.len()..];
    let (nonce, rest) = rest.split_once("\">").expect("nonce attribute");
    let json = &rest[..rest.find("</script>").expect("end of the element")];
    (
        serde_json::from_str(json).expect("context is JSON"),
        nonce.to_string(),
    )
}

async fn builtin_gateway() -> (Gateway, Upstream) {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app", [app.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app")])
        .with("display_name", json!("Acme </script><!-- \u{2028} Corp"))
        .with("catalog", catalog())
        .with(
            "shell",
            json!({"enabled": true, "excludes": ["/todos/api/"]}),
        )
        .tenant("plain", &["plain.test"], &[("/", "app")])
        .with("catalog", catalog())
        .build();
    gw.push_ok(&table).await;
    (gw, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn navigations_get_the_built_in_shell_with_the_context() {
    let (gw, app) = builtin_gateway().await;
    let r = gw
        .fetch(gw.get("acme.test", "/").header(DOC.0, DOC.1))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("x-request-id").is_some());
    let (ctx, nonce) = context(&r.text);
    assert_eq!(ctx["tenant"]["id"], "acme");
    assert_eq!(
        ctx["tenant"]["display_name"],
        "Acme </script><!-- \u{2028} Corp"
    );
    assert!(
        json_contains(&ctx["catalog"], &catalog()),
        "{}",
        ctx["catalog"]
    );
    assert_eq!(ctx["catalog"][1]["icon"], Value::Null);
    assert_eq!(ctx["active"], Value::Null);
    assert_eq!(ctx["user"], Value::Null);
    assert_eq!(ctx["login_url"], "/.realmgate/login");
    assert_eq!(ctx["logout_url"], "/.realmgate/logout");
    let csp = r.header("content-security-policy").expect("csp");
    assert!(
        csp.contains(&format!("script-src 'nonce-{nonce}'")),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // The shell's own script carries the nonce too.
    assert!(
        r.text.contains(&format!(
            "<script src=\"/.realmgate/shell/shell.js\" defer nonce=\"{nonce}\">"
        )),
        "{}",
        r.text
    );
    assert_eq!(app.hits(), 0, "the built-in shell needs no upstream");

    // A fresh nonce per response.
    let again = gw
        .fetch(gw.get("acme.test", "/").header(DOC.0, DOC.1))
        .await;
    assert_ne!(context(&again.text).1, nonce);

    // Old browsers without fetch metadata; a deep link into an app marks it active.
    let deep = gw
        .fetch(
            gw.get("acme.test", "/notes/page/2?x=1")
                .header("accept", "text/html,*/*"),
        )
        .await;
    assert_eq!(deep.status, 200);
    let (ctx, _) = context(&deep.text);
    assert_eq!(ctx["active"]["index"], 1);
    assert_eq!(ctx["active"]["path"], "/notes/");

    // HEAD: the same header, no body.
    let head = gw
        .fetch(
            gw.client()
                .head(gw.url("/"))
                .header("host", "acme.test")
                .header(DOC.0, DOC.1),
        )
        .await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
    assert!(head.header("content-security-policy").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_subresources_and_other_paths_reach_the_app() {
    let (gw, app) = builtin_gateway().await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("GET", "/todos/", &[FRAME]),
        ("GET", "/todos/", &[("sec-fetch-dest", "empty")]),
        ("GET", "/todos/", &[("accept", "application/json")]),
        ("POST", "/todos/", &[DOC]),
        ("GET", "/todos/api/list", &[DOC]),
        ("GET", "/elsewhere", &[DOC]),
        ("GET", "/", &[FRAME]),
    ];
    for (i, (method, path, headers)) in cases.iter().enumerate() {
        let mut req = gw
            .client()
            .request(method.parse().expect("method"), gw.url(path))
            .header("host", "acme.test");
        for (k, v) in headers.iter() {
            req = req.header(*k, *v);
        }
        let r = gw.fetch(req).await;
        let e = r.echo();
        assert_eq!(e.path, *path, "{method} {path} {headers:?}");
        assert_eq!(app.hits(), i + 1);
        // App responses of a shell tenant may only be framed by the same origin.
        assert_eq!(
            r.header("content-security-policy"),
            Some("frame-ancestors 'self'"),
            "{method} {path}"
        );
    }
    // A tenant without a shell is untouched: navigations reach its app, no policy added, and
    // /.realmgate/ belongs to the gateway on every tenant host (login endpoints, shell
    // files): a tenant without a shell gets a 404 there, never its app.
    let r = gw
        .fetch(gw.get("plain.test", "/").header(DOC.0, DOC.1))
        .await;
    assert_eq!(r.echo().path, "/");
    assert_eq!(r.header("content-security-policy"), None);
    let r = gw
        .fetch(gw.get("plain.test", "/.realmgate/shell/shell.js"))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"], "no_route");
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_assets_are_served_by_the_gateway() {
    let (gw, app) = builtin_gateway().await;
    for (path, ctype, needle) in [
        (
            "/.realmgate/shell/shell.js",
            "text/javascript",
            "customElements.define(\"z-frame\"",
        ),
        (
            "/.realmgate/shell/app.js",
            "text/javascript",
            "window.realmgate",
        ),
        ("/.realmgate/shell/shell.css", "text/css", "z-frame"),
    ] {
        let r = gw
            .fetch(gw.get("acme.test", path).header("sec-fetch-dest", "script"))
            .await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with(ctype)),
            "{path}"
        );
        assert!(r.text.contains(needle), "{path}");
        assert!(!r.text.contains("postMessage(msg, \"*\")"));
    }
    // An unknown file under /.realmgate/ is the gateway's 404, and never reaches the app.
    let missing = gw
        .fetch(gw.get("acme.test", "/.realmgate/shell/nope.js"))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(app.hits(), 0);
}

const SHELL_HTML: &str =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Own shell</title></head>\
                          <body><z-frame src=\"/todos/\"></z-frame></body></html>";

fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_shell_upstream_streams_through_the_injector() {
    let shell = Scripted::start().await;
    let app = Upstream::start("app").await;
    let split = |s: &str, at: &str| -> Vec<Vec<u8>> {
        let i = s.find(at).expect("split point") + 3;
        vec![s[..i].into(), s[i..].into()]
    };
    // "<he" | "ad>…" in two HTTP chunks with a pause: the gateway sees two body reads.
    shell.route(
        "/",
        Canned::new("text/html; charset=utf-8", "")
            .header("content-security-policy", "img-src 'self'")
            .in_chunks(split(SHELL_HTML, "<head>"), Duration::from_millis(150)),
    );
    shell.route(
        "/todos/",
        Canned::new("text/html", gzip(SHELL_HTML.as_bytes())).header("content-encoding", "gzip"),
    );
    shell.route(
        "/notes/",
        Canned::new("text/html", SHELL_HTML).header("etag", "\"v1\""),
    );
    shell.route(
        "/notes/cached",
        Canned::new("text/html", "")
            .status(304)
            .header("etag", "\"v1\""),
    );
    shell.route("/notes/empty", Canned::new("text/html", "").status(204));
    shell.route("/notes/data", Canned::new("application/json", "{\"a\":1}"));
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app", [app.addr()])
        .upstream("shell", [shell.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app")])
        .with("catalog", catalog())
        .with("shell", json!({"enabled": true, "upstream": "shell"}))
        .build();
    gw.push_ok(&table).await;
    let nav = |path: &str| get_request(Some(b"acme.test"), path, &[DOC]);

    // Chunked upstream, <head> split across chunks: injected once, right after <head>.
    let r = gw.raw(nav("/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (ctx, nonce) = context(&r.text());
    assert_eq!(ctx["tenant"]["display_name"], "acme");
    assert!(r
        .text()
        .starts_with("<!doctype html><html><head><script type=\"application/json\""));
    assert!(r.text().ends_with("</z-frame></body></html>"));
    // The upstream's policy stays, ours is added beside it.
    let csps: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "content-security-policy")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(csps.len(), 2, "{csps:?}");
    assert_eq!(csps[0], "img-src 'self'");
    assert!(
        csps[1].contains(&format!("'nonce-{nonce}'")) && csps[1].contains("frame-ancestors 'none'")
    );
    let seen = shell.last("/").expect("the shell upstream got the request");
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(seen.header("x-realmgate-tenant"), Some("acme"));

    // Gzip from an upstream that ignores accept-encoding: inflated, injected, re-framed.
    let r = gw.raw(nav("/todos/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(context(&r.text()).0["active"]["index"], 0);

    // Content-Length framed HTML: the length grows by the element exactly, validators go.
    let r = gw.raw(nav("/notes/")).await;
    let len = r.body.len().to_string();
    assert_eq!(r.header("content-length"), Some(len.as_str()));
    assert!(r.body.len() > SHELL_HTML.len());
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(context(&r.text()).0["active"]["index"], 1);
    // Keep-alive still works after a rewritten, length-framed body.
    let mut conn = realmgate_e2e::RawConn::connect(gw.listen_addr()).await;
    for _ in 0..3 {
        let r = conn
            .send(b"GET /notes/ HTTP/1.1\r\nHost: acme.test\r\nSec-Fetch-Dest: document\r\n\r\n")
            .await;
        assert_eq!(r.status, 200);
        assert!(r.text().ends_with("</html>"));
    }

    // An HTTP/1.0 client gets no chunks: gzip (length unknown) ends with the connection.
    let r = gw
        .raw("GET /todos/ HTTP/1.0\r\nHost: acme.test\r\nSec-Fetch-Dest: document\r\n\r\n")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("content-length"), None);
    assert!(r.text().ends_with("</html>"), "{}", r.text());
    assert_eq!(context(&r.text()).0["active"]["index"], 0);

    // 304, 204 and non-HTML pass untouched (but the shell policy still applies).
    let r = gw.raw(nav("/notes/cached")).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert!(r.body.is_empty());
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("frame-ancestors 'none'")));
    let r = gw.raw(nav("/notes/empty")).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = gw.raw(nav("/notes/data")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("7"));
    assert_eq!(r.text(), "{\"a\":1}");

    // The same URL as a frame reaches the app, not the shell upstream.
    let before = shell.seen().len();
    let r = gw
        .raw(get_request(Some(b"acme.test"), "/todos/", &[FRAME]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(shell.seen().len(), before);
    assert_eq!(app.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn app_framing_policy_respects_stricter_apps() {
    let app = Scripted::start().await;
    app.route("/plain", Canned::new("text/html", "x"));
    app.route(
        "/strict",
        Canned::new("text/html", "x").header(
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'",
        ),
    );
    app.route(
        "/xfo",
        Canned::new("text/html", "x").header("x-frame-options", "DENY"),
    );
    app.route(
        "/loose",
        Canned::new("text/html", "x").header("content-security-policy", "frame-ancestors *"),
    );
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app", [app.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app")])
        .with("shell", json!({"enabled": true}))
        .build();
    gw.push_ok(&table).await;
    let csps = |r: &realmgate_e2e::RawResponse| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(n, _)| n == "content-security-policy")
            .map(|(_, v)| v.clone())
            .collect()
    };
    let get = |p: &str| gw.raw(get_request(Some(b"acme.test"), p, &[FRAME]));
    assert_eq!(csps(&get("/plain").await), ["frame-ancestors 'self'"]);
    assert_eq!(
        csps(&get("/strict").await),
        ["default-src 'self'; frame-ancestors 'none'"]
    );
    assert!(csps(&get("/xfo").await).is_empty());
    assert_eq!(
        csps(&get("/loose").await),
        ["frame-ancestors *", "frame-ancestors 'self'"]
    );
}

/// The titles in a tenant database's `todos` table, read straight from the file.
async fn titles_in(path: &std::path::Path) -> Vec<String> {
    let db = libsql::Builder::new_local(path)
        .build()
        .await
        .expect("open");
    let conn = db.connect().expect("connect");
    let mut rows = conn
        .query("SELECT title FROM todos ORDER BY id", ())
        .await
        .expect("query");
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.expect("row") {
        out.push(row.get::<String>(0).expect("title"));
    }
    out
}

/// todos as the local platform runs it: behind a signed-in route (`jwt`), verifying the
/// gateway's assertion, each tenant's rows in the database realmctl provisioned for it.
#[tokio::test(flavor = "multi_thread")]
async fn todos_keeps_each_tenants_todos_in_its_own_database() {
    let jwks = JwksServer::start().await;
    let key = TestKey::rs256("r1");
    jwks.set_keys("/certs", vec![key.jwk()]);
    let gw = Gateway::start(GatewayOpts::default()).await;
    let jwks_url = format!(
        "http://localhost:{}/.realmgate/jwks.json",
        gw.listen_addr().port()
    );
    let todos = Todos::verifying(&jwks_url, "todos", &["acme", "beta"]).await;
    let issuer = |id: &str| format!("http://id.test/realms/{id}");
    let tenant = |id: &str, hosts: &[&str]| {
        json!({"id": id, "hosts": hosts,
               "realm": {"issuer": issuer(id), "jwks_uri": jwks.url("/certs"),
                         "audiences": ["todos-api"]},
               "routes": [{"prefix": "/todos/", "upstream": "todos", "auth": "jwt"}],
               "catalog": [{"name": "Todos", "path": "/todos/"}],
               "shell": {"enabled": true}})
    };
    let mut table = Table::new(1)
        .upstream("todos", [todos.addr()])
        .tenant_json(tenant("acme", &["acme.test", "localhost"]))
        .tenant_json(tenant("beta", &["beta.test"]))
        .build();
    table["assertion"] = section(&[("k1", 1, true)]);
    gw.push_ok(&table).await;
    let bearer = |id: &str| {
        format!(
            "Bearer {}",
            key.sign(&access_claims(&issuer(id), "user-1", "todos-api"))
        )
    };
    for (id, title) in [("acme", "todo of acme"), ("beta", "todo of beta")] {
        let r = gw
            .fetch(
                gw.client()
                    .post(gw.url("/todos/api/todos"))
                    .header("host", format!("{id}.test"))
                    .header("authorization", bearer(id))
                    // A client cannot pick its identity: the gateway strips this.
                    .header("x-realmgate-subject", "mallory")
                    .json(&json!({"title": title})),
            )
            .await;
        assert_eq!(r.status, 201, "{}\n{}", r.text, todos.logs());
    }
    for (id, mine, theirs) in [
        ("acme", "todo of acme", "todo of beta"),
        ("beta", "todo of beta", "todo of acme"),
    ] {
        let host = format!("{id}.test");
        let r = gw
            .fetch(
                gw.get(&host, "/todos/api/todos")
                    .header("authorization", bearer(id)),
            )
            .await;
        let v = r.json();
        assert_eq!(v["subject"], "user-1", "{v}");
        assert_eq!(v["todos"][0]["title"], mine, "{v}");
        assert!(!r.text.contains(theirs));
        // The framed page renders the todo, and refuses foreign frames itself.
        let page = gw
            .fetch(
                gw.get(&host, "/todos/")
                    .header(FRAME.0, FRAME.1)
                    .header("authorization", bearer(id)),
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains(mine));
        assert!(page
            .header("content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'self'")));
        // Signed out, the app is not reached (the route wants a token)...
        let r = gw.fetch(gw.get(&host, "/todos/api/todos")).await;
        assert_eq!(r.status, 401, "{}", r.text);
        // ...and the rows are in the database realmctl provisioned for the tenant.
        let db = todos.realmctl().tenants_dir().join(format!("{id}.db"));
        assert_eq!(titles_in(&db).await, [mine]);
    }
    // Straight to todos, with the headers the gateway would set: not believed.
    let r = gw
        .client()
        .get(format!("http://{}/todos/api/todos", todos.addr()))
        .header("x-realmgate-tenant", "acme")
        .header("x-realmgate-subject", "user-1")
        .send()
        .await
        .expect("todos answers");
    assert_eq!(r.status(), 401);
}

/// The weaker header mode (`--trust-headers`, for apps that cannot verify): through the
/// gateway a caller cannot pick its identity, but straight to the app anyone can.
#[tokio::test(flavor = "multi_thread")]
async fn todos_in_header_mode_believes_whoever_sets_the_headers() {
    let todos = Todos::trusting_headers().await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("todos", [todos.addr()])
        .tenant("acme", &["acme.test"], &[("/todos/", "todos")])
        .build();
    gw.push_ok(&table).await;
    let r = gw
        .fetch(
            gw.client()
                .post(gw.url("/todos/api/todos"))
                .header("host", "acme.test")
                .header("x-realmgate-subject", "mallory")
                .json(&json!({"title": "public"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}\n{}", r.text, todos.logs());
    let v = gw.request("acme.test", "/todos/api/todos").await.json();
    assert_eq!(v["subject"], "anonymous", "{v}");
    assert_eq!(v["todos"][0]["title"], "public", "{v}");
    let direct = gw
        .client()
        .get(format!("http://{}/todos/api/todos", todos.addr()))
        .header("x-realmgate-tenant", "acme")
        .header("x-realmgate-subject", "mallory")
        .send()
        .await
        .expect("todos answers");
    assert_eq!(direct.status(), 200, "the weakness the docs name");
    assert!(todos.data_dir().join("acme.db").is_file());
}

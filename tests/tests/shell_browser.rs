//! The app shell in a real browser: headless Chromium (chromedriver, fantoccini) opens two
//! tenants' hosts through the real gateway, signs in at the tenant's realm on the real
//! Keycloak, uses the real todos app inside `<z-frame>` — run as the local platform runs it:
//! verifying the gateway's signed assertion, each tenant's rows in the database the real
//! realmctl provisioned — and checks that another origin cannot frame the apps.
//! Screenshots: `target/screenshots/shell-*.png`.

use std::time::Duration;

use fantoccini::Locator;
use realmgate_e2e::keycloak::{KcRealm, Keycloak};
use realmgate_e2e::{
    Canned, Gateway, GatewayOpts, Scripted, ShellBrowser as Browser, TempDir, Todos,
};
use serde_json::{json, Value};

const PAGE: &str = "<!doctype html><html><head><title>Wiki</title></head><body><h1 id=\"wiki\">Wiki home</h1></body></html>";
const PASSWORD: &str = "correct-horse-battery";
/// Counts the other origin's frames as they finish loading (refused ones included).
const LOADED: &str = "window.framesLoaded = (window.framesLoaded || 0) + 1";

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_their_shell_and_use_todos_in_the_frame() {
    // Skips (saying so) without a Keycloak, unless tests/run requires one.
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(240), scenario(kc))
        .await
        .expect("the browser scenario finishes within 240 s");
}

/// A realm of its own for a tenant on `base`, with the gateway's login client and a user
/// `alice`; the tenant's `realm` entry for the table.
async fn realm_for(kc: &Keycloak, id: &str, base: &str) -> (KcRealm, Value) {
    let realm = kc.create_realm(id).await;
    kc.create_client(
        &realm,
        json!({
            "clientId": "realmgate", "publicClient": true, "standardFlowEnabled": true,
            "directAccessGrantsEnabled": false,
            "redirectUris": [format!("{base}/.realmgate/callback")],
            "attributes": {"pkce.code.challenge.method": "S256",
                           "post.logout.redirect.uris": format!("{base}/*")}
        }),
    )
    .await;
    kc.create_user(&realm, "alice", PASSWORD).await;
    let entry =
        json!({"issuer": realm.issuer, "audiences": ["realmgate"], "client_id": "realmgate"});
    (realm, entry)
}

/// The titles in a tenant database's `todos` table, read straight from the file (none when
/// todos never opened it, so never made the table).
async fn titles_in(path: &std::path::Path) -> Vec<String> {
    let db = libsql::Builder::new_local(path)
        .build()
        .await
        .expect("open");
    let conn = db.connect().expect("connect");
    let mut out = Vec::new();
    let Ok(mut rows) = conn.query("SELECT title FROM todos ORDER BY id", ()).await else {
        return out;
    };
    while let Some(row) = rows.next().await.expect("row") {
        out.push(row.get::<String>(0).expect("title"));
    }
    out
}

async fn scenario(kc: Keycloak) {
    let pages = Scripted::start().await;
    pages.route("/wiki/", Canned::new("text/html", PAGE));
    pages.route(
        "/tickets/",
        Canned::new("text/html", PAGE.replace("Wiki", "Tickets")),
    );
    pages.route(
        "/locked/",
        Canned::new("text/html", PAGE).header("content-security-policy", "frame-ancestors 'none'"),
    );
    let key_dir = TempDir::new("session-key");
    let key_file = key_dir.write("session-key", "ab".repeat(32));
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: format!("  session_key_file: \"{}\"\n", key_file.display()),
        ..GatewayOpts::default()
    })
    .await;
    let port = gw.listen_addr().port();
    let acme = format!("http://acme.test:{port}");
    let beta = format!("http://beta.test:{port}");
    // todos fetches the fleet's keys from the gateway (on acme's `localhost` host) and asks
    // realmctl, with its credential, where each tenant's database is.
    let jwks_url = format!("http://localhost:{port}/.realmgate/jwks.json");
    let todos = Todos::verifying(&jwks_url, "todos", &["acme", "beta"]).await;
    let (acme_realm, acme_entry) = realm_for(&kc, "acme", &acme).await;
    let (_, beta_entry) = realm_for(&kc, "beta", &beta).await;
    let session =
        |prefix: &str, pool: &str| json!({"prefix": prefix, "upstream": pool, "auth": "session"});
    let public =
        |prefix: &str, pool: &str| json!({"prefix": prefix, "upstream": pool, "auth": "public"});
    let mut table = realmgate_e2e::Table::new(1)
        .upstream("todos", [todos.addr()])
        .upstream("pages", [pages.addr()])
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test", "localhost"], "display_name": "Acme Corp",
            "realm": acme_entry,
            "routes": [session("/todos/", "todos"), public("/wiki/", "pages"),
                       public("/locked/", "pages")],
            "catalog": [{"name": "Todos", "path": "/todos/", "icon": "lucide:check-square"},
                        {"name": "Wiki", "path": "/wiki/", "icon": "lucide:file-text"},
                        {"name": "Locked", "path": "/locked/"}],
            "shell": {"enabled": true}}))
        .tenant_json(json!({
            "id": "beta", "hosts": ["beta.test"], "display_name": "Beta Inc",
            "realm": beta_entry,
            "routes": [session("/todos/", "todos"), public("/tickets/", "pages")],
            "catalog": [{"name": "Tickets", "path": "/tickets/"},
                        {"name": "Todos", "path": "/todos/"}],
            "shell": {"enabled": true}}))
        .build();
    table["assertion"] = realmgate_e2e::assertion::section(&[("k1", 1, true)]);
    gw.push_ok(&table).await;

    // Another origin that tries to frame acme's todos and wiki (and, as a control, its own
    // page).
    let evil = Scripted::start().await;
    evil.route(
        "/",
        Canned::new(
            "text/html",
            format!(
                "<!doctype html><html><body>\
                 <iframe id=\"victim\" src=\"{acme}/todos/\" onload=\"{LOADED}\"></iframe>\
                 <iframe id=\"victim-wiki\" src=\"{acme}/wiki/\" onload=\"{LOADED}\"></iframe>\
                 <iframe id=\"own\" src=\"/own\" onload=\"{LOADED}\"></iframe></body></html>"
            ),
        ),
    );
    evil.route(
        "/own",
        Canned::new("text/html", "<p id=\"own-ok\">framed fine</p>"),
    );
    let evil_url = format!("http://evil.test:{}/", evil.addr().port());

    let b = Browser::start(&[acme.clone(), beta.clone()]).await;
    let c = &b.client;

    // Each tenant sees its own name and catalog.
    for (url, name, apps) in [
        (&acme, "Acme Corp", vec!["Todos", "Wiki", "Locked"]),
        (&beta, "Beta Inc", vec!["Tickets", "Todos"]),
    ] {
        c.goto(&format!("{url}/")).await.expect("open the shell");
        b.wait_for("#rg-apps a").await;
        let tenant = c.find(Locator::Css("#rg-tenant")).await.expect("tenant");
        assert_eq!(tenant.text().await.expect("text"), name);
        let mut seen = Vec::new();
        for a in c
            .find_all(Locator::Css("#rg-apps a .rg-name"))
            .await
            .expect("links")
        {
            seen.push(a.text().await.expect("text").trim().to_string());
        }
        assert_eq!(seen, apps, "{url}");
        b.screenshot(&format!(
            "shell-{}-home",
            name.split(' ').next().unwrap_or("x").to_lowercase()
        ))
        .await;
    }

    // Todos is signed in: opening it sends the browser to acme's realm, and back once
    // alice has signed in there (the frame is same-origin: the session cookie goes along).
    c.goto(&format!("{acme}/todos/")).await.expect("open todos");
    b.wait_true(
        "acme's realm's login page",
        &format!(
            "location.href.startsWith({:?})",
            format!("{}/realms/{}/", kc.url, acme_realm.name)
        ),
    )
    .await;
    b.wait_for("#username")
        .await
        .send_keys("alice")
        .await
        .expect("type the user");
    b.wait_for("#password")
        .await
        .send_keys(PASSWORD)
        .await
        .expect("type the password");
    b.wait_for("#kc-login")
        .await
        .click()
        .await
        .expect("sign in");
    b.wait_true(
        "back on acme's todos",
        &format!("location.href === {:?}", format!("{acme}/todos/")),
    )
    .await;

    // Click an app: it renders inside the frame, and the shell's URL follows.
    c.goto(&format!("{acme}/")).await.expect("open acme");
    b.wait_for("#rg-apps a[href='/todos/']")
        .await
        .click()
        .await
        .expect("click Todos");
    b.wait_true(
        "the shell URL is /todos/",
        "location.pathname === '/todos/'",
    )
    .await;
    b.wait_true(
        "the frame's bridge is connected",
        "document.querySelector('z-frame') && document.querySelector('z-frame').connected",
    )
    .await;
    b.wait_for("z-frame iframe")
        .await
        .enter_frame()
        .await
        .expect("enter the app frame");
    let input = b.wait_for("#new-title").await;
    input.send_keys("Buy milk").await.expect("type");
    c.find(Locator::Css("#add"))
        .await
        .expect("add button")
        .click()
        .await
        .expect("add");
    b.wait_true(
        "the new todo in the list",
        "document.querySelector('#todos') && document.querySelector('#todos').textContent.includes('Buy milk')",
    )
    .await;
    // In-app navigation (pushState) is mirrored in the shell's URL, and back undoes it.
    c.execute("history.pushState({}, '', '/todos/?filter=open')", vec![])
        .await
        .expect("pushState in the app");
    c.enter_parent_frame().await.expect("back to the shell");
    b.wait_true(
        "the shell URL follows the app",
        "location.pathname + location.search === '/todos/?filter=open'",
    )
    .await;
    // The app's badge event reached the sidebar.
    b.wait_true(
        "the todos badge shows one open todo",
        "document.querySelector(\"#rg-apps a[href='/todos/'] .rg-badge\").textContent === '1'",
    )
    .await;
    b.screenshot("shell-acme-todos").await;
    c.back().await.expect("back");
    b.wait_true(
        "back returns the shell URL to the app's previous route",
        "location.pathname + location.search === '/todos/'",
    )
    .await;

    // Switch apps from the sidebar: a page without the bridge still shows.
    b.wait_for("#rg-apps a[href='/wiki/']")
        .await
        .click()
        .await
        .expect("click Wiki");
    b.wait_true("the shell URL is /wiki/", "location.pathname === '/wiki/'")
        .await;
    b.wait_for("z-frame iframe")
        .await
        .enter_frame()
        .await
        .expect("enter the wiki frame");
    b.wait_for("#wiki").await;
    c.enter_parent_frame().await.expect("back to the shell");
    b.wait_true(
        "Wiki is the active link",
        "document.querySelector(\"#rg-apps a[aria-current='page']\").getAttribute('href') === '/wiki/'",
    )
    .await;

    // An app that refuses every frame: the shell shows a visible error instead of a blank.
    b.wait_for("#rg-apps a[href='/locked/']")
        .await
        .click()
        .await
        .expect("click Locked");
    b.wait_true(
        "a visible 'refused' error",
        "(() => { const e = document.querySelector('z-frame .zframe-error'); \
           return e && !e.hidden && e.dataset.reason === 'refused' && e.offsetHeight > 0; })()",
    )
    .await;
    b.screenshot("shell-acme-refused").await;

    // The todo is in acme's own database, the one realmctl provisioned; beta's has none.
    let tenants = todos.realmctl().tenants_dir();
    assert_eq!(titles_in(&tenants.join("acme.db")).await, ["Buy milk"]);
    assert!(titles_in(&tenants.join("beta.db")).await.is_empty());

    // Another origin cannot frame the apps: its frames show no todos (the session cookie is
    // SameSite=Lax, so the frame has no session and gets the gateway's 401; the app's own
    // answer would say frame-ancestors 'self') and no wiki (a public page, which
    // frame-ancestors 'self' alone refuses). The same page's own
    // same-origin frame renders, so the check can see framed content at all.
    c.goto(&evil_url).await.expect("open the other origin");
    b.wait_for("#own")
        .await
        .enter_frame()
        .await
        .expect("enter own frame");
    b.wait_for("#own-ok").await;
    c.enter_parent_frame().await.expect("parent");
    // A refused frame settles on the browser's error page, which fires `load` too.
    b.wait_true("all three frames loaded", "window.framesLoaded === 3")
        .await;
    b.screenshot("shell-evil-framing").await;
    c.find(Locator::Css("#victim"))
        .await
        .expect("victim frame")
        .enter_frame()
        .await
        .expect("enter victim frame");
    let leaked = c.find(Locator::Css("#new-title")).await;
    assert!(
        leaked.is_err(),
        "the todos app rendered inside another origin's frame"
    );
    let source = c.source().await.unwrap_or_default();
    assert!(!source.contains("Buy milk"), "{source}");
    c.enter_parent_frame().await.expect("parent");
    c.find(Locator::Css("#victim-wiki"))
        .await
        .expect("wiki victim frame")
        .enter_frame()
        .await
        .expect("enter the wiki victim frame");
    assert!(
        c.find(Locator::Css("#wiki")).await.is_err(),
        "the wiki rendered inside another origin's frame"
    );
    c.enter_parent_frame().await.expect("parent");
    b.close().await;
}

//! The app shell in a real browser: headless Chromium (chromedriver, fantoccini) opens two
//! tenants' hosts through the real gateway, uses the real todos app inside `<z-frame>`, and
//! checks that another origin cannot frame the app. Screenshots: `target/screenshots/shell-*.png`.

use std::time::Duration;

use fantoccini::Locator;
use realmgate_e2e::{
    Canned, Gateway, GatewayOpts, Scripted, ShellBrowser as Browser, Table, Todos,
};
use serde_json::json;

const PAGE: &str = "<!doctype html><html><head><title>Wiki</title></head><body><h1 id=\"wiki\">Wiki home</h1></body></html>";

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_their_shell_and_use_todos_in_the_frame() {
    tokio::time::timeout(Duration::from_secs(150), scenario())
        .await
        .expect("the browser scenario finishes within 150 s");
}

async fn scenario() {
    let todos = Todos::start().await;
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
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("todos", [todos.addr()])
        .upstream("pages", [pages.addr()])
        .tenant(
            "acme",
            &["acme.test"],
            &[
                ("/todos/", "todos"),
                ("/wiki/", "pages"),
                ("/locked/", "pages"),
            ],
        )
        .with("display_name", json!("Acme Corp"))
        .with(
            "catalog",
            json!([{"name": "Todos", "path": "/todos/", "icon": "lucide:check-square"},
                   {"name": "Wiki", "path": "/wiki/", "icon": "lucide:file-text"},
                   {"name": "Locked", "path": "/locked/"}]),
        )
        .with("shell", json!({"enabled": true}))
        .tenant(
            "beta",
            &["beta.test"],
            &[("/todos/", "todos"), ("/tickets/", "pages")],
        )
        .with("display_name", json!("Beta Inc"))
        .with(
            "catalog",
            json!([{"name": "Tickets", "path": "/tickets/"},
                   {"name": "Todos", "path": "/todos/"}]),
        )
        .with("shell", json!({"enabled": true}))
        .build();
    gw.push_ok(&table).await;
    let port = gw.listen_addr().port();
    let acme = format!("http://acme.test:{port}");
    let beta = format!("http://beta.test:{port}");

    // Another origin that tries to frame acme's todos (and, as a control, its own page).
    let evil = Scripted::start().await;
    evil.route(
        "/",
        Canned::new(
            "text/html",
            format!(
                "<!doctype html><html><body><iframe id=\"victim\" src=\"{acme}/todos/\"></iframe>\
                 <iframe id=\"own\" src=\"/own\"></iframe></body></html>"
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

    // The todo lives in acme's database only.
    let acme_list = gw.request("acme.test", "/todos/api/todos").await.text;
    let beta_list = gw.request("beta.test", "/todos/api/todos").await.text;
    assert!(acme_list.contains("Buy milk"), "{acme_list}");
    assert!(!beta_list.contains("Buy milk"), "{beta_list}");

    // Another origin cannot frame the app: its frame shows no todos page. The same page's
    // own same-origin frame renders, so the check can see framed content at all.
    c.goto(&evil_url).await.expect("open the other origin");
    b.wait_for("#own")
        .await
        .enter_frame()
        .await
        .expect("enter own frame");
    b.wait_for("#own-ok").await;
    c.enter_parent_frame().await.expect("parent");
    // Give the refused frame time to settle on the browser's error page.
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
    b.close().await;
}

//! realmctl's operator UI in a real browser: the real `realmctl` binary serves it, headless
//! Chromium (chromedriver, fantoccini) signs in with the operator token, reads the registry,
//! creates a tenant through the form, sees a refused one's problems, suspends a tenant, and
//! pages the audit log back to its first entry with "Older"; each change is checked through
//! the REST API. Screenshot: `target/screenshots/operator-ui.png`.

use realmgate_e2e::browser::Browser;
use realmgate_e2e::{eventually, free_addrs, workspace_bin, Proc, TempDir};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::time::Duration;

const TOKEN: &str = "operator-ui-token-0123456789";
const WITHIN: Duration = Duration::from_secs(20);

struct Ctl {
    base: String,
    http: reqwest::Client,
    proc: Proc,
    _dir: TempDir,
}

impl Ctl {
    async fn start() -> Ctl {
        let dir = TempDir::new("operator-ui");
        let token = dir.write("token", TOKEN);
        let addr = free_addrs(1)[0];
        let args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            addr.to_string().into(),
            "--data-dir".into(),
            dir.join("data").into(),
            "--admin-token-file".into(),
            token.into(),
        ];
        let bin = workspace_bin("realmctl", "REALMCTL_BIN");
        let proc = Proc::spawn("realmctl", &bin, &args, dir.path());
        let ctl = Ctl {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            proc,
            _dir: dir,
        };
        eventually(WITHIN, "realmctl /healthz", || async {
            let r = ctl.http.get(format!("{}/healthz", ctl.base)).send().await;
            r.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        ctl
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("realmctl answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn scenario(b: &Browser, ctl: &Ctl) -> Result<(), String> {
    // 1. Without a token: only the sign-in form; a wrong token is refused and forgotten.
    b.client
        .goto(&format!("{}/", ctl.base))
        .await
        .map_err(|e| e.to_string())?;
    b.fill("#token", "not-the-token").await?;
    b.click("#login-form button").await?;
    b.wait_text("#login-error", "refused").await?;

    // 2. Signed in: the registry as the API has it, names as text (never as markup).
    b.fill("#token", TOKEN).await?;
    b.click("#login-form button").await?;
    let row = b
        .wait_text("tr[data-tenant=acme]", "Acme <b>Corp</b>")
        .await?;
    if !row.contains("acme.test") || !row.contains("active") {
        return Err(format!("acme's row: {row:?}"));
    }
    b.wait_text("#summary", "routed tenants").await?;
    b.wait_text("#upstreams tbody", "127.0.0.1:9").await?;

    // 3. A new tenant through the form; then one whose host is taken shows the API's answer.
    b.click("#create summary").await?;
    b.fill("#create-form input[name=id]", "beta").await?;
    b.fill("#create-form input[name=display_name]", "Beta Inc")
        .await?;
    b.fill("#create-form input[name=host]", "beta.test").await?;
    b.click("#create-form button").await?;
    b.wait_text("tr[data-tenant=beta]", "Beta Inc").await?;
    let (status, beta) = ctl
        .call(reqwest::Method::GET, "/v1/tenants/beta", None)
        .await;
    if status != 200 || beta["hosts"] != json!(["beta.test"]) {
        return Err(format!("beta through the API: {status} {beta}"));
    }
    b.fill("#create-form input[name=id]", "gamma").await?;
    b.fill("#create-form input[name=host]", "ACME.test").await?;
    b.click("#create-form button").await?;
    // The API's problem (the host is acme's) shows in the form, beside its field.
    b.wait_text("#create-form", "acme.test").await?;
    let (status, _) = ctl
        .call(reqwest::Method::GET, "/v1/tenants/gamma", None)
        .await;
    if status != 404 {
        return Err(format!(
            "gamma was created ({status}) despite the host conflict"
        ));
    }

    // 4. Suspend acme from its row.
    b.click("tr[data-tenant=acme] td.actions button").await?;
    b.wait_text("tr[data-tenant=acme]", "suspended").await?;
    let (_, acme) = ctl
        .call(reqwest::Method::GET, "/v1/tenants/acme", None)
        .await;
    if acme["status"] != "suspended" {
        return Err(format!("acme through the API: {acme}"));
    }
    b.screenshot("operator-ui").await;

    // 5. The audit log: the newest 50 entries, newest first; "Older" pages back to the first.
    for i in 0..55 {
        let (status, v) = ctl
            .call(
                reqwest::Method::PUT,
                &format!("/v1/upstreams/pool-{i}"),
                Some(json!({"endpoints": ["127.0.0.1:9"]})),
            )
            .await;
        if status != 201 {
            return Err(format!("pool-{i}: {status} {v}"));
        }
    }
    let (_, log) = ctl
        .call(reqwest::Method::GET, "/v1/audit?limit=500", None)
        .await;
    let total = log["entries"].as_array().map_or(0, Vec::len);
    let newest = log["next_after"].as_u64().unwrap_or(0);
    if total <= 50 || newest != total as u64 {
        return Err(format!(
            "the audit log through the API: {total} entries, the newest #{newest}"
        ));
    }
    let rows = |want: usize| async move {
        let script = "return [...document.querySelectorAll('#audit tbody tr')].map((r) => Number(r.dataset.seq))";
        eventually_ok(WITHIN, || async move {
            let seqs = b
                .client
                .execute(script, vec![])
                .await
                .map_err(|e| e.to_string())?;
            let seqs: Vec<u64> = serde_json::from_value(seqs).map_err(|e| e.to_string())?;
            // Newest first, contiguous, `want` of them ending at the newest.
            let expected: Vec<u64> = (newest + 1 - want as u64..=newest).rev().collect();
            (seqs == expected)
                .then_some(())
                .ok_or_else(|| format!("audit rows {seqs:?}, want {expected:?}"))
        })
        .await
    };
    rows(50).await?;
    b.wait_text("#audit", "PUT /v1/upstreams/{name}").await?;
    b.click("#audit-older").await?;
    if let Err(e) = rows(total).await {
        let error = b.text("#error").await.unwrap_or_default();
        return Err(format!("{e}; the page's error: {error:?}"));
    }
    b.wait_text("#audit-range", "(the oldest kept)").await?;
    let disabled = b
        .client
        .execute(
            "return document.getElementById('audit-older').disabled",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    if disabled != json!(true) {
        return Err(format!(
            "Older is still enabled at the first entry: {disabled}"
        ));
    }
    Ok(())
}

/// Retry `check` until it passes or `within` ends; its last error otherwise.
async fn eventually_ok<F, Fut>(within: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_ui_reads_and_changes_the_registry_through_the_api() {
    let ctl = Ctl::start().await;

    // The page is public and inert: it holds no data, allows only its own script, no framing.
    let r = ctl
        .http
        .get(format!("{}/", ctl.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let page = r.text().await.expect("html");
    assert!(
        !page.contains("<script>"),
        "no inline script the policy would block"
    );

    let (status, v) = ctl
        .call(
            reqwest::Method::PUT,
            "/v1/upstreams/app",
            Some(json!({"endpoints": ["127.0.0.1:9"]})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = ctl
        .call(
            reqwest::Method::POST,
            "/v1/tenants",
            Some(
                json!({"id": "acme", "hosts": ["acme.test"], "display_name": "Acme <b>Corp</b>",
                "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{v}");

    let Some(browser) = Browser::start().await else {
        return;
    };
    let result = tokio::time::timeout(Duration::from_secs(120), scenario(&browser, &ctl)).await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser.failure_report("operator-ui-failure").await;
        panic!("{result:?}\n{seen}\nrealmctl log:\n{}", ctl.proc.logs());
    }
    browser.close().await;
}

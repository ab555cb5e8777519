//! A real headless browser for the login tests: Debian's `chromium` through `chromedriver`
//! (WebDriver), driven with fantoccini. Tenant hosts `*.test` resolve to 127.0.0.1 inside
//! Chromium (`--host-resolver-rules`), so `http://acme.test:<port>/` reaches the gateway.

use crate::process::{free_addrs, workspace_root, Proc, TempDir};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// chromedriver to use (`tests/run` sets it from `tests/setup/chromium.sh`).
pub const CHROMEDRIVER_ENV: &str = "REALMGATE_CHROMEDRIVER";
/// Set by `tests/run`: no browser is then a failure, not a skip.
pub const REQUIRE_ENV: &str = "REALMGATE_REQUIRE_BROWSER";

pub struct Browser {
    pub client: Client,
    // Dropped after the client: chromedriver goes last.
    _driver: Proc,
    profile: PathBuf,
    _dir: TempDir,
}

impl Drop for Browser {
    /// Chromium outlives chromedriver when a session is not closed (a panicking test): end
    /// every process running on this browser's own profile, by pid.
    fn drop(&mut self) {
        let needle = format!("--user-data-dir={}", self.profile.display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
            {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn find_chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CHROMEDRIVER_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl Browser {
    /// Start chromedriver and a fresh headless Chromium session. `None` (the caller skips,
    /// saying so) only when there is no chromedriver and `REALMGATE_REQUIRE_BROWSER` is not 1.
    pub async fn start() -> Option<Browser> {
        Browser::start_with(&[]).await
    }

    /// [`Browser::start`] with more Chromium arguments (e.g. the SPKI hash of a test
    /// certificate to trust: `--ignore-certificate-errors-spki-list=…`).
    pub async fn start_with(extra_args: &[String]) -> Option<Browser> {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
        let Some(driver) = find_chromedriver() else {
            assert!(
                !required,
                "no chromedriver but {REQUIRE_ENV}=1: run tests/setup/chromium.sh"
            );
            eprintln!("SKIPPED: no chromedriver (install with tests/setup/chromium.sh)");
            return None;
        };
        let dir = TempDir::new("browser");
        let port = free_addrs(1)[0].port();
        let args: Vec<OsString> = vec![format!("--port={port}").into()];
        let mut proc = Proc::spawn("chromedriver", &driver, &args, dir.path());
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline && proc.try_wait().is_none(),
                "chromedriver did not start:\n{}",
                proc.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let chromium =
            std::env::var("REALMGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = dir.join("profile");
        let mut args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display()),
            "--host-resolver-rules=MAP *.test 127.0.0.1",
        ]);
        if let Some(list) = args.as_array_mut() {
            list.extend(extra_args.iter().map(|a| json!(a)));
        }
        let mut caps = Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("WebDriver session: {e}\n{}", proc.logs()));
        Some(Browser {
            client,
            _driver: proc,
            profile,
            _dir: dir,
        })
    }

    /// Save a screenshot under `target/browser-screenshots/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> Option<PathBuf> {
        let png = self.client.screenshot().await.ok()?;
        let dir = workspace_root().join("target/browser-screenshots");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).ok()?;
        Some(path)
    }

    /// Wait until the current URL starts with `prefix`.
    pub async fn wait_url(&self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self
                .client
                .current_url()
                .await
                .map_err(|e| e.to_string())?
                .to_string();
            if url.starts_with(prefix) {
                return Ok(url);
            }
            if Instant::now() >= deadline {
                return Err(format!("still at {url}, waited for {prefix}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait for an element with this id.
    pub async fn wait_id(&self, id: &str) -> Result<fantoccini::elements::Element, String> {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Id(id))
            .await
            .map_err(|e| format!("#{id}: {e}"))
    }

    /// Fill Keycloak's real login form (`#username`, `#password`) and submit it.
    pub async fn keycloak_login(&self, user: &str, password: &str) -> Result<(), String> {
        let fail = |e: fantoccini::error::CmdError| e.to_string();
        self.wait_id("username")
            .await?
            .send_keys(user)
            .await
            .map_err(fail)?;
        self.wait_id("password")
            .await?
            .send_keys(password)
            .await
            .map_err(fail)?;
        self.wait_id("kc-login").await?.click().await.map_err(fail)
    }

    /// The text of the first element `css` selects, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Wait (up to 30 s) until the first element `css` selects has `want` in its text.
    pub async fn wait_text(&self, css: &str, want: &str) -> Result<String, String> {
        self.wait_text_within(css, want, Duration::from_secs(30))
            .await
    }

    /// [`Browser::wait_text`] with a bound of its own (a CA issuing, a DNS check).
    pub async fn wait_text_within(
        &self,
        css: &str,
        want: &str,
        within: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text(css).await.unwrap_or_default();
            if text.contains(want) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                return Err(format!("{css}: {text:?} never contained {want:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait (up to `within`) until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.client.find(Locator::Css(css)).await.is_ok() {
            if Instant::now() > deadline {
                return Err(format!("{css} is still there"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Replace the value of the input `css` selects.
    pub async fn fill(&self, css: &str, value: &str) -> Result<(), String> {
        self.on_fresh(css, |e| async move {
            e.clear().await?;
            e.send_keys(value).await
        })
        .await
    }

    pub async fn click(&self, css: &str) -> Result<(), String> {
        self.on_fresh(css, |e| async move { e.click().await }).await
    }

    /// Find `css` and act on it; when the page re-rendered the element in between (a
    /// periodic refresh), find it again, a few times.
    async fn on_fresh<F, Fut>(&self, css: &str, act: F) -> Result<(), String>
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        let mut tries = 0;
        loop {
            let e = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| format!("{css}: {e}"))?;
            match act(e).await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 5 && e.to_string().contains("stale element") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("{css}: {e}")),
            }
        }
    }

    /// Accept the page's `confirm()` dialog, once it shows.
    pub async fn accept_dialog(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.accept_alert().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(format!("no dialog: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The page's text (a JSON response renders as text).
    pub async fn body_text(&self) -> Result<String, String> {
        self.client
            .find(Locator::Css("body"))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())
    }

    /// The page's text as JSON.
    pub async fn body_json(&self) -> Result<Value, String> {
        let text = self.body_text().await?;
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text:.500}"))
    }

    /// What a failed browser test reports: where the page was, a screenshot (`<name>.png`)
    /// and the page's text; the session is closed.
    pub async fn failure_report(&self, name: &str) -> String {
        let shot = self.screenshot(name).await;
        let url = self.client.current_url().await.map(|u| u.to_string());
        let text = self.body_text().await.unwrap_or_default();
        self.close().await;
        format!("at {url:?}\nscreenshot: {shot:?}\npage text: {text:.3000}")
    }

    /// End the session (Chromium exits) and chromedriver.
    pub async fn close(&self) {
        let _ = self.client.clone().close().await;
    }
}

//! Headless Chromium for the app-shell tests: chromedriver (Debian's `chromium` + `chromium-driver`), driven by
//! fantoccini, with screenshots kept under `target/screenshots/`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::process::{free_addrs, workspace_root, Proc, TempDir};

/// chromedriver: `$CHROMEDRIVER`, else the first `chromedriver` on `PATH`. `tests/run` installs
/// it (tests/setup/chromium.sh).
pub fn chromedriver_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMEDRIVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("chromedriver"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("chromedriver not found: run tests/setup/chromium.sh (as tests/run does), or set CHROMEDRIVER")
        })
}

/// The Chromium binary chromedriver should drive: `$CHROMIUM`, else Debian's path.
fn chromium_bin() -> String {
    std::env::var("CHROMIUM")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".to_string())
}

/// A chromedriver process and one browser session. Every `*.test` host resolves to loopback.
pub struct Browser {
    pub client: Client,
    _driver: Proc,
    _dir: TempDir,
}

impl Browser {
    /// `secure_origins` are treated as secure contexts although they are plain HTTP: browsers
    /// send fetch metadata (`Sec-Fetch-Dest`, which tells a frame from a navigation) only to
    /// secure origins, as production's HTTPS hosts are.
    pub async fn start(secure_origins: &[String]) -> Browser {
        let dir = TempDir::new("browser");
        let port = free_addrs(1)[0].port();
        let args: Vec<OsString> = vec![format!("--port={port}").into()];
        let mut driver = Proc::spawn("chromedriver", &chromedriver_bin(), &args, dir.path());
        let url = format!("http://127.0.0.1:{port}");
        let http = crate::gateway::http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = driver.try_wait() {
                panic!("chromedriver exited ({status})\n{}", driver.logs());
            }
            if http.get(format!("{url}/status")).send().await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start\n{}",
                driver.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = dir.join("profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_bin(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                    "--host-resolver-rules=MAP *.test 127.0.0.1",
                    format!("--unsafely-treat-insecure-origin-as-secure={}", secure_origins.join(",")),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}\n{}", driver.logs()));
        Browser {
            client,
            _driver: driver,
            _dir: dir,
        }
    }

    /// Waits up to 15 s for an element.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    /// Polls a JavaScript expression (in the current frame) until it returns `true`.
    pub async fn wait_true(&self, what: &str, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self
                .client
                .execute(&format!("return !!({js});"), vec![])
                .await;
            if matches!(v, Ok(serde_json::Value::Bool(true))) {
                return;
            }
            if Instant::now() >= deadline {
                self.screenshot("timeout").await;
                panic!("timed out waiting for {what}: {js} (last: {v:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => {
                if let Err(e) = std::fs::write(&path, png) {
                    eprintln!("screenshot {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("screenshot {name}: {e}"),
        }
        path
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Where screenshots go: `$SCREENSHOT_DIR`, else `<workspace>/target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("SCREENSHOT_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/screenshots"))
}

//! What the console's browser tests share: screenshots at the two sizes the console must fit
//! (1280×720 and 390×844, under `SCREENSHOT_DIR`), a check that the page never scrolls
//! sideways at either, an axe-core accessibility check injected into the page, waiting for a
//! condition the page's script answers, and the audit view's rows as the page shows them.
// Each test file uses the part it needs.
#![allow(dead_code)]

pub mod console;

use realmgate_e2e::browser::Browser;
use realmgate_e2e::process::workspace_root;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Set by `tests/run` (from `tests/setup/axe.sh`): the path of `axe.min.js`.
pub const AXE_ENV: &str = "REALMGATE_AXE";
const AXE_DEFAULT: &str = ".cache/realmgate/axe-core-4.10.3/node_modules/axe-core/axe.min.js";

pub const SIZES: [(u32, u32); 2] = [(1280, 720), (390, 844)];

/// axe-core's source, if installed; without it the check is skipped (saying so), unless
/// `REALMGATE_REQUIRE_BROWSER=1` (tests/run), where its absence fails the test.
pub fn axe_source() -> Option<String> {
    let path = std::env::var_os(AXE_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(AXE_DEFAULT)));
    let source = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    if source.is_none() {
        let required = std::env::var(realmgate_e2e::browser::REQUIRE_ENV).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "no axe-core at {path:?}: run tests/setup/axe.sh and set {AXE_ENV}"
        );
        eprintln!("SKIPPED the axe-core checks: run tests/setup/axe.sh and set {AXE_ENV}");
    }
    source
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("SCREENSHOT_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/browser-screenshots"))
}

/// The serious and critical violations axe-core finds on the page as it is now.
pub async fn axe(b: &Browser, source: &str) -> Result<Vec<String>, String> {
    let loaded = b
        .client
        .execute("return typeof axe !== 'undefined'", vec![])
        .await
        .map_err(|e| e.to_string())?;
    if loaded != Value::Bool(true) {
        // WebDriver's script runs outside the page's Content-Security-Policy.
        b.client
            .execute(&format!("{source}\nreturn true;"), vec![])
            .await
            .map_err(|e| format!("injecting axe-core: {e}"))?;
    }
    let found = b
        .client
        .execute_async(
            "const done = arguments[0];
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
               .then((r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
                 .map((v) => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3)
                   .map((n) => n.target.join(' ') + ' — ' + n.failureSummary).join(' | '))),
                 (e) => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(found
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default())
}

/// The page at each size: saved as `<name>-<w>x<h>.png`, no sideways scrolling, and (with
/// axe-core) no serious or critical violation. The window is left at 1280×720.
pub async fn check_page(b: &Browser, name: &str, axe_js: Option<&str>) -> Result<(), String> {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (w, h) in SIZES {
        viewport(b, w, h).await?;
        let overflow = b
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (scroll, inner) = (overflow[0].as_u64(), overflow[1].as_u64());
        if scroll > inner {
            // The outermost elements that stick out, to say what broke the layout.
            let wide = b
                .client
                .execute(
                    "const clipped = (e) => { for (let p = e.parentElement; p; p = p.parentElement) {
                         if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
                     return [...document.querySelectorAll('body *')]
                       .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !clipped(e))
                       .slice(-5).map((e) => e.outerHTML.slice(0, 160))",
                    vec![],
                )
                .await
                .unwrap_or_default();
            return Err(format!(
                "{name} at {w}×{h}: the page is {scroll:?} px wide in a {inner:?} px window: {wide}"
            ));
        }
        let png = b.client.screenshot().await.map_err(|e| e.to_string())?;
        let path = dir.join(format!("{name}-{w}x{h}.png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(source) = axe_js {
            let found = axe(b, source).await?;
            if !found.is_empty() {
                return Err(format!("{name} at {w}×{h}: axe-core: {found:#?}"));
            }
        }
    }
    viewport(b, SIZES[0].0, SIZES[0].1).await
}

/// Size the window so that the page itself (the viewport) is `w`×`h`: the window's own
/// frame is measured and added.
pub async fn viewport(b: &Browser, w: u32, h: u32) -> Result<(), String> {
    let (mut ww, mut wh) = (w, h);
    for _ in 0..3 {
        b.client
            .set_window_size(ww, wh)
            .await
            .map_err(|e| e.to_string())?;
        let inner = b
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .map_err(|e| e.to_string())?;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(0) as u32,
            inner[1].as_u64().unwrap_or(0) as u32,
        );
        if (iw, ih) == (w, h) {
            return Ok(());
        }
        ww = (ww + w).saturating_sub(iw);
        wh = (wh + h).saturating_sub(ih);
    }
    Err(format!("the viewport could not be made {w}×{h}"))
}

/// Run `js` (a function body) in the page until it returns something other than null,
/// undefined or false (up to `within`); that value. `what` names the condition in the error.
pub async fn wait_js(b: &Browser, js: &str, within: Duration, what: &str) -> Result<Value, String> {
    let deadline = Instant::now() + within;
    loop {
        let v = b
            .client
            .execute(js, vec![])
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if !v.is_null() && v != Value::Bool(false) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One row of the audit view (`#audit`), its cells as shown.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub who: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub digests: String,
}

/// The rows the audit view shows now.
pub async fn audit_rows(b: &Browser) -> Result<Vec<AuditRow>, String> {
    let v = b
        .client
        .execute(
            "return [...document.querySelectorAll('#audit tbody tr')]
               .map((r) => [...r.cells].map((c) => c.textContent))",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let cell = |r: &Value, i: usize| r[i].as_str().unwrap_or_default().to_owned();
    Ok(v.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| AuditRow {
                    who: cell(r, 1),
                    action: cell(r, 2),
                    target: cell(r, 3),
                    outcome: cell(r, 4),
                    digests: cell(r, 6),
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Wait (up to 30 s) until the audit view shows, for each `(action, target)`, a row of that
/// change done (outcome `ok`) by `who` (its name as the view shows it, e.g. `ada (admin)`);
/// those rows, in the order asked.
pub async fn wait_audit(
    b: &Browser,
    who: &str,
    wanted: &[(&str, &str)],
) -> Result<Vec<AuditRow>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = audit_rows(b).await?;
        let found: Vec<Option<&AuditRow>> = wanted
            .iter()
            .map(|(action, target)| {
                rows.iter().find(|r| {
                    r.action == *action
                        && r.target == *target
                        && r.who.contains(who)
                        && r.outcome.starts_with("ok")
                })
            })
            .collect();
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().cloned().collect());
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = wanted
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(w, _)| w)
                .collect();
            return Err(format!(
                "the audit view lacks {missing:?} by {who:?}; it shows {rows:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

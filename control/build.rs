//! Bundles the operator UI's third-party browser libraries, pinned in `ui/package-lock.json`,
//! into realmctl: `npm ci` when the pinned versions are not installed in `ui/node_modules`
//! (not committed), then their dist files are copied to `OUT_DIR` for `include_bytes!`
//! (`src/ui/mod.rs`). Nothing is fetched at run time. Runs again only when the lock changes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(file under node_modules, name in OUT_DIR)`.
const BUNDLED: [(&str, &str); 3] = [
    ("uplot/dist/uPlot.iife.min.js", "uplot.js"),
    ("uplot/dist/uPlot.min.css", "uplot.css"),
    ("uplot/LICENSE", "uplot.LICENSE"),
];

fn main() {
    println!("cargo:rerun-if-changed=ui/package-lock.json");
    println!("cargo:rerun-if-changed=ui/package.json");
    println!("cargo:rerun-if-env-changed=NPM");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ui = manifest.join("ui");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    if let Some(stale) = not_installed(&ui) {
        println!("cargo:warning=control/ui: {stale}: running npm ci");
        npm_ci(&ui);
        if let Some(still) = not_installed(&ui) {
            fail(&format!(
                "npm ci in {} did not install the lock: {still}",
                ui.display()
            ));
        }
    }
    for (from, to) in BUNDLED {
        let src = ui.join("node_modules").join(from);
        if let Err(e) = std::fs::copy(&src, out.join(to)) {
            fail(&format!("{}: {e}", src.display()));
        }
    }
}

/// Why `node_modules` does not hold what the lock pins (`None`: it does).
fn not_installed(ui: &Path) -> Option<String> {
    let lock = read_json(&ui.join("package-lock.json"))
        .unwrap_or_else(|e| fail(&format!("control/ui/package-lock.json: {e}")));
    let packages = lock["packages"].as_object()?;
    for (path, entry) in packages.iter().filter(|(p, _)| !p.is_empty()) {
        let want = entry["version"].as_str().unwrap_or_default();
        let have = read_json(&ui.join(path).join("package.json"))
            .ok()
            .and_then(|p| p["version"].as_str().map(str::to_owned));
        if have.as_deref() != Some(want) {
            return Some(format!(
                "{path} is {} where the lock pins {want}",
                have.as_deref().unwrap_or("missing")
            ));
        }
    }
    None
}

fn read_json(p: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn npm_ci(ui: &Path) {
    let npm = std::env::var_os("NPM").unwrap_or_else(|| "npm".into());
    let status = Command::new(&npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(ui)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci` in {} failed ({s}); the UI's chart library (uPlot) is installed from the npm registry by the build",
            ui.display()
        )),
        Err(e) => fail(&format!(
            "cannot run npm ({e}): building realmctl needs Node.js and npm, which install the UI's chart library pinned in control/ui/package-lock.json (e.g. `apt-get install npm`; or set NPM to its path)"
        )),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}

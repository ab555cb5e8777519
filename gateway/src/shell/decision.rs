//! Shell or app? The request-filter decision for shell-enabled tenants (see docs/app-shell.md).
//!
//! | method    | fetch metadata / Accept                         | path                          | answer |
//! |-----------|-------------------------------------------------|-------------------------------|--------|
//! | any       | any                                             | under `shell.excludes`        | app    |
//! | not GET/HEAD | any                                          | any                           | app    |
//! | GET/HEAD  | `Sec-Fetch-Dest: document`                      | `/` or under a catalog path   | shell  |
//! | GET/HEAD  | no `Sec-Fetch-Dest`, `Accept` has `text/html`   | `/` or under a catalog path   | shell  |
//! | GET/HEAD  | `Sec-Fetch-Dest` other than `document` (iframe, empty, script…) | any   | app    |
//! | GET/HEAD  | no `Sec-Fetch-Dest`, `Accept` without `text/html` | any                         | app    |
//! | GET/HEAD  | navigation                                      | elsewhere                     | app    |
//!
//! Only shell-enabled tenants get here; every other request pays one `Option` check.

use super::ShellRt;
use crate::headers::is_navigation;
use pingora_http::RequestHeader;
use realmgate_table::path::prefix_matches;

/// A request that gets the shell page, and which catalog app is active in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellPage {
    /// Index into the tenant's catalog; `None` on `/` (the shell's home).
    pub active: Option<u16>,
}

/// Whether this request gets the shell. `path` is the normalised request path.
pub fn decide(shell: &ShellRt, req: &RequestHeader, path: &str) -> Option<ShellPage> {
    // A GET or HEAD navigation (one rule with the login redirect: `headers::is_navigation`).
    if !is_navigation(req) {
        return None;
    }
    if shell.excludes.iter().any(|p| prefix_matches(p, path)) {
        return None;
    }
    if path == "/" {
        return Some(ShellPage { active: None });
    }
    // Longest catalog path wins, like routes.
    shell
        .apps
        .iter()
        .filter(|(prefix, _)| prefix_matches(prefix, path))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|&(_, idx)| ShellPage { active: Some(idx) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> ShellRt {
        ShellRt::for_test(
            &["/todos/", "/notes", "/todos/admin/"],
            &["/api/", "/todos/raw/"],
        )
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/", None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    const DOC: &[(&str, &str)] = &[("sec-fetch-dest", "document"), ("accept", "text/html")];
    const FRAME: &[(&str, &str)] = &[("sec-fetch-dest", "iframe"), ("accept", "text/html")];
    const OLD_BROWSER: &[(&str, &str)] = &[("accept", "text/html,application/xhtml+xml,*/*")];

    fn active(r: &RequestHeader, path: &str) -> Option<Option<u16>> {
        decide(&shell(), r, path).map(|p| p.active)
    }

    #[test]
    fn navigations_to_root_and_catalog_paths_get_the_shell() {
        for headers in [DOC, OLD_BROWSER] {
            for method in ["GET", "HEAD"] {
                let r = req(method, headers);
                assert_eq!(active(&r, "/"), Some(None), "{method} {headers:?}");
                assert_eq!(active(&r, "/todos/"), Some(Some(0)));
                assert_eq!(active(&r, "/todos/list/3"), Some(Some(0)));
                assert_eq!(active(&r, "/notes"), Some(Some(1)));
                assert_eq!(active(&r, "/notes/x"), Some(Some(1)));
                // The longest catalog path wins.
                assert_eq!(active(&r, "/todos/admin/users"), Some(Some(2)));
            }
        }
        let upper = req("GET", &[("Sec-Fetch-Dest", "Document")]);
        assert_eq!(active(&upper, "/"), Some(None));
    }

    #[test]
    fn frames_and_subresources_reach_the_app() {
        for headers in [
            FRAME,
            &[("sec-fetch-dest", "empty"), ("accept", "text/html")][..],
            &[("sec-fetch-dest", "script")][..],
            &[("sec-fetch-dest", "")][..],
            &[("accept", "application/json")][..],
            &[("accept", "*/*")][..],
            &[][..],
        ] {
            let r = req("GET", headers);
            assert_eq!(active(&r, "/"), None, "{headers:?}");
            assert_eq!(active(&r, "/todos/"), None, "{headers:?}");
        }
    }

    #[test]
    fn other_methods_reach_the_app() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert_eq!(active(&req(method, DOC), "/todos/"), None, "{method}");
        }
    }

    #[test]
    fn paths_outside_the_catalog_and_excluded_prefixes_reach_the_app() {
        let r = req("GET", DOC);
        for path in [
            "/index.html",
            "/todo",
            "/todos",
            "/notesx",
            "/api/",
            "/api/x",
        ] {
            assert_eq!(active(&r, path), None, "{path}");
        }
        // An exclude inside a catalog app wins over the app.
        assert_eq!(active(&r, "/todos/raw/1"), None);
        assert_eq!(active(&r, "/todos/rawx"), Some(Some(0)));
    }
}

//! Framing policy of app responses on shell-enabled tenants: `frame-ancestors 'self'` unless
//! the app already sent a policy at least as strict.
//!
//! "At least as strict" means, exactly:
//! - an enforced `Content-Security-Policy` header (not `-Report-Only`) whose `frame-ancestors`
//!   directive lists only `'none'` and/or `'self'` (or nothing, which means `'none'`); or
//! - `X-Frame-Options: DENY` or `SAMEORIGIN` with no CSP `frame-ancestors` at all. (Browsers
//!   ignore `X-Frame-Options` once any `frame-ancestors` applies, so adding ours beside a `DENY`
//!   would loosen it.)
//!
//! Otherwise the gateway adds its own `Content-Security-Policy: frame-ancestors 'self'` as a
//! separate header. Browsers enforce every policy they get, so an app's looser list
//! (`frame-ancestors https://partner.example 'self'`) is narrowed to the same origin, and the
//! app's other directives are left as they are.
//!
//! HTML app responses also get `Vary: Sec-Fetch-Dest`: the same URL is the shell for a
//! navigation and the app for a frame, so a browser cache must not hand one to the other.

use http::header::{HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, CONTENT_TYPE, VARY};
use pingora_error::Result;
use pingora_http::ResponseHeader;

pub const X_FRAME_OPTIONS: HeaderName = HeaderName::from_static("x-frame-options");
const SELF_ONLY: HeaderValue = HeaderValue::from_static("frame-ancestors 'self'");
const VARY_DEST: HeaderValue = HeaderValue::from_static("Sec-Fetch-Dest");

/// Add `frame-ancestors 'self'` to an app response unless it is already as strict, and
/// `Vary: Sec-Fetch-Dest` to an HTML one.
pub fn guard_app_response(resp: &mut ResponseHeader) -> Result<()> {
    let html = resp.headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 9 && v[..9].eq_ignore_ascii_case(b"text/html")
    });
    if html {
        resp.append_header(VARY, VARY_DEST)?;
    }
    if already_strict(resp) {
        return Ok(());
    }
    resp.append_header(CONTENT_SECURITY_POLICY, SELF_ONLY)
        .map(|_| ())
}

fn already_strict(resp: &ResponseHeader) -> bool {
    let mut has_frame_ancestors = false;
    for csp in resp.headers.get_all(CONTENT_SECURITY_POLICY) {
        if let Some(sources) = frame_ancestors(csp.as_bytes()) {
            has_frame_ancestors = true;
            if sources
                .split(|b| b.is_ascii_whitespace())
                .filter(|s| !s.is_empty())
                .all(|s| s.eq_ignore_ascii_case(b"'none'") || s.eq_ignore_ascii_case(b"'self'"))
            {
                return true;
            }
        }
    }
    !has_frame_ancestors
        && resp.headers.get_all(X_FRAME_OPTIONS).iter().any(|v| {
            let v = v.as_bytes().trim_ascii();
            v.eq_ignore_ascii_case(b"deny") || v.eq_ignore_ascii_case(b"sameorigin")
        })
}

/// The source list of the first `frame-ancestors` directive of one policy (later duplicates
/// are ignored by browsers too).
fn frame_ancestors(policy: &[u8]) -> Option<&[u8]> {
    policy.split(|&b| b == b';').find_map(|d| {
        let d = d.trim_ascii();
        let name_end = d
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(d.len());
        d[..name_end]
            .eq_ignore_ascii_case(b"frame-ancestors")
            .then(|| &d[name_end..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(headers: &[(&str, &str)]) -> Vec<String> {
        let mut r = ResponseHeader::build(200, None).expect("response");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        guard_app_response(&mut r).expect("guard");
        r.headers
            .get_all(CONTENT_SECURITY_POLICY)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect()
    }

    const OURS: &str = "frame-ancestors 'self'";

    #[test]
    fn html_varies_by_fetch_destination() {
        let mut r = ResponseHeader::build(200, None).expect("response");
        r.append_header("content-type", "text/html; charset=utf-8")
            .expect("header");
        r.append_header("vary", "Accept-Encoding").expect("header");
        guard_app_response(&mut r).expect("guard");
        let vary: Vec<&str> = r
            .headers
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        assert_eq!(vary, ["Accept-Encoding", "Sec-Fetch-Dest"]);
        let mut json = ResponseHeader::build(200, None).expect("response");
        json.append_header("content-type", "application/json")
            .expect("header");
        guard_app_response(&mut json).expect("guard");
        assert!(json.headers.get(VARY).is_none());
    }

    #[test]
    fn adds_self_when_the_app_says_nothing() {
        assert_eq!(guarded(&[]), [OURS]);
        assert_eq!(
            guarded(&[("content-security-policy", "default-src 'self'")]),
            ["default-src 'self'", OURS]
        );
        // Report-only policies are not enforced: they do not count.
        assert_eq!(
            guarded(&[(
                "content-security-policy-report-only",
                "frame-ancestors 'none'"
            )]),
            [OURS]
        );
    }

    #[test]
    fn keeps_stricter_or_equal_app_policies_alone() {
        for csp in [
            "frame-ancestors 'none'",
            "default-src 'self'; FRAME-ANCESTORS  'NONE' ",
            "frame-ancestors 'self'",
            "frame-ancestors",
            "frame-ancestors 'self' 'none'",
        ] {
            assert_eq!(guarded(&[("content-security-policy", csp)]), [csp], "{csp}");
        }
        for xfo in ["DENY", "sameorigin", " deny "] {
            assert_eq!(guarded(&[("x-frame-options", xfo)]), Vec::<String>::new());
        }
    }

    #[test]
    fn narrows_looser_app_policies() {
        let loose = "frame-ancestors 'self' https://partner.example";
        assert_eq!(
            guarded(&[("content-security-policy", loose)]),
            [loose, OURS]
        );
        assert_eq!(
            guarded(&[("content-security-policy", "frame-ancestors *")]),
            ["frame-ancestors *", OURS]
        );
        // X-Frame-Options is ignored by browsers beside a frame-ancestors directive.
        assert_eq!(
            guarded(&[
                ("x-frame-options", "DENY"),
                ("content-security-policy", "frame-ancestors *")
            ]),
            ["frame-ancestors *", OURS]
        );
        assert_eq!(guarded(&[("x-frame-options", "ALLOW-FROM x")]), [OURS]);
        // "frame-ancestorsx" is another directive.
        assert_eq!(
            guarded(&[("content-security-policy", "frame-ancestorsx 'none'")]),
            ["frame-ancestorsx 'none'", OURS]
        );
    }
}

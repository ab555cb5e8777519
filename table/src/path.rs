//! Path normalisation shared by route matching (gateway) and prefix validation (table).
//!
//! The route decision and the upstream must see the same path, so the gateway matches on, and
//! forwards, the normalised form: unreserved characters percent-decoded, other escapes
//! upper-cased, empty segments collapsed, `.` and `..` resolved. A path that would climb above
//! `/`, or that hides a `.`/`..` segment behind an encoded slash, is refused.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused. Every variant maps to a 400 on the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    NotAbsolute,
    /// A byte that must be percent-encoded (control, space, non-ASCII).
    BadByte,
    /// `%` not followed by two hex digits, or an encoded NUL.
    BadEscape,
    /// `..` would climb above `/`.
    AboveRoot,
    /// `%2F`/`%5C` hiding a `.` or `..` segment.
    EncodedTraversal,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path must start with '/'",
            PathError::BadByte => "path contains a byte that must be percent-encoded",
            PathError::BadEscape => "malformed percent-encoding in path",
            PathError::AboveRoot => "path climbs above '/'",
            PathError::EncodedTraversal => "encoded slash hides a '.' or '..' segment",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalise an origin-form path (no query). Borrows when the input is already normal, which
/// is the common case and costs one scan.
pub fn normalise_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(path).map(Cow::Owned)
}

/// One pass: rejects bad bytes, and answers whether the slow path is needed.
fn is_normal(bytes: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        if b <= b' ' || b >= 0x7f {
            return Err(PathError::BadByte);
        }
        match b {
            b'%' => normal = false,
            b'/' if prev == b'/' => normal = false,
            b'.' if prev == b'/' => {
                let rest = &bytes[i..];
                if matches!(
                    rest,
                    [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
                ) {
                    normal = false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    Ok(normal)
}

fn rebuild(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Byte offsets in `out` where each kept segment's leading '/' starts.
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing_slash = false;
    let mut decoded = String::new();
    for raw in path[1..].split('/') {
        decoded.clear();
        decode_segment(raw, &mut decoded)?;
        trailing_slash = true;
        match decoded.as_str() {
            "" | "." => {}
            ".." => {
                let start = starts.pop().ok_or(PathError::AboveRoot)?;
                out.truncate(start);
            }
            seg => {
                if hides_traversal(seg) {
                    return Err(PathError::EncodedTraversal);
                }
                starts.push(out.len());
                out.push('/');
                out.push_str(seg);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode unreserved escapes, upper-case the hex digits of the others.
fn decode_segment(raw: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&h), Some(&l)) => (h, l),
            _ => return Err(PathError::BadEscape),
        };
        let v = match (hex_val(hi), hex_val(lo)) {
            (Some(h), Some(l)) => h * 16 + l,
            _ => return Err(PathError::BadEscape),
        };
        if v == 0 {
            return Err(PathError::BadEscape);
        }
        if is_unreserved(v) {
            out.push(char::from(v));
        } else {
            out.push('%');
            out.push(char::from(hi.to_ascii_uppercase()));
            out.push(char::from(lo.to_ascii_uppercase()));
        }
        i += 3;
    }
    Ok(())
}

/// Would an upstream that decodes `%2F`/`%5C` see a `.` or `..` segment here?
fn hides_traversal(seg: &str) -> bool {
    if !seg.contains("%2F") && !seg.contains("%5C") {
        return false;
    }
    seg.replace("%5C", "%2F")
        .split("%2F")
        .any(|part| part == "." || part == "..")
}

/// Could a server upstream read `normal` (a path from [`normalise_path`]) as another path?
/// Any escape of a visible character can be (a server that decodes `%40` reads `/%40acme/`
/// as `/@acme/`, and `%2F` as a slash), and so can a raw `\` or a `;`. Every other path —
/// the common case — costs this one scan. Agrees with [`other_readings`]: when this is
/// false, that finds nothing.
pub fn has_other_readings(normal: &str) -> bool {
    let b = normal.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        b'\\' | b';' => true,
        b'%' => matches!(
            (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ),
            (Some(h), Some(l)) if is_decodable(h * 16 + l)
        ),
        _ => false,
    })
}

/// The bytes [`decode_all`] decodes: visible ASCII. Others stay escaped in every reading.
fn is_decodable(v: u8) -> bool {
    v > b' ' && v < 0x7f
}

/// The other paths that common servers resolve `normal` to, each with its dot segments
/// resolved: decoding `%2F`/`%5C` (and reading `\` as `/`), as Apache with
/// `AllowEncodedSlashes`, IIS, Windows servers and many frameworks do; cutting `;params`
/// from each segment, as servlet containers do (`..;` becomes `..`); decoding every escape
/// once or twice more, as servers that decode twice do (`%252F`). Each transformation is tried alone
/// and in every order with the others, since servers differ in which they apply first.
///
/// The gateway refuses a request when one of these readings would reach another route or
/// namespace than the one it checked (DESIGN: "never forward a path in a form that a common
/// server would resolve to another route or namespace"). A reading that climbs above `/` is
/// an error: the path is refused.
pub fn other_readings(normal: &str) -> Result<Vec<String>, PathError> {
    const STEPS: [fn(&str) -> String; 4] = [decode_slashes, cut_params, decode_all, decode_all];
    let mut out: Vec<String> = Vec::new();
    // Every ordered selection of the steps (decoding may come twice): at most 64 sequences.
    let mut frontier: Vec<(String, u8)> = vec![(normal.to_string(), 0)];
    while let Some((path, used)) = frontier.pop() {
        for (i, step) in STEPS.iter().enumerate() {
            if used & (1 << i) != 0 {
                continue;
            }
            let next = step(&path);
            let resolved = resolve_dots(&next)?;
            if resolved != normal && !out.contains(&resolved) {
                out.push(resolved);
            }
            frontier.push((next, used | (1 << i)));
        }
    }
    Ok(out)
}

/// The namespace segment a path starts with (`@acme` from `/@acme/x`, also as `%40acme`), for
/// comparing readings: a reading in another namespace is another scope of API keys.
pub fn namespace_segment(path: &str) -> Option<String> {
    let first = path.strip_prefix('/')?.split('/').next()?;
    let name = if let Some(rest) = first.strip_prefix('@') {
        rest
    } else if first.len() >= 3 && first[..3].eq_ignore_ascii_case("%40") {
        &first[3..]
    } else {
        return None;
    };
    Some(format!("@{name}"))
}

fn decode_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let esc = b.get(i..i + 3).map(|e| e.to_ascii_uppercase());
        if b[i] == b'\\' {
            out.push('/');
            i += 1;
        } else if matches!(esc.as_deref(), Some(b"%2F" | b"%5C")) {
            out.push('/');
            i += 3;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    out
}

fn cut_params(path: &str) -> String {
    path.split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Every escape decoded once; bytes that do not form a printable ASCII character stay encoded
/// (they cannot change which route a path reaches).
fn decode_all(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) {
                let v = h * 16 + l;
                if is_decodable(v) {
                    out.push(char::from(v));
                    i += 3;
                    continue;
                }
            }
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

/// `.`, `..` and empty segments resolved, as every server does.
fn resolve_dots(path: &str) -> Result<String, PathError> {
    let mut segs: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = true;
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop().ok_or(PathError::AboveRoot)?;
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

/// Route-prefix semantics, the one rule for routes, shell catalog paths and excludes: a prefix
/// ending in `/` covers everything under it; otherwise itself and paths continuing with `/`.
/// `path` must be normalised (see [`normalise_path`]).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalise_path(p).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b.c/d",
            "/.well-known/x",
            "/a..b/c.",
            "/@acme/x;y",
        ] {
            assert!(matches!(normalise_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn resolves_dots_and_slashes() {
        for (raw, want) in [
            ("/a/../a/x", "/a/x"),
            ("/a/./x", "/a/x"),
            ("//a//x", "/a/x"),
            ("/a/x/.", "/a/x/"),
            ("/a/x/..", "/a/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("//", "/"),
            ("/a//", "/a/"),
            ("/a/b/../../c", "/c"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(norm("/%61/x").as_deref(), Ok("/a/x"));
        assert_eq!(norm("/%7e%2D%2e%5F").as_deref(), Ok("/~-._"));
        assert_eq!(norm("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(norm("/%40acme/x").as_deref(), Ok("/%40acme/x"));
        assert_eq!(norm("/a%20b%c3%a9").as_deref(), Ok("/a%20b%C3%A9"));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/%2E%2E/b").as_deref(), Ok("/b"));
    }

    #[test]
    fn refuses_climbing_above_root() {
        for raw in [
            "/..",
            "/../x",
            "/a/../../x",
            "/./../x",
            "/a/%2e%2e/%2e%2e/x",
        ] {
            assert_eq!(norm(raw), Err(PathError::AboveRoot), "{raw}");
        }
    }

    #[test]
    fn refuses_encoded_traversal() {
        for raw in [
            "/@acme%2F..%2F@other/x",
            "/a%2f..",
            "/a%5C..%5Cb",
            "/%2E%2E%2Fx",
        ] {
            assert_eq!(norm(raw), Err(PathError::EncodedTraversal), "{raw}");
        }
        assert_eq!(norm("/a%2F..b").as_deref(), Ok("/a%2F..b"));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(norm(""), Err(PathError::NotAbsolute));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
        assert_eq!(norm("/a b"), Err(PathError::BadByte));
        assert_eq!(norm("/a\u{7f}"), Err(PathError::BadByte));
        assert_eq!(norm("/é"), Err(PathError::BadByte));
        assert_eq!(norm("/%"), Err(PathError::BadEscape));
        assert_eq!(norm("/%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%00b"), Err(PathError::BadEscape));
    }

    #[test]
    fn plain_paths_have_no_other_reading() {
        for p in ["/", "/a/b", "/a%20b", "/a%C3%A9", "/a.b/c", "/a%7F"] {
            assert!(!has_other_readings(p), "{p}");
        }
        // Any escape of a visible character: a server that decodes it reads another path.
        for p in [
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a;x/b",
            "/a%3Bx",
            "/a%252Fb",
            "/%40acme/x",
            "/%3A",
            "/a%21",
        ] {
            assert!(has_other_readings(p), "{p}");
        }
    }

    #[test]
    fn other_readings_are_what_servers_resolve() {
        let readings = |p: &str| other_readings(p).expect("readable");
        for (path, reading) in [
            ("/w/admin%2Fsecret", "/w/admin/secret"),
            ("/w/admin%2fsecret", "/w/admin/secret"),
            ("/admin;x/secret", "/admin/secret"),
            ("/public/..;/admin/secret", "/admin/secret"),
            ("/@acme/..;/@other/x", "/@other/x"),
            ("/public\\..\\admin", "/admin"),
            ("/public%5C..%5Cadmin", "/admin"),
            ("/public/%252E%252E/admin", "/public/%2E%2E/admin"),
            ("/public/%252E%252E/admin", "/admin"),
            ("/a%252Fb", "/a%2Fb"),
            ("/a;b=c/d;e", "/a/d"),
            ("/x%3B/..%3B/admin", "/x;/..;/admin"),
        ] {
            let got = readings(path);
            assert!(got.iter().any(|r| r == reading), "{path}: {got:?}");
        }
        // Two steps in either order: params cut after slashes are decoded, and before.
        let got = readings("/a;x%2F..%2Fadmin");
        assert!(got.iter().any(|r| r == "/admin"), "{got:?}");
        assert!(got.iter().any(|r| r == "/a"), "{got:?}");
    }

    #[test]
    fn a_reading_above_root_refuses_the_path() {
        for p in ["/..;/x", "/a%2F..%2F..%2Fx", "/a\\..\\..\\x"] {
            assert_eq!(other_readings(p), Err(PathError::AboveRoot), "{p}");
        }
    }

    #[test]
    fn namespace_segments() {
        assert_eq!(namespace_segment("/@acme/x").as_deref(), Some("@acme"));
        assert_eq!(namespace_segment("/%40acme").as_deref(), Some("@acme"));
        assert_eq!(namespace_segment("/acme/@x"), None);
        assert_eq!(namespace_segment("/"), None);
    }
}

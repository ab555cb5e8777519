//! Cookies as bytes, for auth and for what crosses to and from upstreams: the one parser of
//! `Cookie` every reader uses (session, login transaction, credential checks), and the rule for
//! which cookies are the gateway's own — never sent upstream, never set by an upstream.
//!
//! Bytes, not `&str`: a header value may carry obs-text (0x80–0xFF), and a parser that gives up
//! on such a value would see no cookies at all — the gateway's own among them.

use http::header::{COOKIE, SET_COOKIE};
use http::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};

/// The session cookie's name and its chunks (`rg_session`, `rg_session_1`, …).
pub const SESSION: &str = "rg_session";
/// Login-transaction cookies: `rg_tx_<first 12 characters of state>`.
pub const LOGIN_TX: &str = "rg_tx_";

/// Every cookie of the request's `Cookie` lines as `(name, value)`, in order: pairs split on
/// `;`, whitespace trimmed around each pair, its name and its value. A pair without `=` is
/// returned whole as the name with an empty value.
pub fn pairs(req: &RequestHeader) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw_pairs(req).map(split_pair)
}

/// Each non-empty `;`-separated piece of every `Cookie` line, trimmed, as sent.
fn raw_pairs(req: &RequestHeader) -> impl Iterator<Item = &[u8]> {
    req.headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(i) => (pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()),
        None => (pair, &[]),
    }
}

/// Is this cookie name one of the gateway's own? Strict on purpose: any ASCII case, with or
/// without a `__Host-`/`__Secure-` prefix or quotes — browsers compare names exactly, but an
/// upstream framework may not, and nothing legitimate upstream is named like these.
pub fn is_gateway_cookie(name: &[u8]) -> bool {
    let name = name.trim_ascii();
    let name = name.strip_prefix(b"\"").unwrap_or(name);
    let name = strip_prefix_ignore_case(name, b"__host-")
        .or_else(|| strip_prefix_ignore_case(name, b"__secure-"))
        .unwrap_or(name);
    strip_prefix_ignore_case(name, SESSION.as_bytes()).is_some()
        || strip_prefix_ignore_case(name, LOGIN_TX.as_bytes()).is_some()
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// The upstream request's `Cookie`: every line joined into one, without the gateway's own
/// cookies; removed when nothing is left. Other cookies pass byte for byte.
pub fn upstream_request(up: &mut RequestHeader) -> pingora_error::Result<()> {
    if !pairs(up).any(|(name, _)| is_gateway_cookie(name)) {
        return Ok(());
    }
    let mut kept = Vec::new();
    for pair in raw_pairs(up) {
        if is_gateway_cookie(split_pair(pair).0) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    // The bytes came from valid header values: always valid again; if not, send none.
    match HeaderValue::from_bytes(&kept) {
        Ok(v) if !kept.is_empty() => up.insert_header(COOKIE, v),
        _ => {
            up.remove_header(&COOKIE);
            Ok(())
        }
    }
}

/// Would this upstream `Set-Cookie` plant a cookie the gateway must decide alone? One of the
/// gateway's own names (a session or login state for this tenant, or — with `Domain` — for a
/// sibling), or any `Domain` attribute at all: tenants share parent zones, so a cookie for a
/// domain reaches hosts of other tenants. Host-only cookies of other names pass.
pub fn is_refused_set_cookie(value: &[u8]) -> bool {
    let mut parts = value.split(|&b| b == b';');
    let name = split_pair(parts.next().unwrap_or_default().trim_ascii()).0;
    is_gateway_cookie(name)
        || parts.any(|attr| {
            split_pair(attr.trim_ascii())
                .0
                .eq_ignore_ascii_case(b"domain")
        })
}

/// Remove every upstream `Set-Cookie` that [`is_refused_set_cookie`]; the others stay, in
/// order.
pub fn upstream_response(resp: &mut ResponseHeader) -> pingora_error::Result<()> {
    let all = resp.headers.get_all(SET_COOKIE);
    if !all.iter().any(|v| is_refused_set_cookie(v.as_bytes())) {
        return Ok(());
    }
    let kept: Vec<HeaderValue> = all
        .iter()
        .filter(|v| !is_refused_set_cookie(v.as_bytes()))
        .cloned()
        .collect();
    resp.remove_header(&SET_COOKIE);
    for v in kept {
        resp.append_header(SET_COOKIE, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[&[u8]]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        for line in lines {
            let v = HeaderValue::from_bytes(line).expect("header value");
            r.append_header("cookie", v).expect("header");
        }
        r
    }

    fn forwarded(lines: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut r = req(lines);
        upstream_request(&mut r).expect("rewrite");
        r.headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    /// Finding 10: a non-ASCII byte anywhere in `Cookie` used to hide every cookie from the
    /// filter, so the session went upstream.
    #[test]
    fn gateway_cookies_never_go_upstream_whatever_the_bytes_around_them() {
        // (Cookie lines, what the upstream gets)
        type Case<'a> = (&'a [&'a [u8]], Option<&'a [u8]>);
        let cases: &[Case<'_>] = &[
            (&[b"a=1; rg_session=1xyz; b=2"], Some(b"a=1; b=2")),
            (&[b"a=\xe9; rg_session=1xyz"], Some(b"a=\xe9")),
            (&[b"rg_session=1xyz; a=\xff\xfe"], Some(b"a=\xff\xfe")),
            (
                &[b"x=\xc3\xa9; rg_tx_abc=q; y=\x80; rg_session_1=z"],
                Some(b"x=\xc3\xa9; y=\x80"),
            ),
            (&[b"caf\xe9=1;rg_session=1x;b=2"], Some(b"caf\xe9=1; b=2")),
            (&[b"  rg_session = 1x ;  a=1  "], Some(b"a=1")),
            (&[b"rg_session=\"1x\"; a=\"q\""], Some(b"a=\"q\"")),
            (&[b"a=1", b"rg_session=1x", b"b=\xe9"], Some(b"a=1; b=\xe9")),
            (&[b"RG_SESSION=1x; Rg_Tx_A=1; a=1"], Some(b"a=1")),
            (
                &[b"__Host-rg_session=1x; __Secure-rg_tx_a=1; a=1"],
                Some(b"a=1"),
            ),
            (&[b"\"rg_session\"=1x; a=1"], Some(b"a=1")),
            (&[b"rg_session; a=1"], Some(b"a=1")),
            (&[b"rg_session=1x"], None),
            (&[b"rg_session=1x", b"rg_tx_q=\xe9"], None),
            // Nothing of ours: the header passes untouched.
            (&[b"a=\xe9;;b"], Some(b"a=\xe9;;b")),
            (&[b"rg_sessio=1; rg_t=2"], Some(b"rg_sessio=1; rg_t=2")),
        ];
        for &(lines, expected) in cases {
            let got = forwarded(lines);
            let want: Vec<Vec<u8>> = expected.into_iter().map(<[u8]>::to_vec).collect();
            assert_eq!(got, want, "{lines:?}");
        }
    }

    #[test]
    fn pairs_are_read_as_bytes() {
        let r = req(&[b"a=\xe9; rg_session=1x", b" b = 2 ;c"]);
        let got: Vec<(&[u8], &[u8])> = pairs(&r).collect();
        assert_eq!(
            got,
            [
                (b"a".as_slice(), b"\xe9".as_slice()),
                (b"rg_session", b"1x"),
                (b"b", b"2"),
                (b"c", b""),
            ]
        );
    }

    /// A tenant upstream must not plant the gateway's cookies, nor cookies for a parent domain
    /// that sibling tenants share.
    #[test]
    fn upstream_set_cookies() {
        // (Set-Cookie, refused)
        let cases: &[(&[u8], bool)] = &[
            (b"rg_session=1abc; Path=/; HttpOnly", true),
            (b"RG_SESSION=1abc", true),
            (b"rg_session_1=x", true),
            (b"__Host-rg_session=1abc; Path=/; Secure", true),
            (b"__secure-RG_SESSION=1abc; Secure", true),
            (b"rg_tx_abc=q; Path=/.realmgate/callback", true),
            (b" rg_tx_=q", true),
            (b"rg_session", true),
            (b"x=1; Domain=parent.test", true),
            (b"x=1; domain=.acme.test", true),
            (b"x=1; Path=/;DOMAIN=acme.test", true),
            (b"x=1; Path=/; Domain", true),
            (b"x=1; Path=/;  domain = acme.test ; Secure", true),
            (b"x=\xe9; Domain=parent.test", true),
            (b"a=1; Path=/", false),
            (b"a=1; Path=/; HttpOnly; SameSite=Lax; Secure", false),
            (b"session=1; Path=/", false),
            (b"a=domain; Path=/domain", false),
            (b"a=\xe9\xff", false),
            (b"my_rg_session=1", false),
        ];
        for &(value, refused) in cases {
            assert_eq!(
                is_refused_set_cookie(value),
                refused,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let mut resp = ResponseHeader::build(200, None).expect("response");
        for &(value, _) in cases {
            resp.append_header("set-cookie", HeaderValue::from_bytes(value).expect("value"))
                .expect("header");
        }
        upstream_response(&mut resp).expect("filter");
        let kept: Vec<&[u8]> = resp
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let want: Vec<&[u8]> = cases.iter().filter(|c| !c.1).map(|c| c.0).collect();
        assert_eq!(kept, want);
    }
}

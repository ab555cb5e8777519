//! Host normalisation shared by the table validator and the gateway's tenant lookup.
//!
//! Both sides must agree byte for byte on what a host name is, so there is exactly one
//! implementation: lower-case, strip the port and one trailing dot, IDNA (UTS #46) to ASCII,
//! then check DNS label syntax. The ASCII path allocates nothing; only non-ASCII input goes
//! through the `idna` crate.

use std::fmt;

/// Longest host name accepted (RFC 1035 presentation form without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a host could not be normalised. Every variant maps to a 400 on the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    Empty,
    TooLong,
    BadPort,
    BadLabel,
    BadIpLiteral,
    Idna,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::Empty => "empty host",
            HostError::TooLong => "host longer than 253 characters",
            HostError::BadPort => "port is not a number between 0 and 65535",
            HostError::BadLabel => {
                "each label must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            }
            HostError::BadIpLiteral => "malformed IPv6 literal",
            HostError::Idna => "not a valid internationalised domain name",
        })
    }
}

impl std::error::Error for HostError {}

/// A stack buffer the normalised host is written into, so the request path does not allocate.
pub struct HostBuf {
    bytes: [u8; MAX_HOST_LEN + 2],
}

impl Default for HostBuf {
    fn default() -> Self {
        HostBuf {
            bytes: [0; MAX_HOST_LEN + 2],
        }
    }
}

/// Normalise the value of a `Host` header (or a URI authority without userinfo): the result
/// is the lower-case ASCII host without port or trailing dot, written into `buf`.
pub fn normalise_authority<'b>(raw: &[u8], buf: &'b mut HostBuf) -> Result<&'b str, HostError> {
    let host = strip_port(raw)?;
    normalise_name(host, buf)
}

/// Normalise a bare host name (no port), as written in the routing table. An ASCII name (a
/// table's usual case) is lowered straight into the string returned, with the checks and
/// errors of [`normalise_name`] in the same order; anything else goes through it.
pub fn normalise_host(raw: &str) -> Result<String, HostError> {
    let host = raw.as_bytes();
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_ascii() && host.first().is_some_and(|&b| b != b'[') {
        if host.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        let lower = host.to_ascii_lowercase();
        check_labels(&lower)?;
        return String::from_utf8(lower).map_err(|_| HostError::BadLabel);
    }
    let mut buf = HostBuf::default();
    normalise_name(raw.as_bytes(), &mut buf).map(str::to_owned)
}

fn strip_port(raw: &[u8]) -> Result<&[u8], HostError> {
    if raw.first() == Some(&b'[') {
        let end = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::BadIpLiteral)?;
        check_port(&raw[end + 1..])?;
        return Ok(&raw[..=end]);
    }
    match raw.iter().rposition(|&b| b == b':') {
        Some(colon) => {
            check_port(&raw[colon..])?;
            Ok(&raw[..colon])
        }
        None => Ok(raw),
    }
}

/// `rest` is empty or `:digits`.
fn check_port(rest: &[u8]) -> Result<(), HostError> {
    let Some(digits) = rest.strip_prefix(b":") else {
        return if rest.is_empty() {
            Ok(())
        } else {
            Err(HostError::BadPort)
        };
    };
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HostError::BadPort);
    }
    let port = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    if port > 65535 {
        return Err(HostError::BadPort);
    }
    Ok(())
}

fn normalise_name<'b>(host: &[u8], buf: &'b mut HostBuf) -> Result<&'b str, HostError> {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if host[0] == b'[' {
        return normalise_ip_literal(host, buf);
    }
    if host.is_ascii() {
        if host.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        let out = &mut buf.bytes[..host.len()];
        for (o, &b) in out.iter_mut().zip(host) {
            *o = b.to_ascii_lowercase();
        }
        check_labels(out)?;
        return as_str(out);
    }
    let text = std::str::from_utf8(host).map_err(|_| HostError::Idna)?;
    let ascii = idna::domain_to_ascii_strict(text).map_err(|_| HostError::Idna)?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    let out = &mut buf.bytes[..ascii.len()];
    out.copy_from_slice(ascii.as_bytes());
    check_labels(out)?;
    as_str(out)
}

fn as_str(bytes: &[u8]) -> Result<&str, HostError> {
    // Only ASCII reaches here; the error arm is unreachable but costs nothing.
    std::str::from_utf8(bytes).map_err(|_| HostError::BadLabel)
}

fn check_labels(host: &[u8]) -> Result<(), HostError> {
    for label in host.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
            && label
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(HostError::BadLabel);
        }
    }
    Ok(())
}

fn normalise_ip_literal<'b>(host: &[u8], buf: &'b mut HostBuf) -> Result<&'b str, HostError> {
    let inner = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .ok_or(HostError::BadIpLiteral)?;
    let text = std::str::from_utf8(inner).map_err(|_| HostError::BadIpLiteral)?;
    let ip: std::net::Ipv6Addr = text.parse().map_err(|_| HostError::BadIpLiteral)?;
    // Canonical text form, so `[::0001]` and `[::1]` are the same host.
    let canonical = format!("[{ip}]");
    let out = &mut buf.bytes[..canonical.len()];
    out.copy_from_slice(canonical.as_bytes());
    as_str(out)
}

/// A host entry in the routing table: an exact name or a `*.suffix` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `acme.test`
    Exact(String),
    /// `*.beta.test`, stored as the suffix `beta.test`.
    Wildcard(String),
}

impl HostPattern {
    /// Parse and normalise a table host entry.
    pub fn parse(raw: &str) -> Result<HostPattern, HostError> {
        match raw.strip_prefix("*.") {
            Some(suffix) => normalise_host(suffix).map(HostPattern::Wildcard),
            None => normalise_host(raw).map(HostPattern::Exact),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, HostError> {
        let mut buf = HostBuf::default();
        normalise_authority(raw.as_bytes(), &mut buf).map(str::to_owned)
    }

    #[test]
    fn a_table_host_normalises_as_the_request_path_does() {
        let long_label = "a".repeat(64);
        let longest_label = format!("{}.test", "A".repeat(63));
        let at_most = format!("{}.test", "a.".repeat(124));
        let too_long = format!("{}.test", "a.".repeat(125));
        for raw in [
            "",
            ".",
            "..",
            "Acme.Test",
            "acme.test.",
            "acme.test..",
            "a..b",
            "-a.test",
            "a-.test",
            "a_b.test",
            "a b.test",
            "ACME",
            "xn--bcher-kva.de",
            "Bücher.de",
            "[::0001]",
            "[::1",
            "acme.test:80",
            "*.acme.test",
            "0.0.0.0",
            &long_label,
            &longest_label,
            &at_most,
            &too_long,
        ] {
            let mut buf = HostBuf::default();
            let by_name = normalise_name(raw.as_bytes(), &mut buf).map(str::to_owned);
            assert_eq!(normalise_host(raw), by_name, "{raw:?}");
        }
        assert_eq!(normalise_host("Acme.Test."), Ok("acme.test".to_owned()));
        // Every short string of these bytes: both paths agree on each.
        let bytes = b"aZ0-.";
        let mut raw = Vec::new();
        for n in 0..=6u32 {
            for mut i in 0..bytes.len().pow(n) {
                raw.clear();
                for _ in 0..n {
                    raw.push(bytes[i % bytes.len()]);
                    i /= bytes.len();
                }
                let raw = std::str::from_utf8(&raw).expect("ascii");
                let mut buf = HostBuf::default();
                let by_name = normalise_name(raw.as_bytes(), &mut buf).map(str::to_owned);
                assert_eq!(normalise_host(raw), by_name, "{raw:?}");
            }
        }
        assert_eq!(normalise_host(&too_long), Err(HostError::TooLong));
    }

    #[test]
    fn lower_cases_and_strips_port_and_trailing_dot() {
        assert_eq!(norm("ACME.Test").as_deref(), Ok("acme.test"));
        assert_eq!(norm("acme.test:8080").as_deref(), Ok("acme.test"));
        assert_eq!(norm("acme.test.").as_deref(), Ok("acme.test"));
        assert_eq!(norm("Acme.Test.:443").as_deref(), Ok("acme.test"));
        assert_eq!(norm("127.0.0.1:80").as_deref(), Ok("127.0.0.1"));
    }

    #[test]
    fn idna_to_ascii() {
        assert_eq!(norm("bücher.test").as_deref(), Ok("xn--bcher-kva.test"));
        assert_eq!(norm("BÜCHER.test:81").as_deref(), Ok("xn--bcher-kva.test"));
        assert_eq!(
            norm("xn--bcher-kva.test").as_deref(),
            Ok("xn--bcher-kva.test")
        );
    }

    #[test]
    fn ipv6_literals_are_canonical() {
        assert_eq!(norm("[::0001]:8080").as_deref(), Ok("[::1]"));
        assert_eq!(norm("[::1"), Err(HostError::BadIpLiteral));
        assert_eq!(norm("[zz::1]"), Err(HostError::BadIpLiteral));
        assert_eq!(norm("[::1]x"), Err(HostError::BadPort));
    }

    #[test]
    fn rejects_malformed_hosts() {
        for (raw, err) in [
            ("", HostError::Empty),
            (".", HostError::Empty),
            (":80", HostError::Empty),
            ("acme.test:", HostError::BadPort),
            ("acme.test:http", HostError::BadPort),
            ("acme.test:65536", HostError::BadPort),
            ("acme.test:123456", HostError::BadPort),
            ("a b.test", HostError::BadLabel),
            ("a..b", HostError::BadLabel),
            ("-bad-.test", HostError::BadLabel),
            ("bad-.test", HostError::BadLabel),
            ("under_score.test", HostError::BadLabel),
            ("acme.test..", HostError::BadLabel),
            ("a/b", HostError::BadLabel),
            ("*.acme.test", HostError::BadLabel),
            ("user@acme.test", HostError::BadLabel),
        ] {
            assert_eq!(norm(raw), Err(err), "{raw:?}");
        }
        assert_eq!(norm(&"a".repeat(64)), Err(HostError::BadLabel));
        let long = ["abcdefghi"; 26].join(".");
        assert_eq!(norm(&long), Err(HostError::TooLong));
    }

    #[test]
    fn rejects_invalid_utf8_and_bad_idna() {
        let mut buf = HostBuf::default();
        assert_eq!(
            normalise_authority(b"\xff\xfe.test", &mut buf),
            Err(HostError::Idna)
        );
        assert_eq!(norm("a\u{fffd}b.test"), Err(HostError::Idna));
        // UTS #46 maps and ignores some code points: zero-width space disappears.
        assert_eq!(norm("a\u{200b}b.test").as_deref(), Ok("ab.test"));
    }

    #[test]
    fn patterns() {
        assert_eq!(
            HostPattern::parse("*.Beta.TEST"),
            Ok(HostPattern::Wildcard("beta.test".into()))
        );
        assert_eq!(
            HostPattern::parse("beta.test."),
            Ok(HostPattern::Exact("beta.test".into()))
        );
        for bad in [
            "*",
            "*.",
            "*foo.test",
            "a.*.test",
            "**.test",
            "*.*.test",
            "acme.test:80",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HostPattern::parse("*.beta.test").map(|p| p.to_string()),
            Ok("*.beta.test".to_owned())
        );
    }
}

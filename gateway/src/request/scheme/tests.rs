//! The scheme and the TLS edge rules, case by case: whose `X-Forwarded-Proto` counts, the
//! SNI/Host rule, what plain HTTP gets per https mode, the redirect's `Location`, HSTS.

use super::*;
use crate::tls::ConnTls;
use realmgate_table::{Certificate, CheckedCert};
use std::sync::Arc;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

fn req(target: &str, host: Option<&str>) -> RequestHeader {
    let mut r = RequestHeader::build("GET", target.as_bytes(), None).expect("request");
    if let Some(h) = host {
        r.append_header("host", h).expect("host");
    }
    r
}

/// A certificate for `names` as the table checks it (rcgen-minted, self-signed).
fn cert(names: &[&str]) -> Arc<CheckedCert> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let c = params.self_signed(&key).expect("cert");
    let checked = realmgate_table::certificate(&Certificate {
        name: "test".into(),
        cert_pem: c.pem(),
        key_pem: key.serialize_pem(),
        hosts: names.iter().map(|n| n.to_string()).collect(),
        not_after: "2099-01-01T00:00:00Z".into(),
        ocsp_staple: None,
    });
    match checked {
        Ok(c) => Arc::new(c),
        Err(p) => panic!("certificate refused: {p:?}"),
    }
}

fn conn(names: &[&str]) -> ConnTls {
    ConnTls {
        sni: names.first().map(|n| Box::from(*n)),
        cert: cert(names),
    }
}

#[test]
fn forwarded_proto_says_https_only_when_every_item_does() {
    // (X-Forwarded-Proto lines, https)
    let cases: &[(&[&str], bool)] = &[
        (&["https"], true),
        (&["HTTPS"], true),
        (&[" https "], true),
        (&["https, https"], true),
        (&["https", "https"], true),
        (&[], false),
        (&["http"], false),
        (&["https, http"], false),
        (&["http, https"], false),
        (&["https", "http"], false),
        (&["https,"], false),
        (&[""], false),
        (&["httpss"], false),
        (&["https;"], false),
        (&["wss"], false),
    ];
    for &(lines, want) in cases {
        let pairs: Vec<(&str, &str)> = lines.iter().map(|l| ("x-forwarded-proto", *l)).collect();
        assert_eq!(forwarded_https(&headers(&pairs)), want, "{lines:?}");
    }
}

/// A client's `X-Forwarded-Proto` counts only from a trusted proxy; TLS is https whatever a
/// header says.
#[test]
fn the_scheme_trusts_the_connection_then_only_a_trusted_proxy() {
    let https = headers(&[("x-forwarded-proto", "https")]);
    let http = headers(&[("x-forwarded-proto", "http")]);
    let garbage = headers(&[("x-forwarded-proto", "j\"unk, \\")]);
    let none = headers(&[]);
    // (tls, peer is a trusted proxy, headers, https)
    let cases = [
        (true, false, &none, true),
        (true, false, &http, true),
        (true, true, &http, true),
        (false, false, &https, false),
        (false, false, &none, false),
        (false, true, &https, true),
        (false, true, &http, false),
        (false, true, &garbage, false),
        (false, true, &none, false),
    ];
    for (i, (tls, trusted, h, want)) in cases.into_iter().enumerate() {
        let s = Scheme::of(tls, trusted, h);
        assert_eq!(s.https, want, "case {i}");
        assert_eq!(s.tls, tls, "case {i}");
        assert_eq!(s.as_str(), if want { "https" } else { "http" });
    }
}

#[test]
fn a_tls_connection_carries_only_the_hosts_its_certificate_covers() {
    let exact = conn(&["acme.test"]);
    let wild = conn(&["*.beta.test"]);
    // (connection, Host, outcome)
    type Case<'a> = (
        Option<&'a ConnTls>,
        Option<&'a str>,
        Result<(), GatewayError>,
    );
    let cases: &[Case] = &[
        (Some(&exact), Some("acme.test"), Ok(())),
        (Some(&exact), Some("ACME.test."), Ok(())),
        // The port is not part of the name a certificate covers.
        (Some(&exact), Some("acme.test:8443"), Ok(())),
        (Some(&exact), Some("acme.test:443"), Ok(())),
        (
            Some(&exact),
            Some("other.test"),
            Err(GatewayError::Misdirected),
        ),
        (
            Some(&exact),
            Some("other.test:443"),
            Err(GatewayError::Misdirected),
        ),
        (
            Some(&exact),
            Some("x.acme.test"),
            Err(GatewayError::Misdirected),
        ),
        (
            Some(&exact),
            Some("127.0.0.1"),
            Err(GatewayError::Misdirected),
        ),
        // Certificate semantics: one label under a wildcard, not two, not the bare suffix.
        (Some(&wild), Some("x.beta.test"), Ok(())),
        (
            Some(&wild),
            Some("a.b.beta.test"),
            Err(GatewayError::Misdirected),
        ),
        (
            Some(&wild),
            Some("beta.test"),
            Err(GatewayError::Misdirected),
        ),
        // No host on TLS is 400, as tenant lookup answers it.
        (Some(&exact), None, Err(GatewayError::BadHost)),
        (
            Some(&exact),
            Some("acme.test:x"),
            Err(GatewayError::BadHost),
        ),
        (Some(&exact), Some(""), Err(GatewayError::BadHost)),
        // TLS without the facts of its handshake carries nothing.
        (None, Some("acme.test"), Err(GatewayError::Misdirected)),
    ];
    for (i, &(c, host, want)) in cases.iter().enumerate() {
        assert_eq!(
            check_connection_host(&req("/", host), true, c),
            want,
            "case {i}: {host:?}"
        );
    }
    // Plain HTTP: nothing to check here (tenant lookup judges the Host).
    assert_eq!(check_connection_host(&req("/", None), false, None), Ok(()));
    assert_eq!(
        check_connection_host(&req("/", Some("other.test")), false, Some(&exact)),
        Ok(())
    );
    // An absolute-form target naming another host than Host is refused too.
    assert_eq!(
        check_connection_host(
            &req("https://other.test/x", Some("acme.test")),
            true,
            Some(&exact)
        ),
        Err(GatewayError::HostMismatch)
    );
}

/// HTTP/2 carries the host in `:authority`: the same rule applies to it.
#[test]
fn http2_authority_is_checked_like_host() {
    let exact = conn(&["acme.test"]);
    for (authority, want) in [
        ("https://acme.test/x", Ok(())),
        ("https://acme.test:443/x", Ok(())),
        ("https://other.test/x", Err(GatewayError::Misdirected)),
    ] {
        let mut r = RequestHeader::build("GET", b"/x", None).expect("request");
        r.set_version(http::Version::HTTP_2);
        r.set_uri(authority.parse().expect("uri"));
        assert_eq!(
            check_connection_host(&r, true, Some(&exact)),
            want,
            "{authority}"
        );
    }
}

#[test]
fn plain_http_per_https_mode() {
    use HttpsMode::*;
    // (mode, https, normalised path, outcome)
    let cases = [
        (Off, false, "/", Ok(())),
        (Off, true, "/", Ok(())),
        (Redirect, false, "/", Err(GatewayError::HttpsRedirect)),
        (Redirect, false, "/app/x", Err(GatewayError::HttpsRedirect)),
        (
            Redirect,
            false,
            "/.realmgate/login",
            Err(GatewayError::HttpsRedirect),
        ),
        (Redirect, true, "/app/x", Ok(())),
        (Only, false, "/", Err(GatewayError::HttpsRequired)),
        (Only, false, "/api/x", Err(GatewayError::HttpsRequired)),
        (Only, true, "/api/x", Ok(())),
        // ACME challenges: never redirected nor refused.
        (Redirect, false, "/.well-known/acme-challenge/tok", Ok(())),
        (Only, false, "/.well-known/acme-challenge/tok", Ok(())),
        // Only the challenge directory itself.
        (
            Redirect,
            false,
            "/.well-known/acme-challenge",
            Err(GatewayError::HttpsRedirect),
        ),
        (
            Only,
            false,
            "/.well-known/other",
            Err(GatewayError::HttpsRequired),
        ),
        (
            Only,
            false,
            "/x/.well-known/acme-challenge/t",
            Err(GatewayError::HttpsRequired),
        ),
    ];
    for (i, (mode, https, path, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            check_plain_http(mode, https, path),
            want,
            "case {i}: {path}"
        );
    }
    assert_eq!(GatewayError::HttpsRequired.status(), 403);
    assert_eq!(GatewayError::HttpsRequired.code(), "https_required");
    assert_eq!(GatewayError::HttpsRedirect.status(), 308);
    assert_eq!(GatewayError::Misdirected.status(), 421);
}

#[test]
fn redirect_location_keeps_host_path_and_query() {
    // (target, Host, https_port, Location)
    let cases = [
        ("/", "acme.test", 443, "https://acme.test/"),
        (
            "/a/b?x=1&y=%20",
            "acme.test",
            443,
            "https://acme.test/a/b?x=1&y=%20",
        ),
        ("/a?x", "acme.test", 8443, "https://acme.test:8443/a?x"),
        // The plain-HTTP port the client used is not the https port.
        ("/a", "acme.test:8080", 443, "https://acme.test/a"),
        ("/a", "acme.test:8080", 8443, "https://acme.test:8443/a"),
        ("/a", "ACME.Test.", 443, "https://acme.test/a"),
        ("/a", "[::1]:80", 443, "https://[::1]/a"),
        ("/a", "[::1]", 8443, "https://[::1]:8443/a"),
        // Absolute form: the path and query only.
        (
            "http://acme.test/p?q=1",
            "acme.test",
            443,
            "https://acme.test/p?q=1",
        ),
        // A path that looks like an authority stays a path on the named host.
        (
            "//evil.test/x",
            "acme.test",
            443,
            "https://acme.test//evil.test/x",
        ),
    ];
    for (target, host, port, want) in cases {
        let got = https_location(&req(target, Some(host)), port);
        assert_eq!(
            got.as_ref().map(|v| v.to_str().expect("ascii")),
            Some(want),
            "{target} {host} {port}"
        );
    }
    assert_eq!(https_location(&req("/", None), 443), None);
    assert_eq!(https_location(&req("/", Some("bad host")), 443), None);
}

#[test]
fn hsts_only_over_https() {
    let v = HeaderValue::from_static("max-age=31536000; includeSubDomains");
    let tls = Scheme {
        tls: true,
        https: true,
    };
    let proxied = Scheme {
        tls: false,
        https: true,
    };
    let plain = Scheme::default();
    assert_eq!(hsts(tls, Some(&v)), Some(v.clone()));
    // Behind a trusted TLS-terminating proxy the browser's connection is https.
    assert_eq!(hsts(proxied, Some(&v)), Some(v.clone()));
    assert_eq!(hsts(plain, Some(&v)), None);
    assert_eq!(hsts(tls, None), None);
}

/// What upstream is told: the scheme as decided, never the client's own claim.
#[test]
fn x_forwarded_proto_upstream_is_the_scheme() {
    use crate::headers::{strip_owned_headers, upstream, Forwarded};
    // (tls, peer is a trusted proxy, client's X-Forwarded-Proto, sent upstream)
    let cases = [
        (false, false, Some("https"), "http"),
        (false, false, Some("garbage"), "http"),
        (false, true, Some("https"), "https"),
        (false, true, Some("HTTPS"), "https"),
        (false, true, Some("http"), "http"),
        (false, true, Some("https, http"), "http"),
        (false, true, None, "http"),
        (true, false, Some("http"), "https"),
        (true, false, None, "https"),
    ];
    for (tls, trusted, xfp, want) in cases {
        let mut r = req("/", Some("acme.test"));
        if let Some(v) = xfp {
            r.append_header("x-forwarded-proto", v).expect("header");
        }
        // The order of the request filter: the scheme first, then the owned headers go.
        let scheme = Scheme::of(tls, trusted, &r.headers);
        strip_owned_headers(&mut r, trusted);
        assert!(r.headers.get(X_FORWARDED_PROTO).is_none());
        let f = Forwarded {
            client: Some("10.0.0.1".parse().expect("ip")),
            https: scheme.https,
            host: None,
        };
        upstream(&mut r, &f, &HeaderValue::from_static("rid")).expect("headers");
        let sent: Vec<&[u8]> = r
            .headers
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(sent, [want.as_bytes()], "{tls} {trusted} {xfp:?}");
    }
}

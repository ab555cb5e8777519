//! Unit tests of the header helpers: what goes upstream, what is stripped, what is read.

use super::*;

fn req_with(headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).expect("request");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

fn req_as(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, b"/", None).expect("request");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

/// One rule for the shell and the login redirect (DESIGN.md, "Shell"). Before it, the
/// login flow refused `HEAD`, `Document` and an `Accept` split over two lines.
#[test]
fn an_h2_authority_becomes_the_host() {
    let h2 = |authority: &str, host: Option<&str>| {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        req.set_version(http::Version::HTTP_2);
        req.set_uri(format!("https://{authority}/x").parse().expect("uri"));
        if let Some(h) = host {
            req.insert_header("host", h).expect("host");
        }
        host_from_authority(&mut req);
        req.headers
            .get("host")
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    // The port the client used stays: origins and redirects need it.
    assert_eq!(
        h2("acme.test:8443", None).as_deref(),
        Some("acme.test:8443")
    );
    // A Host the client sent is kept (a mismatch with :authority is the host rule's).
    assert_eq!(
        h2("acme.test", Some("other.test")).as_deref(),
        Some("other.test")
    );
    // HTTP/1.1 requests are left as sent, Host or not.
    let mut req = RequestHeader::build("GET", b"/", None).expect("request");
    host_from_authority(&mut req);
    assert!(req.headers.get("host").is_none());
}

#[test]
fn navigations() {
    // (method, headers, is a navigation)
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
    let cases: &[Case] = &[
        ("GET", &[("sec-fetch-dest", "document")], true),
        ("HEAD", &[("sec-fetch-dest", "document")], true),
        ("GET", &[("Sec-Fetch-Dest", "Document")], true),
        ("HEAD", &[("sec-fetch-dest", "DOCUMENT")], true),
        ("GET", &[("accept", "text/html,*/*")], true),
        ("HEAD", &[("accept", "text/html")], true),
        ("GET", &[("accept", "TEXT/HTML;q=0.9")], true),
        // Accept over two header lines: all of them count.
        (
            "GET",
            &[("accept", "application/json"), ("accept", "text/html")],
            true,
        ),
        ("HEAD", &[("accept", "*/*"), ("accept", "text/html")], true),
        // Fetch metadata decides when present, whatever Accept says.
        (
            "GET",
            &[("sec-fetch-dest", "iframe"), ("accept", "text/html")],
            false,
        ),
        (
            "GET",
            &[("sec-fetch-dest", "empty"), ("accept", "text/html")],
            false,
        ),
        ("GET", &[("sec-fetch-dest", "")], false),
        ("GET", &[("sec-fetch-dest", "script")], false),
        ("GET", &[("accept", "application/json")], false),
        ("GET", &[("accept", "*/*")], false),
        ("GET", &[], false),
        // Only GET and HEAD navigate.
        ("POST", &[("sec-fetch-dest", "document")], false),
        ("PUT", &[("accept", "text/html")], false),
        ("OPTIONS", &[("sec-fetch-dest", "document")], false),
        ("DELETE", &[("accept", "text/html")], false),
    ];
    for &(method, headers, expected) in cases {
        assert_eq!(
            is_navigation(&req_as(method, headers)),
            expected,
            "{method} {headers:?}"
        );
    }
}

/// RFC 9110 §11.1: the auth scheme is case-insensitive; one or more spaces separate it
/// from the token.
#[test]
fn bearer_tokens() {
    // (Authorization value, token)
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"Bearer abc", Some(b"abc")),
        (b"bearer abc", Some(b"abc")),
        (b"BEARER abc", Some(b"abc")),
        (b"bEaReR abc", Some(b"abc")),
        (b"bearer   abc", Some(b"abc")),
        (b"Bearer abc  ", Some(b"abc")),
        (b"Bearer rgk_x.y", Some(b"rgk_x.y")),
        (b"Bearer ", Some(b"")),
        (b"Bearer", None),
        (b"Bearerabc", None),
        (b"Basic abc", None),
        (b"Bear abc", None),
        (b"", None),
    ];
    for &(value, token) in cases {
        assert_eq!(bearer(value), token, "{:?}", String::from_utf8_lossy(value));
    }
}

#[test]
fn every_authorization_value() {
    let r = req_with(&[
        ("authorization", "Basic dTpw"),
        ("Authorization", "Bearer rgk_x"),
        ("accept", "*/*"),
    ]);
    let all: Vec<&[u8]> = authorizations(&r).collect();
    assert_eq!(all, [b"Basic dTpw".as_slice(), b"Bearer rgk_x"]);
    assert_eq!(authorizations(&req_with(&[])).count(), 0);
}

/// `x-forwarded-proto` says what the connection is; a client's own copy never survives.
#[test]
fn forwarded_headers_come_from_the_connection() {
    use pingora_core::protocols::tls::SslDigest;
    let tls = Digest {
        ssl_digest: Some(std::sync::Arc::new(SslDigest::new(
            "TLS_AES_128_GCM_SHA256",
            "TLSv1.3",
            None,
            None,
            Vec::new(),
        ))),
        ..Digest::default()
    };
    let plain = Digest::default();
    let host = HeaderValue::from_static("acme.test");
    // (connection digest, x-forwarded-proto)
    for (digest, proto) in [
        (Some(&tls), "https"),
        (Some(&plain), "http"),
        (None, "http"),
    ] {
        let mut up = req_with(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        let f = Forwarded {
            client: Some("10.0.0.1".parse().expect("ip")),
            https: is_tls(digest),
            host: Some(&host),
        };
        upstream(&mut up, &f, &HeaderValue::from_static("rid")).expect("headers");
        let all = |n: &str| -> Vec<&[u8]> {
            up.headers.get_all(n).iter().map(|v| v.as_bytes()).collect()
        };
        assert_eq!(all(X_FORWARDED_PROTO), [proto.as_bytes()], "{digest:?}");
        assert_eq!(all(X_FORWARDED_FOR), [b"10.0.0.1".as_slice()]);
        assert_eq!(all(X_FORWARDED_HOST), [b"acme.test".as_slice()]);
        assert_eq!(all(X_REQUEST_ID), [b"rid".as_slice()]);
    }
}

#[test]
fn keeps_well_formed_request_ids() {
    let r = req_with(&[("x-request-id", "abc-123_x.y:z")]);
    assert_eq!(request_id(&r), "abc-123_x.y:z");
}

#[test]
fn replaces_malformed_request_ids() {
    let long = "a".repeat(129);
    for bad in ["", "has space", "semi;colon", long.as_str()] {
        let id = request_id(&req_with(&[("x-request-id", bad)]));
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32, "{bad:?}");
    }
    let twice = req_with(&[("x-request-id", "a1"), ("x-request-id", "a2")]);
    assert_eq!(request_id(&twice).len(), 32);
    assert_ne!(new_request_id(), new_request_id());
}

#[test]
fn strips_identity_headers_and_keeps_lookalikes() {
    let mut r = req_with(&[
        ("X-Realmgate-Tenant", "evil"),
        ("x-realmgate-subject", "root"),
        ("x-realmgateway", "kept"),
        ("accept", "*/*"),
    ]);
    strip_owned_headers(&mut r, false);
    let mut names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["accept", "x-realmgateway"]);
}

#[test]
fn formats_ips() {
    for ip in [
        "10.1.2.3",
        "0.0.0.0",
        "255.255.255.255",
        "127.0.0.1",
        "192.168.100.9",
        "1.20.100.200",
    ] {
        assert_eq!(ip_header(ip.parse().expect("ip")), ip);
    }
    assert_eq!(
        ip_header("fe80:1:2:3:4:5:6:7".parse().expect("ip")),
        "fe80:1:2:3:4:5:6:7"
    );
}

#[test]
fn owned_headers_whatever_their_spelling() {
    for name in [
        "x-realmgate-subject",
        "x_realmgate_subject",
        "x-realmgate_roles",
        "x_realmgate-tenant",
        "x-realmgate-anything",
        "x-forwarded-for",
        "x_forwarded_for",
        "x-forwarded-proto",
        "x_forwarded_host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "x_real_ip",
        "true-client-ip",
        "true_client_ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "client-ip",
        "client_ip",
        "x-original-url",
        "x_original_url",
        "x-rewrite-url",
        "x-original-forwarded-for",
    ] {
        assert!(is_owned(name.as_bytes()), "{name}");
    }
    for name in [
        "x-request-id",
        "x-realmgate",
        "x-forwarded",
        "accept",
        "cookie",
        "content-type",
        "x-custom_header",
        "forwarded-x",
        "true-client",
        "x-api-key",
        "authorization",
    ] {
        assert!(!is_owned(name.as_bytes()), "{name}");
    }
}

#[test]
fn strips_owned_headers_and_keeps_the_rest() {
    let mut r = req_with(&[
        ("X_Realmgate_Subject", "admin"),
        ("x-realmgate-roles", "admin"),
        ("X-Real-IP", "1.2.3.4"),
        ("Forwarded", "for=1.2.3.4"),
        ("x_forwarded_for", "1.2.3.4"),
        ("x-custom_header", "kept"),
        ("accept", "text/html"),
    ]);
    let mut proxied = r.clone();
    strip_owned_headers(&mut r, false);
    let mut left: Vec<&str> = r.headers.keys().map(|n| n.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "x-custom_header"]);
    // From a trusted proxy: its X-Forwarded-For (that spelling only) stays for the limits.
    proxied
        .append_header("X-Forwarded-For", "1.2.3.4")
        .expect("header");
    strip_owned_headers(&mut proxied, true);
    let mut left: Vec<&str> = proxied.headers.keys().map(|n| n.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "x-custom_header", "x-forwarded-for"]);
}

#[test]
fn framing() {
    let ok: [&[(&str, &str)]; 3] = [
        &[],
        &[("content-length", "5")],
        &[("transfer-encoding", "chunked")],
    ];
    for h in ok {
        assert_eq!(check_framing(&req_as("POST", h)), Ok(()), "{h:?}");
    }
    let bad: [&[(&str, &str)]; 8] = [
        &[("content-length", "5, 5")],
        &[("content-length", "5"), ("content-length", "5")],
        &[("content-length", "5"), ("content-length", "6")],
        &[("content-length", "+5")],
        &[("content-length", "-1")],
        &[("content-length", "")],
        &[("content-length", "99999999999999999999")],
        &[("content-length", "5"), ("transfer-encoding", "chunked")],
    ];
    for h in bad {
        assert_eq!(
            check_framing(&req_as("POST", h)),
            Err(GatewayError::BadRequest),
            "{h:?}"
        );
    }
}

//! Injector tests: placement, chunk boundaries, gzip, and which responses are touched.

use super::*;
use flate2::write::GzEncoder;
use flate2::Compression;

const EL: &str = r#"<script type="application/json" id="realmgate-context" nonce="n">{}</script>"#;

fn run(chunks: &[&[u8]], encoding: Encoding) -> (String, Vec<usize>) {
    let mut inj = Injector::new(EL.to_string(), None, encoding);
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut body = Some(Bytes::copy_from_slice(c));
        inj.filter(&mut body, i + 1 == chunks.len());
        let b = body.unwrap_or_default();
        sizes.push(b.len());
        out.extend_from_slice(&b);
    }
    (String::from_utf8(out).expect("utf8"), sizes)
}

fn whole(doc: &str) -> String {
    run(&[doc.as_bytes()], Encoding::Identity).0
}

#[test]
fn goes_first_into_head() {
    assert_eq!(
        whole("<!doctype html><html><head><title>t</title></head><body>x</body></html>"),
        format!("<!doctype html><html><head>{EL}<title>t</title></head><body>x</body></html>")
    );
    assert_eq!(
        whole("<HTML><HEAD lang=\"en\"></HEAD></HTML>"),
        format!("<HTML><HEAD lang=\"en\">{EL}</HEAD></HTML>")
    );
}

#[test]
fn falls_back_to_body_then_end_and_injects_once() {
    assert_eq!(
        whole("<html><body>x</body></html>"),
        format!("<html>{EL}<body>x</body></html>")
    );
    assert_eq!(whole("just text"), format!("just text{EL}"));
    assert_eq!(
        whole("<head></head><head></head><body></body>"),
        format!("<head>{EL}</head><head></head><body></body>")
    );
}

#[test]
fn head_split_across_chunk_boundaries() {
    let doc = "<!doctype html><html><head><meta charset=utf-8></head><body>hi</body></html>";
    let want = whole(doc);
    assert!(want.contains(&format!("<head>{EL}<meta")));
    // Every split point, including inside "<head>".
    for cut in 1..doc.len() {
        let (a, b) = doc.as_bytes().split_at(cut);
        assert_eq!(run(&[a, b], Encoding::Identity).0, want, "cut at {cut}");
    }
    // One byte at a time.
    let bytes: Vec<&[u8]> = doc.as_bytes().chunks(1).collect();
    assert_eq!(run(&bytes, Encoding::Identity).0, want);
}

#[test]
fn streams_instead_of_buffering() {
    let first = format!("<html><head></head><body>{}", "<p>row</p>".repeat(2000));
    let (_, sizes) = run(
        &[first.as_bytes(), b"<p>more</p>", b"</body></html>"],
        Encoding::Identity,
    );
    // Most of the first chunk is out before the second arrives.
    assert!(sizes[0] > first.len() / 2, "{sizes:?}");
}

#[test]
fn inflates_gzip() {
    let doc = format!(
        "<html><head><title>g</title></head><body>{}</body></html>",
        "z".repeat(5000)
    );
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(doc.as_bytes()).expect("gzip");
    let compressed = gz.finish().expect("gzip");
    let want = whole(&doc);
    for size in [1, 7, 64, compressed.len()] {
        let chunks: Vec<&[u8]> = compressed.chunks(size).collect();
        assert_eq!(run(&chunks, Encoding::Gzip).0, want, "chunks of {size}");
    }
    // Corrupt gzip ends the body instead of hanging or panicking.
    let (out, _) = run(&[b"not gzip at all", b"<head>"], Encoding::Gzip);
    assert!(!out.contains(EL));
}

#[test]
fn stamps_nonces_on_builtin_scripts_only_when_asked() {
    let doc = "<head><script src=\"/a.js\"></script></head><body><script>1</script></body>";
    let stamped = inject_all(doc.as_bytes(), EL.into(), Some("abc".into()));
    let s = std::str::from_utf8(&stamped).expect("utf8");
    assert_eq!(s.matches("nonce=\"abc\"").count(), 2, "{s}");
    assert!(s.contains(EL), "our element keeps its own nonce: {s}");
    let plain = inject_all(doc.as_bytes(), EL.into(), None);
    assert!(!std::str::from_utf8(&plain).expect("utf8").contains("abc"));
}

fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).expect("response");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

fn names(r: &ResponseHeader) -> Vec<String> {
    let mut n: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
    n.sort();
    n
}

#[test]
fn html_responses_lose_length_and_validators() {
    let mut r = resp(
        200,
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", "1234"),
            ("etag", "\"x\""),
            ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("x-app", "kept"),
        ],
    );
    assert_eq!(
        prepare(&mut r, false, true).expect("prepare"),
        Some(Encoding::Identity)
    );
    assert_eq!(
        names(&r),
        [
            "cache-control",
            "content-type",
            "transfer-encoding",
            "x-app"
        ]
    );
    assert_eq!(r.headers["transfer-encoding"], "chunked");
    assert_eq!(r.headers["cache-control"], "no-store");

    let mut gz = resp(
        200,
        &[
            ("content-type", "TEXT/HTML"),
            ("content-encoding", "gzip"),
            ("content-length", "9"),
        ],
    );
    assert_eq!(
        prepare(&mut gz, false, true).expect("prepare"),
        Some(Encoding::Gzip)
    );
    assert!(gz.headers.get("content-encoding").is_none());
    assert!(gz.headers.get("content-length").is_none());

    // HEAD: no body follows, so no chunked framing either.
    let mut head = resp(
        200,
        &[("content-type", "text/html"), ("content-length", "10")],
    );
    assert!(prepare(&mut head, true, true).expect("prepare").is_some());
    assert!(head.headers.get("transfer-encoding").is_none());
    assert!(head.headers.get("content-length").is_none());

    // An HTTP/1.0 client cannot read chunks: the body then ends with the connection.
    let mut old = resp(
        200,
        &[("content-type", "text/html"), ("content-length", "10")],
    );
    assert!(prepare(&mut old, false, false).expect("prepare").is_some());
    assert!(old.headers.get("transfer-encoding").is_none());
    assert!(old.headers.get("content-length").is_none());
}

#[test]
fn other_responses_pass_untouched() {
    for (status, headers) in [
        (304, &[("content-type", "text/html"), ("etag", "\"x\"")][..]),
        (204, &[("content-type", "text/html")][..]),
        (
            206,
            &[("content-type", "text/html"), ("content-length", "5")][..],
        ),
        (
            404,
            &[("content-type", "text/html"), ("content-length", "5")][..],
        ),
        (
            302,
            &[("content-type", "text/html"), ("location", "/x")][..],
        ),
        (
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "2"),
            ][..],
        ),
        (200, &[("content-type", "text/plain")][..]),
        (200, &[("content-length", "2")][..]),
        (
            200,
            &[
                ("content-type", "text/html"),
                ("content-encoding", "br"),
                ("content-length", "5"),
            ][..],
        ),
    ] {
        let mut r = resp(status, headers);
        let before = names(&r);
        assert_eq!(
            prepare(&mut r, false, true).expect("prepare"),
            None,
            "{status} {headers:?}"
        );
        assert_eq!(names(&r), before, "{status} {headers:?}");
    }
}

#[test]
fn stops_rewriting_after_the_element_and_passes_the_rest_as_is() {
    // <head> well past the first slice, and at every offset around a slice boundary.
    // "<head>" starts at pad + 13: put it across the 256-byte slice boundaries.
    let pads = (0..12)
        .flat_map(|d| [256 - 19 + d, 1024 - 19 + d])
        .chain([0, 3000]);
    for pad in pads {
        let comment = format!("<!--{}-->", "c".repeat(pad));
        let tail = "<p>after</p><script>if (a < b && c > d) {}</script><HEAD>not again</HEAD>";
        let doc = format!(
            "{comment}<html><head><title>x</title></head><body>{}{tail}</body></html>",
            "y".repeat(5000)
        );
        let want = format!(
            "{comment}<html><head>{EL}<title>x</title></head><body>{}{tail}</body></html>",
            "y".repeat(5000)
        );
        assert_eq!(whole(&doc), want, "pad {pad}");
        let chunks: Vec<&[u8]> = doc.as_bytes().chunks(700).collect();
        assert_eq!(
            run(&chunks, Encoding::Identity).0,
            want,
            "pad {pad}, chunks of 700"
        );
    }
    // An unfinished tag at the moment rewriting stops is passed on as written.
    let doc = "<head></head><body><div class=\"a\"></div></body>";
    for cut in 1..doc.len() {
        let (a, b) = doc.as_bytes().split_at(cut);
        assert_eq!(
            run(&[a, b], Encoding::Identity).0,
            format!("<head>{EL}</head><body><div class=\"a\"></div></body>"),
            "cut at {cut}"
        );
    }
}

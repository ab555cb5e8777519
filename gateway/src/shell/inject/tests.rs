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
        inj.filter(&mut body, i + 1 == chunks.len())
            .expect("filter");
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
    // Corrupt gzip is an error (the response is cut off), not a hang or a panic.
    let mut inj = Injector::new(EL.to_string(), None, Encoding::Gzip);
    let mut body = Some(Bytes::from_static(b"not gzip at all"));
    assert!(inj.filter(&mut body, true).is_err());
}

#[test]
fn stamps_nonces_on_builtin_scripts_only_when_asked() {
    let doc = "<head><script src=\"/a.js\"></script></head><body><script>1</script></body>";
    let stamped = inject_all(doc.as_bytes(), EL.into(), Some("abc".into())).expect("inject");
    let s = std::str::from_utf8(&stamped).expect("utf8");
    assert_eq!(s.matches("nonce=\"abc\"").count(), 2, "{s}");
    assert!(s.contains(EL), "our element keeps its own nonce: {s}");
    let plain = inject_all(doc.as_bytes(), EL.into(), None).expect("inject");
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
fn html_responses_get_the_new_length_and_lose_validators() {
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
        prepare(&mut r, false, true, 10).expect("prepare"),
        Some(Encoding::Identity)
    );
    // The element goes in exactly once: the length is known.
    assert_eq!(
        names(&r),
        ["cache-control", "content-length", "content-type", "x-app"]
    );
    assert_eq!(r.headers["content-length"], "1244");
    assert_eq!(r.headers["cache-control"], "no-store");

    // No length: chunked for HTTP/1.1.
    let mut unknown = resp(200, &[("content-type", "text/html")]);
    assert!(prepare(&mut unknown, false, true, 10)
        .expect("prepare")
        .is_some());
    assert_eq!(unknown.headers["transfer-encoding"], "chunked");
    // Already chunked: stays so, once.
    let mut chunked = resp(
        200,
        &[
            ("content-type", "text/html"),
            ("transfer-encoding", "chunked"),
        ],
    );
    assert!(prepare(&mut chunked, false, true, 10)
        .expect("prepare")
        .is_some());
    assert_eq!(
        chunked.headers.get_all("transfer-encoding").iter().count(),
        1
    );
    assert!(chunked.headers.get("content-length").is_none());

    // Gzip: the inflated length is unknown, so chunked.
    let mut gz = resp(
        200,
        &[
            ("content-type", "TEXT/HTML"),
            ("content-encoding", "gzip"),
            ("content-length", "9"),
        ],
    );
    assert_eq!(
        prepare(&mut gz, false, true, 10).expect("prepare"),
        Some(Encoding::Gzip)
    );
    assert!(gz.headers.get("content-encoding").is_none());
    assert!(gz.headers.get("content-length").is_none());
    assert_eq!(gz.headers["transfer-encoding"], "chunked");

    // HEAD: the length the GET would have, no chunked framing.
    let mut head = resp(
        200,
        &[("content-type", "text/html"), ("content-length", "10")],
    );
    assert!(prepare(&mut head, true, true, 10)
        .expect("prepare")
        .is_some());
    assert!(head.headers.get("transfer-encoding").is_none());
    assert_eq!(head.headers["content-length"], "20");

    // An HTTP/1.0 client cannot read chunks: without a length the body ends with the connection.
    let mut old = resp(
        200,
        &[("content-type", "text/html"), ("content-encoding", "gzip")],
    );
    assert!(prepare(&mut old, false, false, 10)
        .expect("prepare")
        .is_some());
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
            prepare(&mut r, false, true, 10).expect("prepare"),
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

#[test]
fn output_length_is_input_plus_element() {
    for doc in [
        "<html><head></head><body></body></html>",
        "<body>no head</body>",
        "neither",
        "<head>\u{e9}\u{2028} non-ascii \u{1f600}</head>",
    ] {
        let (out, _) = run(&[doc.as_bytes()], Encoding::Identity);
        assert_eq!(out.len(), doc.len() + EL.len(), "{doc}");
    }
    // Invalid UTF-8 passes byte for byte.
    let raw: &[u8] = b"<head></head><body>\xff\xfe</body>";
    let mut inj = Injector::new(EL.to_string(), None, Encoding::Identity);
    let mut body = Some(Bytes::from_static(raw));
    inj.filter(&mut body, true).expect("filter");
    assert_eq!(body.map_or(0, |b| b.len()), raw.len() + EL.len());
}

/// A gzip bomb: one small compressed chunk that inflates far past the document budget fails
/// the response while inflating, without the inflated bytes ever being held.
#[test]
fn gzip_bombs_are_cut_off_at_the_document_budget() {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(b"<html><head></head><body>").expect("gzip");
    let zeros = vec![b'a'; 1 << 20];
    for _ in 0..(MAX_DOCUMENT_BYTES >> 20) + 4 {
        gz.write_all(&zeros).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < MAX_DOCUMENT_BYTES / 100, "{}", bomb.len());
    for (chunk, end) in [(bomb.len(), true), (bomb.len(), false), (4096, false)] {
        let mut inj = Injector::new(EL.to_string(), None, Encoding::Gzip);
        let mut failed = false;
        let mut out = 0usize;
        let pieces: Vec<&[u8]> = bomb.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let mut body = Some(Bytes::copy_from_slice(piece));
            let last = end && i + 1 == pieces.len();
            match inj.filter(&mut body, last) {
                Ok(()) => out += body.map_or(0, |b| b.len()),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(
            failed,
            "chunks of {chunk}: the bomb was inflated ({out} bytes out)"
        );
        assert!(
            out <= MAX_DOCUMENT_BYTES + EL.len(),
            "chunks of {chunk}: {out} bytes out"
        );
    }
    // An identity document over the budget fails too.
    let big = vec![b'x'; MAX_DOCUMENT_BYTES + 1];
    let mut inj = Injector::new(EL.to_string(), None, Encoding::Identity);
    let mut body = Some(Bytes::from(big));
    assert!(inj.filter(&mut body, false).is_err());
}

/// An attribute that never ends in a tag the rewriter matches (`<head`): lol_html would buffer
/// all of it; past the rewriter's memory budget the response fails instead. (Tags it does not
/// match stream through unbuffered.)
#[test]
fn unterminated_markup_is_bounded() {
    let mut inj = Injector::new(EL.to_string(), None, Encoding::Identity);
    let mut first = Some(Bytes::from_static(b"<html><head data-x=\""));
    inj.filter(&mut first, false).expect("start");
    let filler = Bytes::from(vec![b'a'; 64 << 10]);
    let mut failed = false;
    for _ in 0..(4 * MAX_REWRITER_MEMORY / filler.len()) {
        let mut body = Some(filler.clone());
        if inj.filter(&mut body, false).is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "the rewriter buffered an unterminated attribute without bound"
    );
}

#[test]
fn cut_points_are_the_ends_of_head_and_body_tags() {
    // (input, where the rewriter is cut)
    let cases: [(&[u8], Option<usize>); 9] = [
        (b"<!doctype html><html><head><title>", Some(27)),
        (b"<HEAD\n lang=en>x", Some(15)),
        (b"text <body class=a>", Some(19)),
        (b"<head/>", Some(7)),
        (b"<header><nav>", None),
        (b"<bodyx>", None),
        (b"<html><head", None),
        (b"<html><hea", None),
        (b"no tags at all", None),
    ];
    for (input, want) in cases {
        assert_eq!(
            candidate_end(input),
            want,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

/// `<head>` spelled where it is not a tag (comment, title, attribute value, a longer name) is
/// fed through and the element still lands after the real one, at every chunk split.
#[test]
fn head_lookalikes_are_fed_through_not_matched() {
    let cases = [
        (
            "<!-- <head> --><html><head><title>t</title></head></html>",
            "<!-- <head> --><html><head>",
        ),
        (
            "<title><head></title><head>x",
            "<title><head></title><head>",
        ),
        (
            "<html data-x=\"<head>\"><head data-y=\"a>b\"><p>",
            "<html data-x=\"<head>\"><head data-y=\"a>b\">",
        ),
        (
            "<html><header>h</header><BODY >x",
            "<html><header>h</header>",
        ),
    ];
    for (doc, before) in cases {
        let want = format!("{before}{EL}{}", &doc[before.len()..]);
        assert_eq!(whole(doc), want, "{doc}");
        for cut in 1..doc.len() {
            let (a, b) = doc.as_bytes().split_at(cut);
            assert_eq!(
                run(&[a, b], Encoding::Identity).0,
                want,
                "{doc}: cut at {cut}"
            );
        }
    }
}

/// Pages without a `<head>`, without a `<body>` or without any tag: the fallbacks hold at every
/// chunk split.
#[test]
fn fallbacks_hold_at_every_split() {
    for (doc, want) in [
        (
            "<html><body>x</body></html>",
            format!("<html>{EL}<body>x</body></html>"),
        ),
        (
            "<p>only a fragment</p>",
            format!("<p>only a fragment</p>{EL}"),
        ),
        ("plain text", format!("plain text{EL}")),
    ] {
        for cut in 1..doc.len() {
            let (a, b) = doc.as_bytes().split_at(cut);
            assert_eq!(run(&[a, b], Encoding::Identity).0, want, "{doc}: {cut}");
        }
    }
}

/// Once the element is in, later chunks are handed on as the very same bytes: no copy, no
/// rewriting.
#[test]
fn later_chunks_pass_without_a_copy() {
    let mut inj = Injector::new(EL.to_string(), None, Encoding::Identity);
    let mut first = Some(Bytes::from_static(b"<html><head><title>t</title>"));
    inj.filter(&mut first, false).expect("first");
    assert_eq!(
        first.as_deref(),
        Some(format!("<html><head>{EL}<title>t</title>").as_bytes())
    );
    let rest = Bytes::from(vec![b'r'; 20 << 10]);
    let mut body = Some(rest.clone());
    inj.filter(&mut body, false).expect("rest");
    assert_eq!(body.as_ref().map(|b| b.as_ptr()), Some(rest.as_ptr()));
    let mut last = Some(Bytes::from_static(b"</html>"));
    inj.filter(&mut last, true).expect("end");
    assert_eq!(last.as_deref(), Some(&b"</html>"[..]));
}

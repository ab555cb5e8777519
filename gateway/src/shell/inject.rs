//! Streaming injection of the context element into shell HTML (response body filter): lol_html
//! rewrites each chunk as it passes, gzip is inflated on the fly, nothing is buffered whole.

use bytes::{Bytes, BytesMut};
use flate2::write::MultiGzDecoder;
use http::header::{
    HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    ETAG, LAST_MODIFIED, TRANSFER_ENCODING,
};
use lol_html::html_content::ContentType;
use lol_html::{end, send, MemorySettings, OutputSink, Selector};
use pingora_error::{Error, ErrorType, OrErr, Result};
use pingora_http::ResponseHeader;
use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::sync::{Arc, Mutex};

type Rewriter = send::HtmlRewriter<'static, Sink>;

/// Selectors are parsed once per process, not per response.
static HEAD: LazyLock<Selector> = LazyLock::new(|| selector("head"));
static BODY: LazyLock<Selector> = LazyLock::new(|| selector("body"));
static SCRIPT: LazyLock<Selector> = LazyLock::new(|| selector("script"));

fn selector(css: &str) -> Selector {
    css.parse()
        .unwrap_or_else(|e| panic!("static selector {css:?}: {e}"))
}

/// An element handler on a pre-parsed selector.
fn on<F>(
    sel: &'static Selector,
    handler: F,
) -> (
    Cow<'static, Selector>,
    send::ElementContentHandlers<'static>,
)
where
    F: FnMut(&mut send::Element<'_, '_>) -> lol_html::HandlerResult + Send + 'static,
{
    (
        Cow::Borrowed(sel),
        send::ElementContentHandlers::default().element(handler),
    )
}

/// The rewriter's output, taken after every chunk. Shared with the sink the rewriter owns; the
/// lock is never contended (one request, one task).
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<BytesMut>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if !chunk.is_empty() {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(chunk);
        }
    }
}

impl Sink {
    fn push(&self, raw: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(raw);
    }

    fn reserve(&self, n: usize) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).reserve(n);
    }

    fn take(&self) -> Option<Bytes> {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (!buf.is_empty()).then(|| buf.split().freeze())
    }
}

/// The largest shell document (after inflating) the gateway rewrites: a tenant's shell
/// upstream shares the gateway's memory with every other tenant, so a gzip bomb is cut off at
/// this size (the response fails) instead of inflating whole chunks at once.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// The most memory lol_html may hold for one response (an unterminated 256 MiB attribute, a
/// tag split over many chunks): past it the rewriter fails and so does that one response.
pub const MAX_REWRITER_MEMORY: usize = 1 << 20;

/// Until the element is in, the rewriter is fed through the end of the next tag that may be
/// the injection point (see [`candidate_end`]), so it stops right after `<head>` instead of
/// parsing a whole first chunk; where none is in sight, this much first.
const SLICE: usize = 256;

/// Where to cut `rest` before looking whether the element is in: just after the `>` of the
/// first `<head…` or `<body…` in it (case-insensitive); `None` when none is in sight (or its
/// `>` is in a later chunk). Only a cut point: lol_html still decides what is a tag (a `<head>`
/// in a comment, in `<title>` or in an attribute value is fed through, not matched, and
/// feeding goes on).
fn candidate_end(rest: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = rest[from..].iter().position(|&b| b == b'<') {
        let at = from + i;
        let name = rest.get(at + 1..at + 5);
        let after = rest.get(at + 5).copied();
        let candidate = name
            .is_some_and(|n| n.eq_ignore_ascii_case(b"head") || n.eq_ignore_ascii_case(b"body"))
            && matches!(
                after,
                Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
            );
        if candidate {
            let gt = rest[at + 5..].iter().position(|&b| b == b'>')?;
            return Some(at + 5 + gt + 1);
        }
        from = at + 1;
    }
    None
}

struct Inner {
    rewriter: Option<Rewriter>,
    /// Set by the handler that placed the element. From then on nothing is left to rewrite
    /// (unless nonces are being stamped), so the rewriter is ended and the rest passes as is.
    injected: Arc<AtomicBool>,
    stop_early: bool,
    gunzip: Option<MultiGzDecoder<Bounded>>,
    out: Sink,
    /// Bytes of the (inflated) document in, and out: at the end, out = in + the element.
    bytes_in: usize,
    bytes_out: usize,
    element_len: usize,
}

/// One response's injector. Lives in the request CTX, which must be `Sync`: the `Mutex` is only
/// reached through `get_mut`, so it is never locked.
pub struct Injector {
    inner: Mutex<Inner>,
}

/// Whether the body is gzip that the injector must inflate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Injector {
    /// `element` goes in as the first child of `<head>`; without a `<head>`, before `<body>`;
    /// without either, at the end of the document. With `nonce`, every `<script>` of the
    /// (trusted, built-in) page gets it as its `nonce` attribute.
    pub fn new(element: String, nonce: Option<String>, encoding: Encoding) -> Injector {
        let element_len = element.len();
        let pending = Arc::new(Mutex::new(Some(element)));
        let injected = Arc::new(AtomicBool::new(false));
        let take = |p: &Arc<Mutex<Option<String>>>, flag: &AtomicBool| {
            let html = p.lock().unwrap_or_else(|e| e.into_inner()).take();
            if html.is_some() {
                flag.store(true, Ordering::Relaxed);
            }
            html
        };
        let (p_head, p_body, p_end) = (pending.clone(), pending.clone(), pending);
        let (f_head, f_body) = (injected.clone(), injected.clone());
        let mut settings = send::Settings::new_send()
            .append_element_content_handler(on(&HEAD, move |el| {
                if let Some(html) = take(&p_head, &f_head) {
                    el.prepend(&html, ContentType::Html);
                }
                Ok(())
            }))
            .append_element_content_handler(on(&BODY, move |el| {
                if let Some(html) = take(&p_body, &f_body) {
                    el.before(&html, ContentType::Html);
                }
                Ok(())
            }))
            .append_document_content_handler(end!(move |end| {
                if let Some(html) = p_end.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    end.append(&html, ContentType::Html);
                }
                Ok(())
            }))
            .with_strict(false)
            .with_memory_settings(
                MemorySettings::new().with_max_allowed_memory_usage(MAX_REWRITER_MEMORY),
            );
        let stop_early = nonce.is_none();
        if let Some(nonce) = nonce {
            settings = settings.append_element_content_handler(on(&SCRIPT, move |el| {
                el.set_attribute("nonce", &nonce)?;
                Ok(())
            }));
        }
        let out = Sink::default();
        Injector {
            inner: Mutex::new(Inner {
                rewriter: Some(send::HtmlRewriter::new(settings, out.clone())),
                injected,
                stop_early,
                gunzip: (encoding == Encoding::Gzip)
                    .then(|| MultiGzDecoder::new(Bounded::new(MAX_DOCUMENT_BYTES))),
                out,
                bytes_in: 0,
                bytes_out: 0,
                element_len,
            }),
        }
    }

    /// Rewrite one body chunk in place; on the last one, flush everything. An error (gzip that
    /// does not inflate, a rewriting failure, a length that does not add up) ends the response:
    /// better a cut-off page than a corrupt one.
    pub fn filter(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        let input = body.take().unwrap_or_default();
        let plain = match inner.gunzip.as_mut() {
            None => input,
            Some(gz) => inflate(gz, &input, end).or_err(
                ErrorType::InternalError,
                "shell: inflating the shell upstream's gzip",
            )?,
        };
        inner.bytes_in += plain.len();
        if inner.bytes_in > MAX_DOCUMENT_BYTES {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("shell: document over {MAX_DOCUMENT_BYTES} bytes"),
            );
        }
        if inner.rewriter.is_some() {
            // Room for this chunk and the element at once: the sink never regrows.
            inner.out.reserve(plain.len() + inner.element_len);
            let (result, rest) = inner.rewrite(&plain, end);
            result.or_err(ErrorType::InternalError, "shell: rewriting the shell HTML")?;
            if !rest.is_empty() {
                inner.out.push(rest);
            }
            *body = inner.out.take();
        } else if !plain.is_empty() {
            // Rewriting is over: the rest of the document passes untouched, without a copy.
            *body = Some(plain);
        }
        inner.bytes_out += body.as_ref().map_or(0, Bytes::len);
        // Stamped nonces change lengths; otherwise the element is the only difference.
        if end && inner.stop_early && inner.bytes_out != inner.bytes_in + inner.element_len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "shell: injected body is {} bytes, expected {} + {}",
                    inner.bytes_out, inner.bytes_in, inner.element_len
                ),
            );
        }
        Ok(())
    }
}

impl Inner {
    /// Feed `plain` to the rewriter; returns the tail it did not need to see (after an early
    /// end), which goes out as is.
    fn rewrite<'a>(
        &mut self,
        plain: &'a [u8],
        end: bool,
    ) -> (Result<(), lol_html::errors::RewritingError>, &'a [u8]) {
        let mut rest = plain;
        // No candidate tag left in this chunk: one more slice (a tag begun in the last chunk
        // ends in it), then the rest at once.
        let mut blind = !self.stop_early;
        while let Some(rw) = self.rewriter.as_mut() {
            if rest.is_empty() {
                break;
            }
            let n = match (blind, candidate_end(rest)) {
                (true, _) => rest.len(),
                (false, Some(n)) => n,
                (false, None) => {
                    blind = true;
                    rest.len().min(SLICE)
                }
            };
            if let Err(e) = rw.write(&rest[..n]) {
                return (Err(e), &[]);
            }
            rest = &rest[n..];
            if self.stop_early && self.injected.load(Ordering::Relaxed) {
                // Flushes what the rewriter still holds (an unfinished tag stays as written).
                let ended = self.rewriter.take().map_or(Ok(()), |rw| rw.end());
                return (ended, rest);
            }
        }
        let ended = match (end, self.rewriter.take()) {
            (true, Some(rw)) => rw.end(),
            (false, rw) => {
                self.rewriter = rw;
                Ok(())
            }
            (true, None) => Ok(()),
        };
        (ended, rest)
    }
}

/// Where the gzip decoder writes: refuses to grow past what is left of the document's
/// budget, so inflating stops (with an error) as soon as the budget is spent, whatever one
/// compressed chunk would expand to.
struct Bounded {
    buf: Vec<u8>,
    room: usize,
}

impl Bounded {
    fn new(room: usize) -> Bounded {
        Bounded {
            buf: Vec::new(),
            room,
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.room {
            return Err(std::io::Error::other(format!(
                "inflated shell document over {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        self.room -= data.len();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn inflate(gz: &mut MultiGzDecoder<Bounded>, input: &[u8], end: bool) -> std::io::Result<Bytes> {
    gz.write_all(input)?;
    if end {
        gz.try_finish()?;
    } else {
        gz.flush()?;
    }
    Ok(Bytes::from(std::mem::take(&mut gz.get_mut().buf)))
}

/// Decide from a shell response's header whether its body is injected, and make the header
/// fit the rewritten body, `extra` bytes (the element, inserted exactly once) longer:
/// - an identity body with a `Content-Length` keeps one, `extra` larger (the injector checks
///   the sum at the end and cuts the response off if it does not add up);
/// - otherwise (gzip, or no length) no `Content-Length`: chunked for an HTTP/1.1 client
///   (`chunked`), read to the close by HTTP/1.0, framed by HTTP/2 itself;
/// - no `Content-Encoding` once inflated, no validators (the body differs on every request),
///   and `Cache-Control: no-store`.
///
/// 204, 205, 206, 304 and every other non-2xx, non-HTML, or unknown-encoding response is left
/// untouched (`None`).
pub fn prepare(
    resp: &mut ResponseHeader,
    head_only: bool,
    chunked: bool,
    extra: usize,
) -> Result<Option<Encoding>> {
    let status = resp.status.as_u16();
    if !(200..300).contains(&status) || matches!(status, 204..=206) || !is_html(resp) {
        return Ok(None);
    }
    let encoding = match resp
        .headers
        .get(CONTENT_ENCODING)
        .map(|v| v.as_bytes().trim_ascii())
    {
        None => Encoding::Identity,
        Some(e) if e.is_empty() || e.eq_ignore_ascii_case(b"identity") => Encoding::Identity,
        Some(e) if e.eq_ignore_ascii_case(b"gzip") || e.eq_ignore_ascii_case(b"x-gzip") => {
            Encoding::Gzip
        }
        Some(_) => {
            log::warn!("shell: upstream sent an encoding other than gzip; not injecting");
            return Ok(None);
        }
    };
    let length = match encoding {
        Encoding::Identity if resp.headers.get(TRANSFER_ENCODING).is_none() => resp
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.trim().parse::<usize>().ok()),
        _ => None,
    };
    for name in [
        CONTENT_LENGTH,
        CONTENT_ENCODING,
        ETAG,
        LAST_MODIFIED,
        ACCEPT_RANGES,
    ] {
        // A remove looks in both of Pingora's maps; most of these are usually absent.
        if resp.headers.contains_key(&name) {
            resp.remove_header(&name);
        }
    }
    match length {
        Some(n) => resp.insert_header(CONTENT_LENGTH, n.saturating_add(extra))?,
        None if chunked && !head_only && resp.headers.get(TRANSFER_ENCODING).is_none() => {
            resp.insert_header(TRANSFER_ENCODING, HeaderValue::from_static("chunked"))?
        }
        None => {}
    }
    resp.insert_header(CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
    Ok(Some(encoding))
}

fn is_html(resp: &ResponseHeader) -> bool {
    resp.headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes().trim_ascii();
        v.len() >= 9 && v[..9].eq_ignore_ascii_case(b"text/html")
    })
}

/// Run the injector over a whole document at once (the built-in shell, and tests).
pub fn inject_all(doc: &[u8], element: String, nonce: Option<String>) -> Result<Bytes> {
    let mut inj = Injector::new(element, nonce, Encoding::Identity);
    let mut body = Some(Bytes::copy_from_slice(doc));
    inj.filter(&mut body, true)?;
    Ok(body.unwrap_or_default())
}

#[cfg(test)]
mod tests;

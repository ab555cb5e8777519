//! ACME http-01 answers, first in the request filter (before tenant lookup, auth and HTTPS
//! redirects): `GET /.well-known/acme-challenge/<token>` is answered from the table's
//! `acme_challenges`, which realmctl's ACME client pushes while an order is open.
//!
//! Why from the table rather than by proxying to realmctl: every gateway already holds the
//! table, so the answer needs no path from the data plane back to the control plane (none
//! exists: realmctl reaches the gateways, not the reverse), it survives realmctl being down
//! while the CA validates, and realmctl knows when a gateway can answer — when it reports the
//! table version that carries the entry. The gateway owns the prefix: a token the table does
//! not carry for the request's host is 404, never passed to a tenant's upstream, so nobody
//! but realmctl can answer a CA for a host the platform serves.

use crate::auth::Reply;
use crate::errors::GatewayError;
use crate::tenant::request_host;
use bytes::Bytes;
use http::{header, HeaderValue, Method};
use pingora_http::{RequestHeader, ResponseHeader};
use realmgate_table::host::HostBuf;
use realmgate_table::path::normalise_path;
use realmgate_table::validate::{is_acme_token, CheckedChallenge};
use realmgate_table::AcmeChallenge;
use std::collections::HashMap;
use std::sync::Arc;

/// Where certificate authorities fetch http-01 answers (RFC 8555 §8.3). Requests under it are
/// never redirected nor refused for plain HTTP.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The table's challenges by token. Few and short-lived: a change copies the map (of
/// pointers), which the snapshots before it keep sharing otherwise.
#[derive(Clone, Default)]
pub struct Challenges {
    by_token: Arc<HashMap<Box<str>, Arc<Entry>>>,
}

struct Entry {
    /// The key authorization, the whole response body.
    body: Bytes,
    /// Normalised exact hosts; empty: any host.
    hosts: Box<[Box<str>]>,
    /// Seconds since the Unix epoch.
    expires_at: u64,
}

impl Challenges {
    /// Index a validated table's challenges (`checked[i]` is `wire[i]`'s).
    pub fn build(wire: Vec<AcmeChallenge>, checked: Vec<CheckedChallenge>) -> Challenges {
        let mut ch = Challenges::default();
        for (w, c) in wire.into_iter().zip(checked) {
            ch.upsert(w, c);
        }
        ch
    }

    /// Add the answer for a token, or replace it.
    pub fn upsert(&mut self, wire: AcmeChallenge, checked: CheckedChallenge) {
        let entry = Entry {
            body: Bytes::from(wire.key_authorization),
            hosts: checked
                .hosts
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            expires_at: checked.expires_at,
        };
        Arc::make_mut(&mut self.by_token).insert(wire.token.into_boxed_str(), Arc::new(entry));
    }

    /// Forget the answer for `token`; whether there was one.
    pub fn remove(&mut self, token: &str) -> bool {
        self.by_token.contains_key(token)
            && Arc::make_mut(&mut self.by_token).remove(token).is_some()
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// The answer for `token` on `host` at `now`, if the table carries one.
    fn lookup(&self, token: &str, host: &str, now: u64) -> Option<&Bytes> {
        let e = self.by_token.get(token)?;
        let host_ok = e.hosts.is_empty() || e.hosts.iter().any(|h| **h == *host);
        (host_ok && now < e.expires_at).then_some(&e.body)
    }
}

/// What the gateway makes of a request under the challenge prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the key authorization.
    Serve(Bytes),
    /// 404: no such token for this host (or expired).
    Unknown,
    /// 405: only GET and HEAD.
    Method,
}

/// `None`: not a challenge request (the normal pipeline goes on; a path that does not even
/// normalise is refused there). The path is judged after normalisation, the way routes see
/// it, so `/.well-known/acme-challenge/%41..` is the gateway's too and
/// `/.well-known/acme-challenge/../x` is not. A request with a bad Host is left to the
/// pipeline, which refuses it (400).
pub fn answer(ch: &Challenges, req: &RequestHeader, now: u64) -> Option<Answer> {
    // Cheap test first: almost no request is a challenge.
    if !req.uri.path().contains("/.well-known/") {
        return None;
    }
    let path = normalise_path(req.uri.path()).ok()?;
    let token = path.strip_prefix(ACME_CHALLENGE_PREFIX)?;
    let mut buf = HostBuf::default();
    let host = request_host(req, &mut buf).ok()?;
    if req.method != Method::GET && req.method != Method::HEAD {
        return Some(Answer::Method);
    }
    if !is_acme_token(token) {
        return Some(Answer::Unknown);
    }
    Some(match ch.lookup(token, host, now) {
        Some(body) => Answer::Serve(body.clone()),
        None => Answer::Unknown,
    })
}

/// The response: `text/plain`, never cached (a token answers once, for minutes).
pub fn reply(answer: Answer) -> Result<Reply, GatewayError> {
    let (status, body) = match answer {
        Answer::Serve(body) => (200, body),
        Answer::Unknown => (404, Bytes::from_static(b"no such ACME challenge\n")),
        Answer::Method => (405, Bytes::from_static(b"GET or HEAD only\n")),
    };
    let build = || -> pingora_error::Result<Box<ResponseHeader>> {
        let mut head = ResponseHeader::build(status, Some(4))?;
        head.insert_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )?;
        head.insert_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
        head.insert_header(header::CONTENT_LENGTH, body.len())?;
        if status == 405 {
            head.insert_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"))?;
        }
        Ok(Box::new(head))
    };
    let head = build().map_err(|_| GatewayError::Internal)?;
    Ok(Reply { head, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

    fn challenges(hosts: &[&str], expires_at: u64) -> Challenges {
        let wire = AcmeChallenge {
            token: TOKEN.into(),
            key_authorization: format!("{TOKEN}.thumb"),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            expires_at: String::new(),
        };
        let checked = CheckedChallenge {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            expires_at,
        };
        Challenges::build(vec![wire], vec![checked])
    }

    fn req(method: &str, host: &str, path: &str) -> RequestHeader {
        let mut r = RequestHeader::build(method, path.as_bytes(), None).expect("request");
        r.insert_header("host", host).expect("host");
        r
    }

    #[test]
    fn known_tokens_are_answered_for_their_hosts_until_they_expire() {
        let ch = challenges(&["acme.test"], 100);
        let serve = Some(Answer::Serve(Bytes::from(format!("{TOKEN}.thumb"))));
        let at = |m: &str, host: &str, path: &str, now: u64| answer(&ch, &req(m, host, path), now);
        let p = format!("{ACME_CHALLENGE_PREFIX}{TOKEN}");
        assert_eq!(at("GET", "acme.test", &p, 99), serve);
        assert_eq!(at("HEAD", "ACME.test.:8080", &p, 99), serve);
        // Percent-encoding of unreserved characters is the same path after normalisation.
        let encoded =
            format!("{ACME_CHALLENGE_PREFIX}%4coqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
        assert_eq!(at("GET", "acme.test", &encoded, 99), serve);
        assert_eq!(
            at("GET", "acme.test", &p, 100),
            Some(Answer::Unknown),
            "expired"
        );
        assert_eq!(at("GET", "other.test", &p, 1), Some(Answer::Unknown));
        assert_eq!(at("POST", "acme.test", &p, 1), Some(Answer::Method));
        // Any host when the entry names none.
        let any = challenges(&[], 100);
        assert!(matches!(
            answer(&any, &req("GET", "x.test", &p), 1),
            Some(Answer::Serve(_))
        ));
    }

    #[test]
    fn answers_change_one_token_at_a_time() {
        let before = challenges(&["acme.test"], 100);
        let mut next = before.clone();
        assert!(next.remove(TOKEN));
        assert!(!next.remove(TOKEN));
        assert!(next.lookup(TOKEN, "acme.test", 1).is_none());
        assert!(
            before.lookup(TOKEN, "acme.test", 1).is_some(),
            "the old table answers"
        );
        let wire = AcmeChallenge {
            token: "other-token".into(),
            key_authorization: "other.thumb".into(),
            hosts: vec![],
            expires_at: String::new(),
        };
        let checked = CheckedChallenge {
            hosts: vec![],
            expires_at: 50,
        };
        next.upsert(wire, checked);
        assert_eq!(next.len(), 1);
        assert!(next.lookup("other-token", "any.test", 49).is_some());
        assert!(before.lookup("other-token", "any.test", 49).is_none());
    }

    #[test]
    fn the_prefix_is_the_gateways_and_nothing_else_is() {
        let ch = challenges(&["acme.test"], 100);
        let at = |path: &str| answer(&ch, &req("GET", "acme.test", path), 1);
        for unknown in [
            "/.well-known/acme-challenge/tok-1-not-in-the-table",
            "/.well-known/acme-challenge/short",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/a/b/cccccccccccccccccc",
        ] {
            assert_eq!(at(unknown), Some(Answer::Unknown), "{unknown}");
        }
        for not_ours in [
            "/",
            "/app/x",
            "/.well-known/acme-challenge",
            "/.well-known/acme-challenge/../x",
            "/.well-known/acme-challenge/%2e%2e/x",
            "/x/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0",
            "/.well-known/openid-configuration",
        ] {
            assert_eq!(at(not_ours), None, "{not_ours}");
        }
        // `//` collapses like everywhere else: the same token.
        assert!(matches!(
            at("/.well-known//acme-challenge//LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"),
            Some(Answer::Serve(_))
        ));
        // A bad Host is the pipeline's to refuse.
        let p = format!("{ACME_CHALLENGE_PREFIX}{TOKEN}");
        assert_eq!(answer(&ch, &req("GET", "bad host", &p), 1), None);
    }

    #[test]
    fn replies_are_plain_text_and_never_cached() {
        let r = reply(Answer::Serve(Bytes::from_static(b"t.k"))).expect("reply");
        assert_eq!(r.head.status.as_u16(), 200);
        assert_eq!(r.body, Bytes::from_static(b"t.k"));
        let h = |n: &str| r.head.headers.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(h("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(h("cache-control"), Some("no-store"));
        assert_eq!(h("content-length"), Some("3"));
        assert_eq!(
            reply(Answer::Unknown).expect("404").head.status.as_u16(),
            404
        );
        let m = reply(Answer::Method).expect("405");
        assert_eq!(m.head.status.as_u16(), 405);
        assert_eq!(
            m.head.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some("GET, HEAD")
        );
    }
}

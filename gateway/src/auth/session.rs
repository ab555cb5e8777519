//! The session cookie of `session` routes: tokens sealed with AES-256-GCM under the configured
//! key(s), bound to the tenant (and purpose) as associated data, split across at most
//! [`MAX_CHUNKS`] cookies so every one stays under browsers' 4 KiB limit. Nothing is kept
//! server-side, so any replica with the key reads any session.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use pingora_http::RequestHeader;

use super::cookie;
use serde::{Deserialize, Serialize};

/// Session cookie name over plain HTTP (`__Host-` is prefixed when the request is https), and
/// the login-transaction cookies' prefix: the cookie rules live in [`super::cookie`].
pub use super::cookie::{LOGIN_TX, SESSION};
/// Characters of sealed value per cookie: with name and attributes each `Set-Cookie` stays
/// well under the 4096 bytes browsers keep per cookie.
pub const CHUNK: usize = 3800;
/// Most cookies one session spans (~15 KB of sealed tokens).
pub const MAX_CHUNKS: usize = 4;
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// What a sealed cookie is for; part of the associated data, so one kind cannot stand in for
/// another.
#[derive(Clone, Copy)]
pub enum Purpose {
    Session,
    Login,
}

/// The AEAD keys: the first seals, every one opens (so keys can be rotated).
pub struct SessionKeys {
    ciphers: Vec<Aes256Gcm>,
    /// Made up at start because none was configured.
    pub ephemeral: bool,
}

impl SessionKeys {
    pub fn new(keys: &[[u8; 32]]) -> SessionKeys {
        SessionKeys {
            ciphers: keys.iter().map(|k| Aes256Gcm::new(k.into())).collect(),
            ephemeral: false,
        }
    }

    /// A random key: sessions then neither survive a restart nor span replicas.
    pub fn random() -> SessionKeys {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        SessionKeys {
            ephemeral: true,
            ..SessionKeys::new(&[key])
        }
    }

    /// Seal `plain` for `tenant`: base64url(version ‖ nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, purpose: Purpose, tenant: &str, plain: &[u8]) -> Option<String> {
        let cipher = self.ciphers.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(purpose, tenant);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open a value sealed for this tenant and purpose by any configured key.
    pub fn open(&self, purpose: Purpose, tenant: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let (&version, rest) = raw.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, msg) = rest.split_at(NONCE_LEN);
        let aad = aad(purpose, tenant);
        self.ciphers.iter().find_map(|c| {
            c.decrypt(Nonce::from_slice(nonce), Payload { msg, aad: &aad })
                .ok()
        })
    }
}

fn aad(purpose: Purpose, tenant: &str) -> Vec<u8> {
    let p: &[u8] = match purpose {
        Purpose::Session => b"session",
        Purpose::Login => b"login",
    };
    [b"realmgate/v1/".as_slice(), p, b"/", tenant.as_bytes()].concat()
}

/// A logged-in browser: what the gateway got from the realm, sealed into the cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    /// Tenant id (also bound as associated data).
    pub t: String,
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Access token and its expiry (unix seconds).
    pub at: String,
    pub aexp: u64,
    /// Refresh token and its expiry (0: unknown, trust the realm's answer).
    #[serde(default)]
    pub rt: Option<String>,
    #[serde(default)]
    pub rexp: u64,
    /// ID token, for `id_token_hint` at logout; dropped if the cookie would grow too large.
    #[serde(default)]
    pub it: Option<String>,
    /// The user's name from the access token, for the shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An authorization request in flight, sealed into a short-lived cookie on the callback path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginTx {
    pub t: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub return_to: String,
    pub iat: u64,
}

/// `n` random bytes as base64url (state, nonce, PKCE verifier).
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Cookie names for this request's scheme: `__Host-` prefixed over https (the connection's
/// TLS, or a trusted proxy's word).
pub fn session_name(https: bool) -> &'static str {
    if https {
        "__Host-rg_session"
    } else {
        SESSION
    }
}

/// The session cookie's sealed value, reassembled from its chunks (`None`: absent or
/// incomplete).
pub fn read_session(req: &RequestHeader, https: bool) -> Option<String> {
    let base = session_name(https);
    let mut parts: [Option<&str>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    for (name, value) in cookie::pairs(req) {
        let Some(rest) = name.strip_prefix(base.as_bytes()) else {
            continue;
        };
        let idx = match rest {
            b"" => 0,
            [b'_', n] if (b'1'..b'0' + MAX_CHUNKS as u8).contains(n) => usize::from(n - b'0'),
            _ => continue,
        };
        // Sealed values are base64url: anything else is not a chunk of ours.
        if let Ok(value) = std::str::from_utf8(value) {
            parts[idx] = Some(value);
        }
    }
    let first = parts[0]?;
    let count = first.bytes().next()?.checked_sub(b'0')? as usize;
    if !(1..=MAX_CHUNKS).contains(&count) {
        return None;
    }
    let mut out = String::with_capacity(count * CHUNK);
    out.push_str(&first[1..]);
    for part in &parts[1..count] {
        out.push_str((*part)?);
    }
    Some(out)
}

/// `Set-Cookie` values carrying `sealed` (first chunk prefixed with the chunk count), plus
/// deletions of chunks a previous, longer session may have left. `None` if too large.
pub fn session_cookies(sealed: &str, https: bool) -> Option<Vec<HeaderValue>> {
    let chunks: Vec<&str> = sealed
        .as_bytes()
        .chunks(CHUNK)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    if chunks.is_empty() || chunks.len() > MAX_CHUNKS {
        return None;
    }
    let base = session_name(https);
    let attrs = attributes(https, "/");
    let mut out = Vec::with_capacity(MAX_CHUNKS);
    for i in 0..MAX_CHUNKS {
        let name = chunk_name(base, i);
        let v = match (i, chunks.get(i)) {
            (0, Some(c)) => format!("{name}={}{c}; {attrs}", chunks.len()),
            (_, Some(c)) => format!("{name}={c}; {attrs}"),
            (_, None) => format!("{name}=; Max-Age=0; {attrs}"),
        };
        out.push(HeaderValue::from_str(&v).ok()?);
    }
    Some(out)
}

/// `Set-Cookie` values deleting every session chunk.
pub fn clear_session(https: bool) -> Vec<HeaderValue> {
    let base = session_name(https);
    let attrs = attributes(https, "/");
    (0..MAX_CHUNKS)
        .filter_map(|i| {
            HeaderValue::from_str(&format!("{}=; Max-Age=0; {attrs}", chunk_name(base, i))).ok()
        })
        .collect()
}

fn chunk_name(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_owned()
    } else {
        format!("{base}_{i}")
    }
}

/// HttpOnly, SameSite=Lax, the path; `Secure` on every cookie set over https (a browser
/// drops a Secure cookie set over plain HTTP on a non-local host, so plain HTTP gets none).
pub fn attributes(https: bool, path: &str) -> String {
    if https {
        format!("Path={path}; HttpOnly; SameSite=Lax; Secure")
    } else {
        format!("Path={path}; HttpOnly; SameSite=Lax")
    }
}

/// Name of the login-transaction cookie for `state`.
pub fn tx_name(state: &str) -> String {
    let prefix: String = state.chars().take(12).collect();
    format!("{LOGIN_TX}{prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cookie: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        r.append_header("cookie", cookie).expect("header");
        r
    }

    #[test]
    fn sealed_values_are_bound_to_tenant_and_purpose() {
        let keys = SessionKeys::new(&[[7u8; 32]]);
        let sealed = keys.seal(Purpose::Session, "acme", b"hello").expect("seal");
        assert_eq!(
            keys.open(Purpose::Session, "acme", &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(keys.open(Purpose::Session, "beta", &sealed), None);
        assert_eq!(keys.open(Purpose::Login, "acme", &sealed), None);
        let other = SessionKeys::new(&[[8u8; 32]]);
        assert_eq!(other.open(Purpose::Session, "acme", &sealed), None);
        // Rotation: a new first key still opens values sealed under an older one.
        let rotated = SessionKeys::new(&[[8u8; 32], [7u8; 32]]);
        assert!(rotated.open(Purpose::Session, "acme", &sealed).is_some());
        // Tampering anywhere fails.
        let mut bytes = sealed.into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(keys.open(Purpose::Session, "acme", &tampered), None);
        assert_eq!(keys.open(Purpose::Session, "acme", "!!"), None);
        assert_eq!(keys.open(Purpose::Session, "acme", ""), None);
    }

    #[test]
    fn large_sessions_split_and_reassemble() {
        let sealed = "a".repeat(CHUNK * 2 + 10);
        let set = session_cookies(&sealed, false).expect("fits");
        assert_eq!(set.len(), MAX_CHUNKS);
        for v in &set {
            assert!(v.len() < 4000, "{}", v.len());
            let s = v.to_str().expect("ascii");
            assert!(s.contains("HttpOnly; SameSite=Lax"), "{s}");
            assert!(!s.contains("Secure"), "{s}");
        }
        assert!(set[3].to_str().expect("ascii").contains("Max-Age=0"));
        // What the browser sends back: name=value pairs of the live cookies.
        let header: Vec<String> = set[..3]
            .iter()
            .map(|v| {
                v.to_str()
                    .expect("ascii")
                    .split(';')
                    .next()
                    .expect("pair")
                    .to_owned()
            })
            .collect();
        let r = req(&format!("other=1; {}", header.join("; ")));
        assert_eq!(read_session(&r, false).as_deref(), Some(sealed.as_str()));
        assert!(
            read_session(&r, true).is_none(),
            "TLS uses the __Host- names"
        );
        // A missing chunk is no session.
        let r = req(&format!("{}; {}", header[0], header[2]));
        assert!(read_session(&r, false).is_none());
        assert!(session_cookies(&"a".repeat(CHUNK * MAX_CHUNKS + 1), false).is_none());
        let https = session_cookies("abc", true).expect("fits");
        assert!(https[0]
            .to_str()
            .expect("ascii")
            .starts_with("__Host-rg_session=1abc; Path=/;"));
        assert!(https[0].to_str().expect("ascii").ends_with("Secure"));
    }

    /// Chunks are read whatever other bytes the Cookie header carries (finding 10).
    #[test]
    fn sessions_read_past_non_ascii_cookies() {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        let v = HeaderValue::from_bytes(b"a=\xe9; rg_session=2ab; x=\xff; rg_session_1=cd")
            .expect("value");
        r.append_header("cookie", v).expect("header");
        assert_eq!(read_session(&r, false).as_deref(), Some("abcd"));
        // Chunk numbers beyond the limit, or not numbers, are no chunks.
        for bad in [
            "rg_session=2ab; rg_session_4=cd",
            "rg_session=2ab; rg_session_x=cd",
        ] {
            assert!(read_session(&req(bad), false).is_none(), "{bad}");
        }
    }
}

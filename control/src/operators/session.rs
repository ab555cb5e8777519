//! The console's server-side sessions and sign-ins in flight: random ids (the browser holds
//! only the id, in a `__Host-` cookie), a bounded number of each, idle and absolute
//! timeouts, removed on sign-out. Ids are kept by their SHA-256 digest.

use super::Role;
use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

use super::config::SessionLimits;

/// The session cookie. `__Host-`: Secure, no Domain, Path=/ — no subdomain can set or
/// shadow it.
pub const SESSION_COOKIE: &str = "__Host-realmctl-session";
/// The sign-in in flight: binds the callback to the browser that started it.
pub const LOGIN_COOKIE: &str = "__Host-realmctl-login";
/// How long a sign-in may take at Keycloak.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in flight at once (beyond: the oldest is dropped).
const MAX_PENDING: usize = 1000;

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS's generator failing is not something to serve on.
    if let Err(e) = getrandom::fill(&mut b) {
        panic!("no randomness from the OS: {e}");
    }
    URL_SAFE_NO_PAD.encode(b)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// What a request learns about its session.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub subject: String,
    pub name: String,
    pub role: Role,
    /// Sent back in `x-csrf-token` on every state-changing call.
    pub csrf: String,
    /// Unix ms at which the session ends, used or not.
    pub expires_at_ms: u64,
}

impl SessionView {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &[u8]) -> bool {
        bool::from(Sha256::digest(presented).ct_eq(&Sha256::digest(self.csrf.as_bytes())))
    }
}

struct Session {
    view: SessionView,
    /// For RP-initiated logout (`id_token_hint`); never leaves this process otherwise.
    id_token: String,
    created: Instant,
    used: Instant,
}

pub struct Sessions {
    limits: SessionLimits,
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            by_digest: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.created) < self.limits.absolute
            && now.duration_since(s.used) < self.limits.idle
    }

    /// A new session; returns its id (the cookie's value). At the bound, ended sessions go
    /// first, then the least recently used.
    pub fn create(
        &self,
        subject: String,
        name: String,
        role: Role,
        id_token: String,
    ) -> (String, SessionView) {
        let id = random_token();
        let now = Instant::now();
        let view = SessionView {
            subject,
            name,
            role,
            csrf: random_token(),
            expires_at_ms: crate::time::now_ms()
                + u64::try_from(self.limits.absolute.as_millis()).unwrap_or(u64::MAX),
        };
        let mut map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.limits.max_sessions {
            map.retain(|_, s| self.live(s, now));
        }
        while map.len() >= self.limits.max_sessions {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Session {
                view: view.clone(),
                id_token,
                created: now,
                used: now,
            },
        );
        (id, view)
    }

    /// The live session of `id`, marked used; an ended one is removed.
    pub fn get(&self, id: &str) -> Option<SessionView> {
        let key = digest(id);
        let now = Instant::now();
        let mut map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live(map.get(&key)?, now);
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key)?;
        s.used = now;
        Some(s.view.clone())
    }

    /// End the session of `id`; returns its ID token (for the logout at the realm).
    pub fn remove(&self, id: &str) -> Option<String> {
        let mut map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&digest(id)).map(|s| s.id_token)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A sign-in in flight, keyed by its `state`.
pub struct Pending {
    pub verifier: String,
    pub nonce: String,
    /// Digest of the login cookie's value.
    binding: [u8; 32],
    started: Instant,
}

impl Pending {
    pub fn bound_to(&self, cookie: &str) -> bool {
        bool::from(digest(cookie).ct_eq(&self.binding))
    }
}

#[derive(Default)]
pub struct PendingLogins {
    by_state: Mutex<HashMap<String, Pending>>,
}

impl PendingLogins {
    /// Start one: returns (state, nonce, PKCE verifier, the login cookie's value).
    pub fn start(&self) -> (String, String, String, String) {
        let (state, nonce, verifier, binding) = (
            random_token(),
            random_token(),
            random_token(),
            random_token(),
        );
        let now = Instant::now();
        let mut map = self.by_state.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| now.duration_since(p.started) < LOGIN_TTL);
        while map.len() >= MAX_PENDING {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            state.clone(),
            Pending {
                verifier: verifier.clone(),
                nonce: nonce.clone(),
                binding: digest(&binding),
                started: now,
            },
        );
        (state, nonce, verifier, binding)
    }

    /// Take the sign-in of `state` (once: a replayed callback finds nothing).
    pub fn take(&self, state: &str) -> Option<Pending> {
        let mut map = self.by_state.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(state)
            .filter(|p| p.started.elapsed() < LOGIN_TTL)
    }
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for the session: HttpOnly (no script reads it), Secure, and SameSite=Strict —
/// it is never needed on a request another site starts: the callback from Keycloak (a
/// cross-site navigation) only sets it, and the page then calls the API from its own origin.
pub fn session_cookie(id: &str, max_age: Duration) -> HeaderValue {
    cookie(SESSION_COOKIE, id, "Strict", max_age.as_secs())
}

/// `Set-Cookie` for the sign-in in flight: SameSite=Lax, because it must come back on the
/// top-level redirect from Keycloak to the callback (a cross-site navigation, where Strict
/// cookies are withheld). It carries no authority, only the binding to this browser.
pub fn login_cookie(binding: &str) -> HeaderValue {
    cookie(LOGIN_COOKIE, binding, "Lax", LOGIN_TTL.as_secs())
}

/// `Set-Cookie` that removes cookie `name`.
pub fn clear_cookie(name: &str, same_site: &str) -> HeaderValue {
    cookie(name, "", same_site, 0)
}

fn cookie(name: &str, value: &str, same_site: &str, max_age_s: u64) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={max_age_s}"
    );
    // Names, base64url values and fixed attributes: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> SessionLimits {
        SessionLimits {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(600),
            max_sessions: max,
        }
    }

    #[test]
    fn sessions_are_random_bounded_and_end_on_removal() {
        let s = Sessions::new(limits(2));
        let (a, va) = s.create("sa".into(), "alice".into(), Role::Admin, "t".into());
        let (b, _) = s.create("sb".into(), "bob".into(), Role::Viewer, "t".into());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(va.csrf, a);
        assert_eq!(s.get(&a).expect("live").name, "alice");
        // Full: the least recently used (bob: alice was just read) makes room.
        let (c, _) = s.create("sc".into(), "carol".into(), Role::Viewer, "t".into());
        assert_eq!(s.len(), 2);
        assert!(s.get(&b).is_none() && s.get(&a).is_some() && s.get(&c).is_some());
        assert_eq!(s.remove(&a).as_deref(), Some("t"));
        assert!(s.get(&a).is_none(), "a removed session is refused");
        assert!(s.get("").is_none() && s.get("forged").is_none());
    }

    #[test]
    fn idle_and_absolute_timeouts_end_a_session() {
        let s = Sessions::new(SessionLimits {
            idle: Duration::ZERO,
            ..limits(5)
        });
        let (a, _) = s.create("s".into(), "n".into(), Role::Admin, String::new());
        assert!(s.get(&a).is_none(), "idle past its timeout");
        assert_eq!(s.len(), 0, "and removed");
        let s = Sessions::new(SessionLimits {
            absolute: Duration::ZERO,
            ..limits(5)
        });
        let (a, _) = s.create("s".into(), "n".into(), Role::Admin, String::new());
        assert!(s.get(&a).is_none(), "past its absolute timeout");
    }

    #[test]
    fn csrf_tokens_and_logins_in_flight() {
        let s = Sessions::new(limits(5));
        let (_, v) = s.create("s".into(), "n".into(), Role::Viewer, String::new());
        assert!(v.csrf_matches(v.csrf.as_bytes()));
        assert!(!v.csrf_matches(b"") && !v.csrf_matches(b"x"));
        let p = PendingLogins::default();
        let (state, _, _, binding) = p.start();
        assert!(p.take("other").is_none());
        let got = p.take(&state).expect("pending");
        assert!(got.bound_to(&binding) && !got.bound_to("other"));
        assert!(p.take(&state).is_none(), "a callback is taken once");
    }

    #[test]
    fn cookies_are_host_prefixed_http_only_and_secure() {
        let c = session_cookie("abc", Duration::from_secs(60));
        let c = c.to_str().expect("text");
        assert!(c.starts_with("__Host-realmctl-session=abc; Path=/; Secure; HttpOnly"));
        assert!(c.contains("SameSite=Strict") && !c.contains("Domain"));
        assert!(login_cookie("x")
            .to_str()
            .expect("text")
            .contains("SameSite=Lax"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-realmctl-session=zz ; b=2"),
        );
        assert_eq!(read_cookie(&h, SESSION_COOKIE), Some("zz"));
        assert_eq!(read_cookie(&h, LOGIN_COOKIE), None);
    }
}

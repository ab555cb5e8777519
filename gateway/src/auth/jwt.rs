//! JWT checks on a verified-token cache miss: strict compact-JWS parsing, the algorithm taken
//! from the realm's key (never the header), then the realm's claim rules.

use super::error::AuthError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The only algorithms ever accepted: asymmetric signatures. `none` and HS* never are.
pub const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A realm signing key with the one algorithm it verifies.
pub struct Key {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// A token split and its header checked; the signature is not verified yet.
#[derive(Debug)]
pub struct Parsed<'t> {
    signing_input: &'t str,
    claims: &'t str,
    signature: &'t str,
    pub alg: Algorithm,
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    // Present at all means "you must understand these extensions": we understand none.
    #[serde(default)]
    crit: Option<de::IgnoredAny>,
    // `jwk`, `jku`, `x5u`, `x5c` and anything else are deliberately not read: keys come only
    // from the realm's JWKS.
}

/// Split `token`, decode and check its header. Bounded before any decoding.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, AuthError> {
    if token.len() > max_bytes {
        return Err(AuthError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if header.is_empty() || claims.is_empty() {
        return Err(AuthError::Malformed);
    }
    let header_json = decode_part(header)?;
    check_no_duplicates(&header_json)?;
    let h: Header = serde_json::from_slice(&header_json).map_err(|_| AuthError::BadJson)?;
    let alg = ALLOWED
        .into_iter()
        .find(|a| alg_name(*a) == h.alg)
        .ok_or(AuthError::AlgNotAllowed)?;
    if h.crit.is_some() {
        return Err(AuthError::CritHeader);
    }
    if let Some(typ) = &h.typ {
        let ok = ["JWT", "at+jwt", "application/at+jwt"]
            .iter()
            .any(|t| typ.eq_ignore_ascii_case(t));
        if !ok {
            return Err(AuthError::BadTyp);
        }
    }
    Ok(Parsed {
        signing_input: &token[..header.len() + 1 + claims.len()],
        claims,
        signature,
        alg,
        kid: h.kid,
    })
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// What kind of token the caller expects, and what it must be meant for.
pub enum Expect<'a> {
    /// An access token: `aud` or `azp` names one of `audiences` (or `also`, the login client,
    /// for tokens the gateway obtained itself); `typ`, when present, is `Bearer`.
    Access {
        audiences: &'a [Box<str>],
        also: Option<&'a str>,
    },
    /// An ID token from the gateway's own login: `aud` names the client, `nonce` matches.
    Id { client_id: &'a str, nonce: &'a str },
}

/// The claim rules of one realm at one instant.
pub struct Rules<'a> {
    pub issuer: &'a str,
    pub now: u64,
    pub skew: u64,
    pub expect: Expect<'a>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    pub exp: u64,
    /// For people to read (the shell shows it): `name`, else `preferred_username`; at most
    /// [`MAX_NAME_CHARS`] characters, no control characters.
    pub name: Option<String>,
}

/// Longest user name kept from a token.
pub const MAX_NAME_CHARS: usize = 128;

/// A token's name claim as it may be shown: trimmed, without control characters, bounded.
fn display_name(raw: Option<serde_json::Value>) -> Option<String> {
    let serde_json::Value::String(raw) = raw? else {
        return None;
    };
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct RealmAccess {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(default)]
    nbf: Option<serde_json::Number>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    realm_access: Option<RealmAccess>,
    /// Display claims: a value that is not a string is ignored (see [`display_name`]).
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    preferred_username: Option<serde_json::Value>,
}

impl Parsed<'_> {
    /// Verify the signature with `key` (whose algorithm is the only one tried), then the
    /// claims against `rules`.
    pub fn verify(&self, key: &Key, rules: &Rules<'_>) -> Result<Claims, AuthError> {
        if key.alg != self.alg {
            return Err(AuthError::AlgMismatch);
        }
        if self.signature.is_empty() {
            return Err(AuthError::BadSignature);
        }
        // Syntax first (cheap), signature next (expensive), claim rules only once signed.
        let json = decode_part(self.claims)?;
        check_no_duplicates(&json)?;
        let c: RawClaims = serde_json::from_slice(&json).map_err(|_| AuthError::BadJson)?;
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.signing_input.as_bytes(),
            &key.key,
            key.alg,
        ) {
            Ok(true) => {}
            _ => return Err(AuthError::BadSignature),
        }
        check_claims(c, rules)
    }
}

fn check_claims(c: RawClaims, rules: &Rules<'_>) -> Result<Claims, AuthError> {
    if c.iss.as_deref() != Some(rules.issuer) {
        return Err(AuthError::WrongIssuer);
    }
    let exp = numeric_date(c.exp.as_ref())?.ok_or(AuthError::NoExpiry)?;
    if rules.now >= exp.saturating_add(rules.skew) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = numeric_date(c.nbf.as_ref())? {
        if rules.now.saturating_add(rules.skew) < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    let auds: &[String] = match &c.aud {
        None => &[],
        Some(Audience::One(a)) => std::slice::from_ref(a),
        Some(Audience::Many(a)) => a,
    };
    match &rules.expect {
        Expect::Access { audiences, also } => {
            match c.typ.as_deref() {
                None => {}
                Some(t) if t.eq_ignore_ascii_case("Bearer") => {}
                Some(t) if t.eq_ignore_ascii_case("ID") => return Err(AuthError::IdToken),
                Some(_) => return Err(AuthError::BadTyp),
            }
            let wanted = |name: &str| audiences.iter().any(|a| **a == *name) || *also == Some(name);
            let meant = auds.iter().any(|a| wanted(a)) || c.azp.as_deref().is_some_and(wanted);
            if !meant {
                return Err(AuthError::WrongAudience);
            }
        }
        Expect::Id { client_id, nonce } => {
            if c.typ
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case("ID"))
            {
                return Err(AuthError::BadTyp);
            }
            let for_us = auds.iter().any(|a| a == client_id);
            let azp_ok = c.azp.as_deref().is_none_or(|azp| azp == *client_id);
            if !for_us || !azp_ok {
                return Err(AuthError::WrongAudience);
            }
            let matches = c.nonce.as_deref().is_some_and(|n| {
                subtle::ConstantTimeEq::ct_eq(n.as_bytes(), nonce.as_bytes()).into()
            });
            if !matches {
                return Err(AuthError::WrongNonce);
            }
        }
    }
    let sub = c
        .sub
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::NoSubject)?;
    Ok(Claims {
        sub,
        roles: c.realm_access.unwrap_or_default().roles,
        exp,
        name: display_name(c.name).or_else(|| display_name(c.preferred_username)),
    })
}

/// A NumericDate: a non-negative JSON number of seconds (fractions allowed, truncated).
fn numeric_date(n: Option<&serde_json::Number>) -> Result<Option<u64>, AuthError> {
    let Some(n) = n else { return Ok(None) };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        Some(f) if (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
        _ => Err(AuthError::BadJson),
    }
}

/// Strict base64url without padding: any other character (including `=`) is refused.
fn decode_part(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::BadBase64)
}

/// Refuse JSON whose objects repeat a member name at any depth (`{"alg":"RS256","alg":"none"}`):
/// parsers disagree on which one wins, so no answer is safe.
pub fn check_no_duplicates(json: &[u8]) -> Result<(), AuthError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    match NoDuplicates::deserialize(&mut de).and_then(|_| de.end()) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(AuthError::DuplicateKey),
        Err(_) => Err(AuthError::BadJson),
    }
}

const DUPLICATE: &str = "duplicate member";

struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            seen.push(key);
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

/// Append `item` to a comma-separated header list, percent-encoding `%`, `,` and every byte
/// that is not visible ASCII, so any subject or role name round-trips unambiguously.
pub fn push_header_item(out: &mut Vec<u8>, item: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if !out.is_empty() {
        out.push(b',');
    }
    for &b in item.as_bytes() {
        if b.is_ascii_graphic() && b != b',' && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests;

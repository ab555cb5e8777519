//! The fleet's identity assertion keys, as the table carries them: the wire types, the one
//! way to read a key ([`signing_key`]), and the public keys as a JWKS ([`jwks`]) — what the
//! gateways serve at `/.realmgate/jwks.json` and realmctl at `GET /v1/assertion-keys`.

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use serde::{Deserialize, Serialize};

/// `x-realmgate-assertion`: the header the gateways set on every forwarded request.
pub const HEADER: &str = "x-realmgate-assertion";
/// Where every tenant host serves the public keys.
pub const JWKS_PATH: &str = "/.realmgate/jwks.json";
/// The one signature algorithm.
pub const ALG: &str = "ES256";
/// Longest life of an assertion (`exp - iat`), in seconds.
pub const MAX_LIFETIME_S: u64 = 60;

/// Who signs the assertions and with which keys.
///
/// ```json
/// {"issuer": "realmgate",
///  "keys": [{"kid": "a1", "alg": "ES256", "private_key_pem": "-----BEGIN PRIVATE KEY-----…", "state": "active"},
///           {"kid": "a0", "alg": "ES256", "private_key_pem": "…", "state": "published"}]}
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    /// The assertions' `iss`: the fleet's name, as apps expect it. 1–256 characters, no
    /// control characters.
    pub issuer: String,
    /// 1 to [`MAX_KEYS`] keys, exactly one `active`. Every key is published in the JWKS; the
    /// active one signs.
    pub keys: Vec<AssertionKey>,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish()
    }
}

/// One signing key of the fleet.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionKey {
    /// The JWS `kid`: 1–64 of `A-Za-z0-9`, `.`, `_`, `-`; unique.
    pub kid: String,
    /// `ES256` (the only one, and the default).
    #[serde(default = "default_alg")]
    pub alg: String,
    /// A P-256 private key in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`),
    /// unencrypted, at most 4 KiB. A secret: redacted wherever a table is shown.
    pub private_key_pem: String,
    /// `active` (signs; exactly one) or `published` (in the JWKS only: a key being rotated
    /// out, or in).
    pub state: KeyState,
}

fn default_alg() -> String {
    ALG.to_owned()
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never reaches a log line.
        f.debug_struct("AssertionKey")
            .field("kid", &self.kid)
            .field("state", &self.state)
            .field("private_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Whether a key signs or is only published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Published,
}

/// Most keys in the section, the longest `kid`, issuer and PEM.
pub const MAX_KEYS: usize = 8;
pub const MAX_KID_LEN: usize = 64;
pub const MAX_ISSUER_CHARS: usize = 256;
pub const MAX_PEM_BYTES: usize = 4096;

impl Assertion {
    /// The key that signs (validation guarantees exactly one).
    pub fn active(&self) -> Option<&AssertionKey> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }
}

/// `^[A-Za-z0-9._-]{1,64}$`.
pub fn is_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The signing key of a P-256 private key in PEM (PKCS#8 or SEC1). The error never quotes
/// the key.
pub fn signing_key(pem: &str) -> Result<SigningKey, String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("longer than {MAX_PEM_BYTES} bytes"));
    }
    let secret = if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        SecretKey::from_sec1_pem(pem).map_err(|_| "not a P-256 EC PRIVATE KEY (SEC1) in PEM")?
    } else {
        SecretKey::from_pkcs8_pem(pem)
            .map_err(|_| "not a P-256 PRIVATE KEY (PKCS#8, or SEC1 EC PRIVATE KEY) in PEM")?
    };
    Ok(SigningKey::from(secret))
}

/// A PKCS#8 PEM private key from 32 random bytes; `None` for the rare bytes that are no
/// P-256 scalar (zero, or not below the group order): draw again.
pub fn key_pem_from_bytes(bytes: &[u8; 32]) -> Option<String> {
    let secret = SecretKey::from_slice(bytes).ok()?;
    secret
        .to_pkcs8_pem(LineEnding::LF)
        .ok()
        .map(|pem| pem.as_str().to_owned())
}

/// One public key as a JWK (RFC 7517/7518): `kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// The public half of `key` as a JWK named `kid`.
pub fn public_jwk(kid: &str, key: &SigningKey) -> PublicJwk {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let point = key.verifying_key().to_encoded_point(false);
    let coord = |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b));
    PublicJwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: coord(point.x()).unwrap_or_default(),
        y: coord(point.y()).unwrap_or_default(),
        kid: kid.to_owned(),
        alg: ALG.into(),
        use_: "sig".into(),
    }
}

/// A JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

/// Every key's public half (keys that do not parse are left out: validation refuses them).
pub fn jwks(assertion: Option<&Assertion>) -> Jwks {
    let keys = assertion.map_or(&[][..], |a| &a.keys[..]);
    Jwks {
        keys: keys
            .iter()
            .filter_map(|k| {
                signing_key(&k.private_key_pem)
                    .ok()
                    .map(|s| public_jwk(&k.kid, &s))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_publish_their_public_half() {
        let pem = key_pem_from_bytes(&[7; 32]).expect("a scalar");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = signing_key(&pem).expect("parses");
        let jwk = public_jwk("k1", &key);
        assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("EC", "P-256"));
        assert_eq!((jwk.x.len(), jwk.y.len()), (43, 43));
        assert!(key_pem_from_bytes(&[0; 32]).is_none());
        assert!(key_pem_from_bytes(&[0xff; 32]).is_none());
        let a = Assertion {
            issuer: "realmgate".into(),
            keys: vec![AssertionKey {
                kid: "k1".into(),
                alg: ALG.into(),
                private_key_pem: pem,
                state: KeyState::Active,
            }],
        };
        assert_eq!(jwks(Some(&a)).keys, vec![jwk]);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn kid_charset_and_length() {
        for (kid, ok) in [
            ("a", true),
            ("2026-01-01.A_b", true),
            (&"k".repeat(64), true),
            (&"k".repeat(65), false),
            ("", false),
            ("a b", false),
            ("a/b", false),
            ("ä", false),
        ] {
            assert_eq!(is_kid(kid), ok, "{kid:?}");
        }
    }
}

//! Locally signed JWTs for the auth tests: test-only keys from `tests/fixtures/jwt`, their
//! JWKs, and tokens with any header and claims (including deliberately bad ones).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// A test signing key: fixture name, algorithm, kid.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = crate::workspace_root().join(format!("tests/fixtures/jwt/{name}.pem"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl TestKey {
    /// `name` is a fixture (`rsa1`, `rsa2`, `ec256`, `ec384`, `ed25519`).
    pub fn new(name: &str, alg: Algorithm, kid: &str) -> TestKey {
        let pem = fixture(name);
        let key = match name {
            n if n.starts_with("rsa") => EncodingKey::from_rsa_pem(&pem),
            n if n.starts_with("ec") => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        TestKey {
            kid: kid.into(),
            alg,
            key,
        }
    }

    /// `rsa1` as RS256 under `kid`.
    pub fn rs256(kid: &str) -> TestKey {
        TestKey::new("rsa1", Algorithm::RS256, kid)
    }

    /// The public JWK as a realm publishes it (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("jwk from key");
        jwk.common.key_id = Some(self.kid.clone());
        let mut v = serde_json::to_value(jwk).expect("jwk json");
        v["use"] = json!("sig");
        v
    }

    /// A token with the standard header (`alg`, `typ: JWT`, `kid`) and `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": alg_name(self.alg), "typ": "JWT", "kid": self.kid});
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// A token with exactly this header and claims text.
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg).expect("sign");
        format!("{input}.{sig}")
    }
}

/// HMAC-signed token (for algorithm-confusion attacks).
pub fn sign_hmac(header: &Value, claims: &Value, secret: &[u8], alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(secret), alg)
        .expect("sign");
    format!("{input}.{sig}")
}

/// The public key PEM of `rsa1`, as an attacker would use it for an HS256 secret.
pub fn rsa1_public_pem() -> Vec<u8> {
    let path = crate::workspace_root().join("tests/fixtures/jwt/rsa1.pub.pem");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        _ => "unknown",
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Access-token claims as Keycloak shapes them: `iss`, `sub`, `aud`, `azp`, `exp` in 5 minutes,
/// `typ: Bearer`, realm roles.
pub fn access_claims(issuer: &str, sub: &str, aud: &str) -> Value {
    json!({
        "iss": issuer, "sub": sub, "aud": aud, "azp": "some-client",
        "iat": now(), "exp": now() + 300, "typ": "Bearer",
        "realm_access": {"roles": ["user", "reader"]},
    })
}

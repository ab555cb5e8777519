//! The identity assertion in the cross-process tests: a table's `assertion` section with
//! keys made from fixed seeds, and the app side's check of what an upstream received (the
//! `realmgate-app` SDK, against the JWKS the gateway itself serves).

use serde_json::{json, Value};

/// The issuer every test section names (todos' default).
pub const ISSUER: &str = "realmgate";

/// An `assertion` section: `(kid, seed, active)` per key; the private key is the P-256
/// scalar made of 32 bytes of `seed`.
pub fn section(keys: &[(&str, u8, bool)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, seed, active)| {
            let pem = realmgate_table::assertion::key_pem_from_bytes(&[*seed; 32])
                .expect("a P-256 scalar");
            json!({"kid": kid, "alg": "ES256", "private_key_pem": pem,
                   "state": if *active { "active" } else { "published" }})
        })
        .collect();
    json!({"issuer": ISSUER, "keys": keys})
}

/// A verifier for `pools` with the fixed key set `jwks` (a JWKS document).
pub fn verifier(jwks: &Value, pools: &[&str]) -> realmgate_app::Verifier {
    let set = serde_json::from_value(jwks.clone()).expect("a JWK set");
    let config =
        realmgate_app::VerifierConfig::new("http://unused.invalid/", ISSUER, pools.to_vec());
    realmgate_app::Verifier::with_keys(config, &set)
}

/// The claims of `token`, unverified (what a test reads after verifying it).
pub fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

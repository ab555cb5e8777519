//! Attack and edge tests of JWT checking: every bad input gets a clear reason and never panics.

mod claims;

use super::*;
use crate::auth::jwks::KeySet;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

const ISS: &str = "http://127.0.0.1:8180/realms/acme";
const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 60;

fn pem(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/jwt/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn encoding_key(name: &str) -> EncodingKey {
    let p = pem(name);
    match name {
        n if n.starts_with("rsa") => EncodingKey::from_rsa_pem(&p),
        n if n.starts_with("ec") => EncodingKey::from_ec_pem(&p),
        _ => EncodingKey::from_ed_pem(&p),
    }
    .expect("fixture key")
}

/// The realm's JWKS: one key per (fixture, alg, kid).
fn keyset(keys: &[(&str, Algorithm, &str)]) -> KeySet {
    let jwks: Vec<Value> = keys
        .iter()
        .map(|(name, alg, kid)| {
            let mut jwk = Jwk::from_encoding_key(&encoding_key(name), *alg).expect("jwk");
            jwk.common.key_id = Some((*kid).to_owned());
            serde_json::to_value(jwk).expect("json")
        })
        .collect();
    let doc = json!({ "keys": jwks }).to_string();
    let (set, skipped) = KeySet::parse(doc.as_bytes()).expect("jwks");
    assert!(skipped.is_empty(), "{skipped:?}");
    set
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token with exactly this header and claims text, signed by `key` with `alg`.
fn sign_raw(header: &str, claims: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{sig}")
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "user-1", "aud": "acme-api", "exp": NOW + 300, "typ": "Bearer",
           "realm_access": {"roles": ["user", "admin, root"]}})
}

fn sign(header: Value, claims: Value, key: &str, alg: Algorithm) -> String {
    sign_raw(
        &header.to_string(),
        &claims.to_string(),
        &encoding_key(key),
        alg,
    )
}

fn rs256(claims: Value) -> String {
    sign(
        json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        claims,
        "rsa1",
        Algorithm::RS256,
    )
}

struct Realm {
    keys: KeySet,
    audiences: Vec<Box<str>>,
}

fn realm() -> Realm {
    Realm {
        keys: keyset(&[
            ("rsa1", Algorithm::RS256, "k1"),
            ("rsa2", Algorithm::PS256, "ps"),
            ("ec256", Algorithm::ES256, "ec"),
            ("ec384", Algorithm::ES384, "ec384"),
            ("ed25519", Algorithm::EdDSA, "ed"),
        ]),
        audiences: vec!["acme-api".into()],
    }
}

impl Realm {
    fn check_at(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let parsed = parse(token, 8192)?;
        let key = self.keys.find(parsed.kid.as_deref())?;
        parsed.verify(
            key,
            &Rules {
                issuer: ISS,
                now,
                skew: SKEW,
                expect: Expect::Access {
                    audiences: &self.audiences,
                    also: None,
                },
            },
        )
    }

    fn check(&self, token: &str) -> Result<Claims, AuthError> {
        self.check_at(token, NOW)
    }
}

#[test]
fn a_good_token_passes_with_subject_and_roles() {
    let c = realm().check(&rs256(claims())).expect("valid");
    assert_eq!(c.sub, "user-1");
    assert_eq!(c.roles, ["user", "admin, root"]);
    assert_eq!(c.exp, NOW + 300);
    assert_eq!(c.name, None, "no name claims");
    let mut header = Vec::new();
    for r in &c.roles {
        push_header_item(&mut header, r);
    }
    assert_eq!(header, b"user,admin%2C%20root");
}

#[test]
fn every_asymmetric_algorithm_verifies_with_its_own_key() {
    let r = realm();
    for (key, alg, kid) in [
        ("rsa2", Algorithm::PS256, "ps"),
        ("ec256", Algorithm::ES256, "ec"),
        ("ec384", Algorithm::ES384, "ec384"),
        ("ed25519", Algorithm::EdDSA, "ed"),
    ] {
        let t = sign(
            json!({"alg": alg_name(alg), "kid": kid}),
            claims(),
            key,
            alg,
        );
        assert!(r.check(&t).is_ok(), "{alg:?}");
    }
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let set = keyset(&[("rsa1", alg, "k")]);
        let t = sign(
            json!({"alg": alg_name(alg), "kid": "k"}),
            claims(),
            "rsa1",
            alg,
        );
        let p = parse(&t, 8192).expect("parse");
        let rules = Rules {
            issuer: ISS,
            now: NOW,
            skew: SKEW,
            expect: Expect::Access {
                audiences: &["acme-api".into()],
                also: None,
            },
        };
        assert!(
            p.verify(set.find(Some("k")).expect("key"), &rules).is_ok(),
            "{alg:?}"
        );
    }
}

#[test]
fn alg_none_in_any_spelling_is_refused() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "k1"}).to_string();
        let unsigned = format!(
            "{}.{}.",
            b64(header.as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        assert_eq!(
            realm().check(&unsigned).err(),
            Some(AuthError::AlgNotAllowed),
            "{alg}"
        );
        let with_sig = format!("{unsigned}c2ln");
        assert_eq!(
            realm().check(&with_sig).err(),
            Some(AuthError::AlgNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn rs_to_hs_confusion_is_refused() {
    // HMAC keyed with the realm's public key, in every form an attacker might try.
    let public_pem = std::fs::read(format!(
        "{}/../tests/fixtures/jwt/rsa1.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("public key");
    for secret in [public_pem.as_slice(), b"k1".as_slice()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = sign_raw(
                &json!({"alg": alg_name(alg), "kid": "k1"}).to_string(),
                &claims().to_string(),
                &EncodingKey::from_secret(secret),
                alg,
            );
            assert_eq!(realm().check(&t).err(), Some(AuthError::AlgNotAllowed));
            // Claiming RS256 while carrying an HMAC: the signature simply fails.
            let h = json!({"alg": "RS256", "kid": "k1"}).to_string();
            let hmac = t.rsplit('.').next().expect("sig");
            let forged = format!(
                "{}.{}.{hmac}",
                b64(h.as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            assert_eq!(realm().check(&forged).err(), Some(AuthError::BadSignature));
        }
    }
}

#[test]
fn empty_and_zero_signatures_fail() {
    let t = rs256(claims());
    let (input, _) = t.rsplit_once('.').expect("parts");
    assert_eq!(
        realm().check(&format!("{input}.")).err(),
        Some(AuthError::BadSignature)
    );
    // ECDSA with r = s = 0 (the "psychic signature" of CVE-2022-21449).
    let h = json!({"alg": "ES256", "kid": "ec"}).to_string();
    let input = format!(
        "{}.{}",
        b64(h.as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let zero = format!("{input}.{}", b64(&[0u8; 64]));
    assert_eq!(realm().check(&zero).err(), Some(AuthError::BadSignature));
    let h = json!({"alg": "ES384", "kid": "ec384"}).to_string();
    let input = format!(
        "{}.{}",
        b64(h.as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let zero = format!("{input}.{}", b64(&[0u8; 96]));
    assert_eq!(realm().check(&zero).err(), Some(AuthError::BadSignature));
    // A signature that is valid for another token.
    let other = rs256(json!({"iss": ISS, "sub": "other", "aud": "acme-api", "exp": NOW + 300}));
    let spliced = format!(
        "{}.{}",
        t.rsplit_once('.').expect("parts").0,
        other.rsplit('.').next().expect("sig")
    );
    assert_eq!(realm().check(&spliced).err(), Some(AuthError::BadSignature));
}

#[test]
fn embedded_keys_and_key_urls_are_ignored() {
    // Signed with an attacker key (rsa2) and carrying that key: the realm's k1 is used.
    let attacker = Jwk::from_encoding_key(&encoding_key("rsa2"), Algorithm::RS256).expect("jwk");
    for extra in [
        json!({"jwk": attacker}),
        json!({"jku": "http://127.0.0.1:9/jwks"}),
        json!({"x5u": "http://127.0.0.1:9/cert"}),
        json!({"x5c": ["MIIB"]}),
    ] {
        let mut header = json!({"alg": "RS256", "kid": "k1"});
        header
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let t = sign(header, claims(), "rsa2", Algorithm::RS256);
        assert_eq!(realm().check(&t).err(), Some(AuthError::BadSignature));
    }
    // With a kid the realm does not have, nothing is fetched from the token's URLs either.
    let t = sign(
        json!({"alg": "RS256", "kid": "evil", "jku": "http://127.0.0.1:9/"}),
        claims(),
        "rsa2",
        Algorithm::RS256,
    );
    assert_eq!(realm().check(&t).err(), Some(AuthError::UnknownKid));
}

#[test]
fn kids_are_opaque_map_keys() {
    for kid in [
        "../../dev/null",
        "' OR 1=1--",
        "",
        "k1\u{0}",
        "K1",
        "k1 ",
        "%6B1",
    ] {
        let t = sign(
            json!({"alg": "RS256", "kid": kid}),
            claims(),
            "rsa1",
            Algorithm::RS256,
        );
        assert_eq!(
            realm().check(&t).err(),
            Some(AuthError::UnknownKid),
            "{kid:?}"
        );
    }
    let t = sign(json!({"alg": "RS256"}), claims(), "rsa1", Algorithm::RS256);
    assert_eq!(realm().check(&t).err(), Some(AuthError::NoKid));
    let t = sign(
        json!({"alg": "RS256", "kid": 7}),
        claims(),
        "rsa1",
        Algorithm::RS256,
    );
    assert_eq!(realm().check(&t).err(), Some(AuthError::BadJson));
}

#[test]
fn algorithm_comes_from_the_key() {
    // k1 is an RS256 key: a PS256 or RS512 header does not switch it.
    for alg in [Algorithm::PS256, Algorithm::RS512] {
        let t = sign(
            json!({"alg": alg_name(alg), "kid": "k1"}),
            claims(),
            "rsa1",
            alg,
        );
        assert_eq!(
            realm().check(&t).err(),
            Some(AuthError::AlgMismatch),
            "{alg:?}"
        );
    }
    let t = sign(
        json!({"alg": "ES256", "kid": "k1"}),
        claims(),
        "ec256",
        Algorithm::ES256,
    );
    assert_eq!(realm().check(&t).err(), Some(AuthError::AlgMismatch));
}

#[test]
fn malformed_tokens() {
    let r = realm();
    let good = rs256(claims());
    let (h, rest) = good.split_once('.').expect("parts");
    let cases: Vec<(String, AuthError)> = vec![
        ("x".repeat(8193), AuthError::TooLarge),
        (String::new(), AuthError::Malformed),
        ("abc".into(), AuthError::Malformed),
        ("a.b".into(), AuthError::Malformed),
        (format!("{good}.x"), AuthError::Malformed),
        (format!(".{rest}"), AuthError::Malformed),
        (format!("{h}=.{rest}"), AuthError::BadBase64),
        (
            format!("{}+.{rest}", &h[..h.len() - 1]),
            AuthError::BadBase64,
        ),
        (
            format!("{h}.{}", rest.replacen('.', "/.", 1)),
            AuthError::BadBase64,
        ),
        (
            format!("{h}.{}", rest.replacen('.', "=.", 1)),
            AuthError::BadBase64,
        ),
        (format!("{}.{rest}", b64(b"not json")), AuthError::BadJson),
        (format!("{}.{rest}", b64(b"[1,2]")), AuthError::BadJson),
        (
            format!("{}.{rest}", b64(b"{\"alg\":\"RS256\"} x")),
            AuthError::BadJson,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(r.check(&token).err(), Some(want), "{:.80}", token);
    }
    // Bad base64 in the claims or signature of a well-signed-looking token.
    let (input, sig) = good.rsplit_once('.').expect("parts");
    assert_eq!(
        r.check(&format!("{input}.{sig}==")).err(),
        Some(AuthError::BadSignature)
    );
    let (hdr, _) = input.split_once('.').expect("parts");
    assert_eq!(
        r.check(&format!("{hdr}.%%%.{sig}")).err(),
        Some(AuthError::BadBase64)
    );
}

#[test]
fn duplicate_members_are_refused() {
    let r = realm();
    let key = encoding_key("rsa1");
    let good_claims = claims().to_string();
    let t = sign_raw(
        r#"{"alg":"RS256","kid":"k1","alg":"none"}"#,
        &good_claims,
        &key,
        Algorithm::RS256,
    );
    assert_eq!(r.check(&t).err(), Some(AuthError::DuplicateKey));
    let t = sign_raw(
        r#"{"alg":"RS256","kid":"k1","kid":"k2"}"#,
        &good_claims,
        &key,
        Algorithm::RS256,
    );
    assert_eq!(r.check(&t).err(), Some(AuthError::DuplicateKey));
    let header = r#"{"alg":"RS256","kid":"k1"}"#;
    let dup_sub = good_claims.replacen('{', r#"{"sub":"admin","#, 1);
    assert_eq!(
        r.check(&sign_raw(header, &dup_sub, &key, Algorithm::RS256))
            .err(),
        Some(AuthError::DuplicateKey)
    );
    // Escapes that decode to the same name count too, and so do nested objects.
    let escaped = good_claims.replacen('{', r#"{"\u0073ub":"admin","#, 1);
    assert_eq!(
        r.check(&sign_raw(header, &escaped, &key, Algorithm::RS256))
            .err(),
        Some(AuthError::DuplicateKey)
    );
    let nested = good_claims.replacen(r#""roles""#, r#""roles":[],"roles""#, 1);
    assert_eq!(
        r.check(&sign_raw(header, &nested, &key, Algorithm::RS256))
            .err(),
        Some(AuthError::DuplicateKey)
    );
}

#[test]
fn random_garbage_never_panics() {
    let r = realm();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"";
    let good = rs256(claims());
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..3000 {
        let token: String = if i % 2 == 0 {
            (0..rng.usize(0..300))
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect()
        } else {
            // Mutate one byte of a good token.
            let mut b = good.clone().into_bytes();
            let at = rng.usize(..b.len());
            b[at] = alphabet[rng.usize(..alphabet.len())];
            String::from_utf8(b).expect("ascii")
        };
        let res = r.check(&token);
        assert!(token == good || res.is_err(), "{token}");
    }
}

#[test]
fn the_name_comes_from_name_then_preferred_username_cleaned_and_bounded() {
    let name_of = |extra: Value| {
        let mut c = claims();
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        realm().check(&rs256(c)).expect("valid").name
    };
    assert_eq!(
        name_of(json!({"name": "Ada Lovelace", "preferred_username": "ada"})).as_deref(),
        Some("Ada Lovelace")
    );
    assert_eq!(
        name_of(json!({"preferred_username": "ada"})).as_deref(),
        Some("ada")
    );
    assert_eq!(
        name_of(json!({"name": "  \u{7} ", "preferred_username": "ada"})).as_deref(),
        Some("ada"),
        "a blank name falls back"
    );
    assert_eq!(
        name_of(json!({"name": "Eve\n<b>"})).as_deref(),
        Some("Eve<b>"),
        "control characters dropped (HTML is the shell's to escape)"
    );
    let long = name_of(json!({"name": "é".repeat(500)})).expect("name");
    assert_eq!(long.chars().count(), MAX_NAME_CHARS);
    // A display claim of another type is ignored, not a reason to refuse the token.
    assert_eq!(
        name_of(json!({"name": 42, "preferred_username": "ada"})).as_deref(),
        Some("ada")
    );
}

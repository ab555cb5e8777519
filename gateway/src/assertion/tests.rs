//! The signer, its cache and its JWKS: claims per principal, reuse while fresh, a bounded
//! cache, and public keys only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use realmgate_table::assertion::{key_pem_from_bytes, AssertionKey, KeyState};
use serde_json::json;

fn section(keys: &[(&str, u8, KeyState)]) -> Assertion {
    Assertion {
        issuer: "realmgate-test".into(),
        keys: keys
            .iter()
            .map(|(kid, seed, state)| AssertionKey {
                kid: (*kid).into(),
                alg: "ES256".into(),
                private_key_pem: key_pem_from_bytes(&[*seed; 32]).expect("scalar"),
                state: *state,
            })
            .collect(),
    }
}

fn signer() -> Arc<Signer> {
    Signer::compile(Some(&section(&[
        ("new", 1, KeyState::Active),
        ("old", 2, KeyState::Published),
    ])))
    .expect("signer")
}

/// Verify `token` with the signer's own JWKS, as an app would.
fn verify(signer: &Signer, token: &str, aud: &str) -> serde_json::Value {
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&signer.jwks).expect("jwks");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("known kid");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&["realmgate-test"]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).expect("key"), &v)
        .expect("valid")
        .claims
}

const ROLES: &[Box<str>] = &[];

#[test]
fn claims_per_principal() {
    let s = signer();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let roles: Vec<Box<str>> = vec!["user".into(), "admin".into()];
    let cases = [
        (Principal::Public, serde_json::json!({"auth": "public"})),
        (
            Principal::Realm {
                via: Via::Jwt,
                sub: "u-1",
                roles: &roles,
            },
            serde_json::json!({"auth": "jwt", "sub": "u-1", "roles": ["user", "admin"]}),
        ),
        (
            Principal::Realm {
                via: Via::Session,
                sub: "u-2",
                roles: ROLES,
            },
            serde_json::json!({"auth": "session", "sub": "u-2", "roles": []}),
        ),
        (
            Principal::ApiKey {
                key_id: "k1",
                namespace: Some("@acme"),
            },
            serde_json::json!({"auth": "api_key", "key_id": "k1", "namespace": "@acme"}),
        ),
        (
            Principal::ApiKey {
                key_id: "k2",
                namespace: None,
            },
            serde_json::json!({"auth": "api_key", "key_id": "k2"}),
        ),
    ];
    for (principal, expected) in cases {
        let subject = Subject {
            tenant: "acme",
            pool: "app",
            principal,
        };
        let token = s.sign(&subject, now).expect("signed");
        assert_eq!(
            jsonwebtoken::decode_header(&token)
                .expect("h")
                .kid
                .as_deref(),
            Some("new")
        );
        let claims = verify(&s, &token, "app");
        assert_eq!(claims["iss"], "realmgate-test");
        assert_eq!(claims["aud"], "app");
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["exp"], now + 60);
        assert_eq!(claims["jti"].as_str().map(str::len), Some(32));
        for (k, v) in expected.as_object().expect("object") {
            assert_eq!(&claims[k], v, "{k} of {principal:?}");
        }
        for absent in ["sub", "roles", "key_id", "namespace"] {
            if expected.get(absent).is_none() {
                assert!(claims.get(absent).is_none(), "{absent} in {claims}");
            }
        }
    }
}

#[test]
fn jwks_publishes_every_key_and_no_private_part() {
    let s = signer();
    let jwks: serde_json::Value = serde_json::from_slice(&s.jwks).expect("json");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["new", "old"]);
    assert!(jwks["keys"][0].get("d").is_none());
    assert!(Signer::compile(None).is_none());
}

#[test]
fn cached_per_subject_and_reused_until_twenty_seconds_remain() {
    let s = signer();
    let cache = Assertions::new(100);
    let now = 1_900_000_000;
    let public = Subject {
        tenant: "acme",
        pool: "app",
        principal: Principal::Public,
    };
    let (first, fresh) = cache.header(&s, &public, now).expect("minted");
    assert!(fresh);
    let (again, fresh) = cache.header(&s, &public, now + 39).expect("hit");
    assert!(!fresh);
    assert_eq!(first, again);
    // Another pool, tenant or principal never gets this one.
    for other in [
        Subject {
            pool: "other",
            ..public
        },
        Subject {
            tenant: "beta",
            ..public
        },
        Subject {
            principal: Principal::ApiKey {
                key_id: "k",
                namespace: None,
            },
            ..public
        },
    ] {
        let (v, fresh) = cache.header(&s, &other, now).expect("minted");
        assert!(fresh && v != first);
    }
    // With 20 s left it is no longer handed out.
    let (later, fresh) = cache.header(&s, &public, now + 40).expect("minted");
    assert!(fresh && later != first);
    // A rotated key (another signer) mints its own.
    let rotated = Signer::compile(Some(&section(&[("newer", 3, KeyState::Active)]))).expect("s");
    let (_, fresh) = cache.header(&rotated, &public, now + 41).expect("minted");
    assert!(fresh);
}

#[test]
fn the_cache_is_bounded_under_a_flood_of_identities() {
    let s = signer();
    let cache = Assertions::new(16);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let subs: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
    for sub in &subs {
        let subject = Subject {
            tenant: "acme",
            pool: "app",
            principal: Principal::Realm {
                via: Via::Jwt,
                sub,
                roles: ROLES,
            },
        };
        cache.header(&s, &subject, now).expect("minted");
    }
    assert!(cache.entries() <= 16, "{} entries", cache.entries());
}

#[test]
fn a_shared_slot_never_hands_one_identity_another_s_assertion() {
    // One slot: every identity lands in it, so only the field-by-field comparison keeps
    // them apart.
    let s = signer();
    let cache = Assertions::new(1);
    let now = 1_900_000_000;
    let admin: &[Box<str>] = &["admin".into()];
    let viewer: &[Box<str>] = &["viewer".into()];
    let realm = |sub, roles, via| Subject {
        tenant: "acme",
        pool: "app",
        principal: Principal::Realm { via, sub, roles },
    };
    let subjects = [
        realm("alice", admin, Via::Jwt),
        realm("alice", viewer, Via::Jwt),
        realm("alice", admin, Via::Session),
        realm("bob", admin, Via::Jwt),
        Subject {
            tenant: "acme",
            pool: "app",
            principal: Principal::ApiKey {
                key_id: "k1",
                namespace: Some("crm"),
            },
        },
        Subject {
            tenant: "acme",
            pool: "app",
            principal: Principal::ApiKey {
                key_id: "k1",
                namespace: None,
            },
        },
    ];
    for (i, subject) in subjects.iter().enumerate() {
        let (value, _) = cache.header(&s, subject, now).expect("minted");
        let claims = verify(&s, value.to_str().expect("ascii"), "app");
        let want = match subject.principal {
            Principal::Realm { sub, roles, via } => json!({
                "sub": sub, "roles": roles.iter().map(|r| &**r).collect::<Vec<_>>(),
                "auth": if via == Via::Jwt { "jwt" } else { "session" },
            }),
            Principal::ApiKey { key_id, namespace } => {
                json!({"key_id": key_id, "namespace": namespace, "auth": "api_key"})
            }
            Principal::Public => json!({}),
        };
        for (k, v) in want.as_object().expect("object") {
            assert_eq!(&claims[k], v, "subject {i}: claim {k}");
        }
        // The same identity again, right away, is the cached one.
        let (again, fresh) = cache.header(&s, subject, now).expect("hit");
        assert!(!fresh, "subject {i}");
        assert_eq!(again, value);
    }
}

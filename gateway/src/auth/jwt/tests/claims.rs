//! Claim rules of JWT checking: exp/nbf edges with the clock skew, issuer, audience, type,
//! subject, and the ID-token rules of the login.

use super::*;

#[test]
fn exp_and_nbf_edges() {
    let r = realm();
    let with = |extra: Value| {
        let mut c = claims();
        c.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        rs256(c)
    };
    // exp: accepted until exp + skew, refused from then on.
    assert!(r
        .check_at(&with(json!({"exp": NOW})), NOW + SKEW - 1)
        .is_ok());
    assert_eq!(
        r.check_at(&with(json!({"exp": NOW})), NOW + SKEW).err(),
        Some(AuthError::Expired)
    );
    assert_eq!(
        r.check(&with(json!({"exp": 0}))).err(),
        Some(AuthError::Expired)
    );
    assert!(r
        .check(&with(json!({"exp": (NOW + 10) as f64 + 0.5})))
        .is_ok());
    for bad in [json!("1900000000"), json!(-1), json!(1e300), json!(null)] {
        let res = r.check(&with(json!({"exp": bad.clone()})));
        assert!(
            matches!(res, Err(AuthError::BadJson | AuthError::NoExpiry)),
            "{bad}: {res:?}"
        );
    }
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    assert_eq!(r.check(&rs256(no_exp)).err(), Some(AuthError::NoExpiry));
    // nbf: accepted from nbf - skew.
    assert!(r.check(&with(json!({"nbf": NOW + SKEW}))).is_ok());
    assert_eq!(
        r.check(&with(json!({"nbf": NOW + SKEW + 1}))).err(),
        Some(AuthError::NotYetValid)
    );
    assert!(r.check(&with(json!({"nbf": NOW - 1000}))).is_ok());
}

#[test]
fn issuer_audience_type_and_subject() {
    let r = realm();
    let with = |extra: Value| {
        let mut c = claims();
        c.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        rs256(c)
    };
    for iss in [
        json!("http://127.0.0.1:8180/realms/beta"),
        json!(format!("{ISS}/")),
        json!("HTTP://127.0.0.1:8180/realms/acme"),
        json!(null),
    ] {
        assert_eq!(
            r.check(&with(json!({"iss": iss.clone()}))).err(),
            Some(AuthError::WrongIssuer),
            "{iss}"
        );
    }
    assert_eq!(
        r.check(&with(json!({"aud": "beta-api"}))).err(),
        Some(AuthError::WrongAudience)
    );
    assert_eq!(
        r.check(&with(json!({"aud": []}))).err(),
        Some(AuthError::WrongAudience)
    );
    assert!(r
        .check(&with(json!({"aud": ["account", "acme-api"]})))
        .is_ok());
    assert!(r
        .check(&with(json!({"aud": "account", "azp": "acme-api"})))
        .is_ok());
    assert_eq!(
        r.check(&with(json!({"typ": "ID"}))).err(),
        Some(AuthError::IdToken)
    );
    assert_eq!(
        r.check(&with(json!({"typ": "Refresh"}))).err(),
        Some(AuthError::BadTyp)
    );
    assert_eq!(
        r.check(&with(json!({"sub": ""}))).err(),
        Some(AuthError::NoSubject)
    );
    let mut no_sub = claims();
    no_sub.as_object_mut().expect("object").remove("sub");
    assert_eq!(r.check(&rs256(no_sub)).err(), Some(AuthError::NoSubject));
    let t = sign(
        json!({"alg": "RS256", "kid": "k1", "typ": "JWE"}),
        claims(),
        "rsa1",
        Algorithm::RS256,
    );
    assert_eq!(r.check(&t).err(), Some(AuthError::BadTyp));
    let t = sign(
        json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}),
        claims(),
        "rsa1",
        Algorithm::RS256,
    );
    assert_eq!(r.check(&t).err(), Some(AuthError::CritHeader));
}

#[test]
fn id_tokens_need_client_and_nonce() {
    let r = realm();
    let id = json!({"iss": ISS, "sub": "u", "aud": "realmgate", "azp": "realmgate", "exp": NOW + 60,
                    "typ": "ID", "nonce": "n-123"});
    let t = rs256(id.clone());
    let check = |nonce: &str, client: &str| {
        let p = parse(&t, 8192).expect("parse");
        p.verify(
            r.keys.find(Some("k1")).expect("key"),
            &Rules {
                issuer: ISS,
                now: NOW,
                skew: SKEW,
                expect: Expect::Id {
                    client_id: client,
                    nonce,
                },
            },
        )
    };
    assert!(check("n-123", "realmgate").is_ok());
    assert_eq!(
        check("n-124", "realmgate").err(),
        Some(AuthError::WrongNonce)
    );
    assert_eq!(
        check("n-123", "other").err(),
        Some(AuthError::WrongAudience)
    );
}

//! Key extraction, lookup, expiry, tenant and namespace decisions.

use super::*;

const SECRET_A: &str = "rgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const SECRET_B: &str = "rgk_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const SECRET_OP: &str = "rgk_OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO";

fn digest(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

fn key(id: &str, secret: &str, tenant: Option<&str>, ns: &[&str]) -> ApiKey {
    ApiKey {
        id: id.into(),
        digest: digest(secret),
        tenant: tenant.map(Into::into),
        namespaces: ns.iter().map(|n| (*n).to_owned()).collect(),
        expires_at: None,
        rate_limit: None,
    }
}

fn keys() -> Keys {
    let list = vec![
        key("ka", SECRET_A, Some("acme"), &["@acme"]),
        key("kb", SECRET_B, Some("beta"), &["*"]),
        key("op", SECRET_OP, None, &["*"]),
        key("orphan", "rgk_x", Some("gone"), &["*"]),
    ];
    let expiry = [Some(2_000), None, None, None];
    Keys::build(list, &expiry, |t| match t {
        "acme" => Some(0),
        "beta" => Some(1),
        _ => None,
    })
}

fn req(headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).expect("request");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

#[test]
fn key_from_either_header() {
    assert_eq!(presented(&req(&[])).expect("ok"), None);
    assert_eq!(
        presented(&req(&[("x-api-key", SECRET_A)])).expect("ok"),
        Some(SECRET_A.as_bytes())
    );
    let bearer = format!("Bearer {SECRET_A}");
    assert_eq!(
        presented(&req(&[("authorization", &bearer)])).expect("ok"),
        Some(SECRET_A.as_bytes())
    );
    // The same key twice is fine; a JWT bearer is not a key.
    assert!(presented(&req(&[("x-api-key", SECRET_A), ("authorization", &bearer)])).is_ok());
    assert_eq!(
        presented(&req(&[("authorization", "Bearer eyJhbGciOi.x.y")])).expect("ok"),
        None
    );
    for conflicting in [
        vec![("x-api-key", SECRET_B), ("authorization", bearer.as_str())],
        vec![("x-api-key", SECRET_A), ("x-api-key", SECRET_A)],
    ] {
        assert_eq!(
            presented(&req(&conflicting)),
            Err(GatewayError::ConflictingApiKeys)
        );
    }
}

#[test]
fn lookup_by_digest_and_expiry() {
    let k = keys();
    assert_eq!(
        k.len(),
        3,
        "a key of an unknown tenant is dropped, never widened"
    );
    assert_eq!(k.authenticate(SECRET_A.as_bytes(), 1_999), Some(0));
    assert_eq!(k.authenticate(SECRET_A.as_bytes(), 2_000), None, "expired");
    assert_eq!(k.authenticate(SECRET_B.as_bytes(), u64::MAX), Some(1));
    assert_eq!(k.authenticate(b"rgk_x", 0), None);
    let mut near = SECRET_A.as_bytes().to_vec();
    near[10] = b'B';
    assert_eq!(k.authenticate(&near, 0), None);
    assert_eq!(k.get(0).id, "ka");
}

#[test]
fn tenant_and_namespace_decisions() {
    let k = keys();
    let ns = |p: &'static str| path_namespace(p).expect("valid");
    // @acme key at acme.
    assert!(k.authorize(0, 0, &ns("/@acme/x")).is_ok());
    assert!(k.authorize(0, 0, &ns("/plain")).is_ok());
    assert_eq!(
        k.authorize(0, 0, &ns("/@other/x")),
        Err(GatewayError::NamespaceDenied)
    );
    assert_eq!(
        k.authorize(0, 1, &ns("/@acme/x")),
        Err(GatewayError::NamespaceDenied)
    );
    // `*` covers its own tenant only; the operator key covers all.
    assert!(k.authorize(1, 1, &ns("/@anything/x")).is_ok());
    assert_eq!(
        k.authorize(1, 0, &ns("/x")),
        Err(GatewayError::NamespaceDenied)
    );
    assert!(k.authorize(2, 0, &ns("/@acme/x")).is_ok());
    assert!(k.authorize(2, 1, &ns("/@beta/x")).is_ok());
}

#[test]
fn path_namespaces() {
    let name = |p: &str| match path_namespace(p) {
        Ok(PathNamespace::Path(n)) => Ok(Some(n.into_owned())),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    assert_eq!(name("/@acme/x"), Ok(Some("@acme".into())));
    assert_eq!(name("/@acme"), Ok(Some("@acme".into())));
    assert_eq!(name("/@acme?q=1"), Ok(Some("@acme".into())));
    assert_eq!(name("/%40other/x"), Ok(Some("@other".into())));
    assert_eq!(name("/x/@other"), Ok(None));
    assert_eq!(name("/"), Ok(None));
    for bad in ["/@OTHER/x", "/@other;x/", "/@/x", "/%40/x", "/@a%2Fb/x"] {
        assert_eq!(name(bad), Err(GatewayError::BadNamespace), "{bad}");
    }
}

/// Whatever the scheme, its case, the spacing or the header's position, a value holding a key
/// is one (finding 11).
#[test]
fn values_carrying_keys() {
    // (header value, carries a key)
    let cases: &[(&[u8], bool)] = &[
        (b"Bearer rgk_abc", true),
        (b"bearer rgk_abc", true),
        (b"BEARER\trgk_abc", true),
        (b"Bearer   RGK_abc", true),
        (b"Token rgk_abc", true),
        (b"rgk_abc", true),
        (b"  rgk_abc  ", true),
        (b"Basic dTpw, Bearer rgk_abc", true),
        (b"Basic dXNlcjpwYXNz", false),
        (b"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln", false),
        (b"Bearer abcrgk_", false),
        (b"", false),
    ];
    for &(value, carries) in cases {
        assert_eq!(
            carries_key(value),
            carries,
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn secrets_are_stripped_and_other_values_kept_in_order() {
    let mut r = RequestHeader::build("GET", b"/", None).expect("request");
    for (k, v) in [
        ("authorization", "Basic dTpw"),
        ("authorization", "Bearer rgk_x"),
        ("authorization", "Digest a"),
        ("x-api-key", "rgk_y"),
        ("x-api-key", "theirs"),
        ("accept", "*/*"),
    ] {
        r.append_header(k.to_owned(), v).expect("header");
    }
    strip_secrets(&mut r);
    let all =
        |n: &str| -> Vec<&[u8]> { r.headers.get_all(n).iter().map(|v| v.as_bytes()).collect() };
    assert_eq!(
        all("authorization"),
        [b"Basic dTpw".as_slice(), b"Digest a"]
    );
    assert_eq!(all("x-api-key"), [b"theirs".as_slice()]);
    assert_eq!(all("accept"), [b"*/*".as_slice()]);
}

#[test]
fn keys_change_one_at_a_time_and_keep_their_index() {
    let before = keys();
    assert_eq!(before.len(), 3, "the orphan is left out");
    let mut next = before.clone();
    let tenant_of = |t: &str| match t {
        "acme" => Some(0),
        "beta" => Some(1),
        _ => None,
    };
    let a = before.authenticate(SECRET_A.as_bytes(), 0).expect("ka");
    // Replace ka with a new secret: same index, old secret refused, new one admitted.
    let rotated = key(
        "ka",
        SECRET_B.replace('B', "C").as_str(),
        Some("beta"),
        &["*"],
    );
    assert_eq!(next.upsert(&rotated, None, tenant_of), Ok(a));
    assert_eq!(next.authenticate(SECRET_A.as_bytes(), 0), None);
    let c = SECRET_B.replace('B', "C");
    assert_eq!(next.authenticate(c.as_bytes(), 0), Some(a));
    assert_eq!(next.get(a).scope, Scope::Tenant(1));
    assert_eq!((next.of_tenant(0), next.of_tenant(1)), (0, 2));
    // The old keys answer as they did.
    assert_eq!(before.authenticate(SECRET_A.as_bytes(), 0), Some(a));
    assert_eq!(before.of_tenant(0), 1);
    // Refused: another key's digest, an unknown tenant, a bad digest; nothing changes.
    let dup = key("dup", SECRET_B, Some("beta"), &["*"]);
    assert_eq!(
        next.upsert(&dup, None, tenant_of),
        Err(KeyRefused::DigestTaken)
    );
    let orphan = key("o", "rgk_y", Some("gone"), &["*"]);
    assert_eq!(
        next.upsert(&orphan, None, tenant_of),
        Err(KeyRefused::UnknownTenant("gone".into()))
    );
    let mut bad = key("bad", "rgk_z", None, &["*"]);
    bad.digest = "sha256:nothex".into();
    assert_eq!(
        next.upsert(&bad, None, tenant_of),
        Err(KeyRefused::BadDigest)
    );
    assert_eq!(next.len(), 3);
    // Removed: its digest is unknown, its slot is reused by the next new key.
    let b = next.remove("kb").expect("kb");
    assert_eq!(next.authenticate(SECRET_B.as_bytes(), 0), None);
    assert_eq!(next.remove("kb"), None);
    assert_eq!(
        next.upsert(&dup, None, tenant_of),
        Ok(b),
        "digest free again"
    );
    assert_eq!(next.authenticate(SECRET_B.as_bytes(), 0), Some(b));
    assert_eq!(next.by_id("dup"), Some(b));
    assert_eq!(next.iter().count(), 3);
}

#[test]
fn two_keys_swap_their_digests_once_both_let_go() {
    let mut next = keys();
    let tenant_of = |t: &str| match t {
        "acme" => Some(0),
        "beta" => Some(1),
        _ => None,
    };
    let (a, b) = (next.by_id("ka").expect("ka"), next.by_id("kb").expect("kb"));
    let ka = key("ka", SECRET_B, Some("acme"), &["@acme"]);
    let kb = key("kb", SECRET_A, Some("beta"), &["*"]);
    // One at a time, each new digest is still the other key's.
    assert_eq!(
        next.clone().upsert(&ka, None, tenant_of),
        Err(KeyRefused::DigestTaken)
    );
    next.release_digest("ka");
    next.release_digest("kb");
    next.release_digest("nobody");
    assert_eq!(next.authenticate(SECRET_A.as_bytes(), 0), None);
    assert_eq!(next.upsert(&ka, None, tenant_of), Ok(a));
    assert_eq!(next.upsert(&kb, None, tenant_of), Ok(b));
    assert_eq!(next.authenticate(SECRET_B.as_bytes(), 0), Some(a));
    assert_eq!(next.authenticate(SECRET_A.as_bytes(), 0), Some(b));
    assert_eq!(next.get(a).scope, Scope::Tenant(0));
    assert_eq!((next.of_tenant(0), next.of_tenant(1)), (1, 1));
    // A released key that takes a digest another key still holds is refused.
    next.release_digest("ka");
    let taken = key("ka", SECRET_OP, Some("acme"), &["*"]);
    assert_eq!(
        next.upsert(&taken, None, tenant_of),
        Err(KeyRefused::DigestTaken)
    );
}

//! Property tests of the gateway's request parsers: Cookie headers and the session cookie
//! filter, JWT header and claims checks, bearer and API-key extraction. Never a panic on
//! anything a client sends, and the invariants the proxy relies on.
//!
//! Cases per property: 64 to 128 by default (about 2,000 for the file);
//! `REALMGATE_PROPTEST_CASES=N` runs N per property (`tests/run --long` sets it high).

// Every path into the gateway crate is here, so a module move during a refactor is fixed in
// this one block.
use realmgate::auth::api_key::{path_namespace, presented, strip_secrets};
use realmgate::auth::cookie::{pairs as cookie_pairs, upstream_request as filter_cookies};
use realmgate::auth::jwt::{
    alg_name, check_no_duplicates, parse as parse_jwt, push_header_item, Expect, Key, Rules,
    ALLOWED, MAX_NAME_CHARS,
};
use realmgate::auth::session::read_session;
use realmgate::headers::bearer;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use pingora_http::RequestHeader;
use proptest::prelude::*;
use serde_json::{json, Value};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("REALMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A GET with these headers; values that are not valid header values are skipped (no client
/// can send them through Pingora's parser either).
fn request(headers: &[(&str, &[u8])]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).expect("request head");
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            r.append_header(name.to_string(), v).expect("append header");
        }
    }
    r
}

// ---------------------------------------------------------------------------------------
// Cookies

/// The gateway's own cookies, as `docs/security.md` states the rule: names starting with
/// `rg_session` (the session and its chunks) or `rg_tx_` (login transactions), in any ASCII
/// case, with or without a `__Host-`/`__Secure-` prefix or a leading quote.
fn is_gateway_cookie(name: &[u8]) -> bool {
    let lower = name.trim_ascii().to_ascii_lowercase();
    let name = lower.strip_prefix(b"\"").unwrap_or(&lower);
    let name = name
        .strip_prefix(b"__host-")
        .or_else(|| name.strip_prefix(b"__secure-"))
        .unwrap_or(name);
    name.starts_with(b"rg_session") || name.starts_with(b"rg_tx_")
}

/// The pieces of Cookie lines (RFC 6265 §5.4: split on `;`, trimmed, empty ones dropped),
/// written here independently of the gateway.
fn pieces<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    values
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// A piece's name: up to `=`, trimmed; the whole piece when it has none.
fn name_of(piece: &[u8]) -> &[u8] {
    match piece.iter().position(|&b| b == b'=') {
        Some(i) => piece[..i].trim_ascii(),
        None => piece,
    }
}

/// The Cookie lines the proxy sends upstream for this request (the gateway's cookie filter).
fn forwarded_cookies(req: &RequestHeader) -> Vec<Vec<u8>> {
    let mut up = req.clone();
    filter_cookies(&mut up).expect("cookie filter");
    up.headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// Bytes shown as text with escapes in failure reports.
#[derive(Clone, PartialEq)]
struct Lossy(Vec<u8>);

impl std::fmt::Debug for Lossy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

fn cookie_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[a-zA-Z0-9_.-]{1,10}".prop_map(String::into_bytes),
        2 => prop::sample::select(vec![
            "rg_session", "rg_session_1", "rg_session_3", "__Host-rg_session", "rg_tx_abc",
            "rg_tx_", "RG_SESSION", "rg_sessionx", "__Host-rg_tx_1", " rg_session",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(0x21u8..=0xff, 1..6),
    ]
}

fn cookie_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[A-Za-z0-9_=-]{0,20}".prop_map(String::into_bytes),
        1 => "[1-4][A-Za-z0-9_-]{0,30}".prop_map(String::into_bytes),
        1 => prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..12),
        1 => Just(b"\"quoted value\"".to_vec()),
    ]
}

/// A Cookie header value: pairs joined by `;` with spacing variants, sometimes a bare token.
fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            cookie_name(),
            cookie_value(),
            prop::sample::select(vec!["; ", ";", " ; ", ";;"]),
            any::<bool>(),
        ),
        0..6,
    )
    .prop_map(|parts| {
        let mut out = Vec::new();
        for (i, (name, value, sep, bare)) in parts.into_iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(sep.as_bytes());
            }
            out.extend_from_slice(&name);
            if !bare {
                out.push(b'=');
                out.extend_from_slice(&value);
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn cookie_parsing_never_panics(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..3)) {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("cookie", v.as_slice())).collect();
        let req = request(&headers);
        let _ = cookie_pairs(&req).count();
        let _ = forwarded_cookies(&req);
        let _ = read_session(&req, false);
        let _ = read_session(&req, true);
    }

    /// No cookie of the gateway's ever reaches an upstream, whatever else the header holds
    /// (non-ASCII bytes included: a browser sends whatever a site set).
    #[test]
    fn gateway_cookies_never_go_upstream(
        values in prop::collection::vec(cookie_header(), 1..3)
            .prop_map(|v| v.into_iter().map(Lossy).collect::<Vec<_>>()),
    ) {
        let values: Vec<Vec<u8>> = values.into_iter().map(|l| l.0).collect();
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("cookie", v.as_slice())).collect();
        let req = request(&headers);
        for piece in pieces(forwarded_cookies(&req).iter().map(Vec::as_slice)) {
            prop_assert!(
                !is_gateway_cookie(name_of(&piece)),
                "{:?} went upstream from Cookie {:?}",
                String::from_utf8_lossy(&piece),
                values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect::<Vec<_>>()
            );
        }
    }

    /// Every other cookie goes upstream byte for byte and in order, obs-text included.
    #[test]
    fn other_cookies_are_kept(values in prop::collection::vec(cookie_header(), 1..3)) {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("cookie", v.as_slice())).collect();
        let req = request(&headers);
        let sent: Vec<Vec<u8>> = pieces(
            req.headers.get_all(http::header::COOKIE).iter().map(HeaderValue::as_bytes),
        )
        .into_iter()
        .filter(|p| !is_gateway_cookie(name_of(p)))
        .collect();
        let got = pieces(forwarded_cookies(&req).iter().map(Vec::as_slice));
        prop_assert_eq!(
            got.iter().map(|p| Lossy(p.clone())).collect::<Vec<_>>(),
            sent.iter().map(|p| Lossy(p.clone())).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Bearer and API keys

fn spaces() -> impl Strategy<Value = String> {
    " {1,4}"
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn bearer_never_panics(value in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Some(token) = bearer(&value) {
            prop_assert!(value.len() > 6 && value[..6].eq_ignore_ascii_case(b"bearer"), "{value:?}");
            prop_assert_eq!(value[6], b' ', "{:?}", value);
            prop_assert_eq!(token, value[7..].trim_ascii(), "{:?}", value);
        }
    }

    /// RFC 9110 §11.1: scheme in any case, one or more spaces, the token.
    #[test]
    fn bearer_reads_any_case_and_spacing(
        scheme in "[bB][eE][aA][rR][eE][rR]",
        sp in spaces(),
        token in "[A-Za-z0-9._~+/-]{1,40}=*",
    ) {
        let value = format!("{scheme}{sp}{token}");
        prop_assert_eq!(bearer(value.as_bytes()), Some(token.as_bytes()));
    }

    #[test]
    fn other_schemes_are_not_bearer(
        scheme in "Basic|Bearerx|Token|Digest|bear|[A-Za-z]{1,8}",
        sp in spaces(),
        token in "[A-Za-z0-9]{1,20}",
    ) {
        prop_assume!(!scheme.eq_ignore_ascii_case("bearer"));
        let value = format!("{scheme}{sp}{token}");
        prop_assert_eq!(bearer(value.as_bytes()), None);
    }

    /// The key the gateway reads is one the client sent: from `X-API-Key` or an `rgk_`
    /// bearer, never a made-up value; never a panic on any mix of headers.
    #[test]
    fn presented_key_comes_from_the_request(
        auth in prop::collection::vec(
            prop_oneof![
                "(Bearer|bearer|BEARER|Basic) {1,2}rgk_[A-Za-z0-9_-]{0,44}",
                "Bearer [A-Za-z0-9._-]{1,30}",
                "[ -~]{0,30}",
            ],
            0..3,
        ),
        x_api_key in prop::collection::vec("rgk_[A-Za-z0-9_-]{0,44}|[ -~]{0,20}", 0..3),
    ) {
        let mut headers: Vec<(&str, &[u8])> = auth.iter().map(|a| ("authorization", a.as_bytes())).collect();
        headers.extend(x_api_key.iter().map(|k| ("x-api-key", k.as_bytes())));
        let req = request(&headers);
        if let Ok(Some(key)) = presented(&req) {
            let from_auth = auth.iter().any(|a| a.as_bytes().ends_with(key) && key.starts_with(b"rgk_"));
            let from_header = x_api_key.iter().any(|k| k.as_bytes().trim_ascii() == key);
            prop_assert!(from_auth || from_header, "{key:?} from {auth:?} / {x_api_key:?}");
        }
    }

    /// No API key secret goes upstream, whatever the order and scheme of the credentials
    /// (`Basic` before `Bearer rgk_…`, lists, any case): every value holding one is removed,
    /// the others kept in order.
    #[test]
    fn key_secrets_never_go_upstream(
        auth in prop::collection::vec(
            prop_oneof![
                "(Bearer|bearer|Basic|Token|RGK) {1,2}(rgk|RGK|Rgk)_[A-Za-z0-9_-]{8,43}",
                "Basic [A-Za-z0-9+/=]{4,20}",
                "Bearer [A-Za-z0-9._-]{8,30}",
                "[a-z]{1,5}, ?rgk_[A-Za-z0-9]{8,20}",
            ],
            0..4,
        ),
        x_api_key in prop::collection::vec("rgk_[A-Za-z0-9_-]{8,43}|[a-z0-9]{1,10}", 0..3),
    ) {
        let mut headers: Vec<(&str, &[u8])> = auth.iter().map(|a| ("authorization", a.as_bytes())).collect();
        headers.extend(x_api_key.iter().map(|k| ("x-api-key", k.as_bytes())));
        let mut up = request(&headers);
        strip_secrets(&mut up);
        for name in ["authorization", "x-api-key"] {
            let kept: Vec<&[u8]> = up.headers.get_all(name).iter().map(HeaderValue::as_bytes).collect();
            for v in &kept {
                let lower = v.to_ascii_lowercase();
                prop_assert!(
                    !lower.windows(4).any(|w| w == b"rgk_"),
                    "{name}: {:?} went upstream", String::from_utf8_lossy(v)
                );
            }
            let sent: Vec<&[u8]> = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v)
                .filter(|v| !v.to_ascii_lowercase().windows(4).any(|w| w == b"rgk_"))
                .collect();
            prop_assert_eq!(kept, sent, "{} values other than keys are kept in order", name);
        }
    }

    #[test]
    fn path_namespace_never_panics(path in "/[@%0-9A-Za-z._~;/-]{0,30}|\\PC{0,20}") {
        let _ = path_namespace(&path);
    }
}

// ---------------------------------------------------------------------------------------
// JWT: compact serialisation, header, claims

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Header values an attacker tries: every algorithm name (and `none`), odd `typ`, `crit`,
/// embedded keys, non-string values.
fn jwt_header() -> impl Strategy<Value = Value> {
    let alg = prop::sample::select(vec![
        json!("RS256"),
        json!("RS384"),
        json!("RS512"),
        json!("PS256"),
        json!("ES256"),
        json!("ES384"),
        json!("EdDSA"),
        json!("HS256"),
        json!("HS512"),
        json!("none"),
        json!("None"),
        json!("rs256"),
        json!(""),
        json!(null),
        json!(256),
        json!(["RS256"]),
    ]);
    let typ = prop::option::of(prop::sample::select(vec![
        json!("JWT"),
        json!("jwt"),
        json!("at+jwt"),
        json!("application/at+jwt"),
        json!("JWS"),
        json!(1),
        json!(null),
    ]));
    let extra = prop::option::of(prop::sample::select(vec![
        ("crit", json!(["exp"])),
        ("crit", json!([])),
        ("jku", json!("http://evil.test/")),
        ("jwk", json!({"kty": "oct", "k": "AAAA"})),
        ("x5u", json!("http://evil.test/")),
        ("kid", json!(7)),
        ("kid", json!("../../etc/passwd")),
        ("b64", json!(false)),
    ]));
    (alg, typ, prop::option::of("[ -~]{0,12}"), extra).prop_map(|(alg, typ, kid, extra)| {
        let mut h = json!({"alg": alg});
        if let Some(t) = typ {
            h["typ"] = t;
        }
        if let Some(k) = kid {
            h["kid"] = json!(k);
        }
        if let Some((name, v)) = extra {
            h[name] = v;
        }
        h
    })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn jwt_parse_never_panics_on_text(token in "\\PC{0,200}|[A-Za-z0-9_.=+/-]{0,300}", max in 0usize..400) {
        let r = parse_jwt(&token, max);
        if token.len() > max {
            prop_assert!(r.is_err(), "a token above the bound was parsed");
        }
    }

    #[test]
    fn jwt_parse_never_panics_on_encoded_parts(
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..5),
    ) {
        let token = parts.iter().map(|p| b64(p)).collect::<Vec<_>>().join(".");
        let _ = parse_jwt(&token, 8192);
    }

    /// Only an allowed asymmetric algorithm, named exactly, with no `crit` and an accepted
    /// `typ`, gets past the header check; the algorithm parsed is the one the header named.
    #[test]
    fn jwt_header_rules(header in jwt_header(), claims in "[A-Za-z0-9_-]{1,20}", sig in "[A-Za-z0-9_-]{0,20}") {
        let token = format!("{}.{claims}.{sig}", b64(header.to_string().as_bytes()));
        let parsed = parse_jwt(&token, 8192);
        let named = header["alg"].as_str().and_then(|a| ALLOWED.iter().find(|x| alg_name(**x) == a));
        let typ_ok = match &header.get("typ") {
            None | Some(Value::Null) => true,
            Some(Value::String(t)) => ["jwt", "at+jwt", "application/at+jwt"].contains(&t.to_ascii_lowercase().as_str()),
            Some(_) => false,
        };
        let kid_ok = !matches!(header.get("kid"), Some(v) if !v.is_string());
        let ok = named.is_some() && header.get("crit").is_none() && typ_ok && kid_ok;
        match parsed {
            Ok(p) => {
                prop_assert!(ok, "accepted header {header}");
                prop_assert_eq!(Some(&p.alg), named, "header {}", header);
                prop_assert!(!matches!(p.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
            }
            Err(_) => {
                // `typ: null` may be refused as a wrong type; everything else must be accepted.
                let null_typ = header.get("typ") == Some(&Value::Null);
                prop_assert!(!ok || null_typ, "refused header {header}");
            }
        }
    }

    #[test]
    fn duplicate_members_are_refused(
        key in "[a-z]{1,5}",
        a in prop_oneof![Just(json!("RS256")), Just(json!(1)), Just(json!(null))],
        b in prop_oneof![Just(json!("none")), Just(json!([1])), Just(json!({}))],
        nest in any::<bool>(),
    ) {
        let inner = format!("{{\"{key}\":{a},\"x\":0,\"{key}\":{b}}}");
        let doc = if nest { format!("{{\"outer\":[{inner}]}}") } else { inner };
        prop_assert!(check_no_duplicates(doc.as_bytes()).is_err(), "{doc}");
    }

    #[test]
    fn duplicate_check_never_panics(raw in prop::collection::vec(any::<u8>(), 0..100)) {
        let _ = check_no_duplicates(&raw);
    }

    #[test]
    fn duplicate_check_accepts_plain_json(v in json_value()) {
        // serde_json's maps keep one member per name, so this text has no duplicates.
        prop_assert!(check_no_duplicates(v.to_string().as_bytes()).is_ok(), "{v}");
    }

    /// Identity header items round-trip: visible ASCII, no separator, reversible. (Empty items
    /// are not told apart from absent ones: no realm has a role or subject named "".)
    #[test]
    fn header_items_are_encoded_reversibly(items in prop::collection::vec("\\PC{1,12}|[ -~]{1,12}", 1..5)) {
        let mut out = Vec::new();
        for item in &items {
            push_header_item(&mut out, item);
        }
        prop_assert!(out.iter().all(|b| b.is_ascii_graphic()), "{out:?}");
        prop_assert!(HeaderValue::from_bytes(&out).is_ok());
        let text = String::from_utf8(out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoded: Vec<String> = text.split(',').map(percent_decode).collect();
        prop_assert_eq!(decoded, items);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// Claims are only read from a signed token: sign with the Ed25519 test fixture (fast in debug).

const ISS: &str = "https://id.test/realms/acme";
const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 60;

struct Signer {
    enc: EncodingKey,
    key: Key,
}

fn signer() -> Signer {
    let path = format!(
        "{}/../tests/fixtures/jwt/ed25519.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let enc = EncodingKey::from_ed_pem(&pem).expect("ed25519 fixture");
    let jwk = Jwk::from_encoding_key(&enc, Algorithm::EdDSA).expect("jwk");
    let dec = DecodingKey::from_jwk(&jwk).expect("decoding key");
    Signer {
        enc,
        key: Key {
            alg: Algorithm::EdDSA,
            key: dec,
        },
    }
}

impl Signer {
    fn token(&self, claims: &str) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k"}).to_string();
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.enc, Algorithm::EdDSA)
            .expect("sign");
        format!("{input}.{sig}")
    }
}

fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(null)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e300)),
        Just(json!(u64::MAX)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        (NOW - 1000..NOW + 1000).prop_map(Value::from),
        (NOW as f64 - 500.0..NOW as f64 + 500.0).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ]
}

fn claims() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![
            Just(json!(ISS)),
            Just(json!(format!("{ISS}/"))),
            claim_value()
        ]),
        prop::option::of(prop_oneof![Just(json!("user-1")), claim_value()]),
        prop::option::of(prop_oneof![
            Just(json!("api")),
            Just(json!(["x", "api"])),
            claim_value()
        ]),
        prop::option::of(prop_oneof![
            (NOW + 1..NOW + 1000).prop_map(Value::from),
            claim_value()
        ]),
        prop::option::of(claim_value()),
        prop::option::of(prop_oneof![
            Just(json!("Bearer")),
            Just(json!("ID")),
            claim_value()
        ]),
        prop::option::of(prop_oneof![
            prop::collection::vec("\\PC{0,8}", 0..4).prop_map(|r| json!({"roles": r})),
            claim_value(),
        ]),
        prop::option::of(prop_oneof![
            "\\PC{0,300}".prop_map(Value::from),
            claim_value()
        ]),
        prop::option::of(claim_value()),
    )
        .prop_map(|(iss, sub, aud, exp, nbf, typ, realm_access, name, azp)| {
            let mut c = serde_json::Map::new();
            for (k, v) in [
                ("iss", iss),
                ("sub", sub),
                ("aud", aud),
                ("exp", exp),
                ("nbf", nbf),
                ("typ", typ),
                ("realm_access", realm_access),
                ("name", name),
                ("azp", azp),
            ] {
                if let Some(v) = v {
                    c.insert(k.to_owned(), v);
                }
            }
            Value::Object(c)
        })
}

/// Claims that pass, with one field replaced by anything from [`claims`] half the time.
fn mostly_valid_claims() -> impl Strategy<Value = Value> {
    (
        claims(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        "\\PC{0,200}",
    )
        .prop_map(|(other, idx, replace, name)| {
            let mut c = json!({
                "iss": ISS, "sub": "user-1", "aud": "api", "exp": NOW + 300, "typ": "Bearer",
                "realm_access": {"roles": ["user"]}, "name": name,
            });
            if let (true, Value::Object(m)) = (replace, &other) {
                if !m.is_empty() {
                    let (k, v) = m.iter().nth(idx.index(m.len())).expect("in range");
                    c[k] = v.clone();
                }
            }
            c
        })
}

proptest! {
    #![proptest_config(config(64))]

    /// A token that meets every rule verifies, whatever its display name; the name is cleaned.
    #[test]
    fn valid_claims_verify(name in "\\PC{0,300}", roles in prop::collection::vec("\\PC{0,10}", 0..4)) {
        let s = signer();
        let claims = json!({"iss": ISS, "sub": "u", "aud": ["x", "api"], "exp": NOW + 1, "realm_access": {"roles": roles}, "name": name});
        let token = s.token(&claims.to_string());
        let parsed = parse_jwt(&token, 8192).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let audiences: Vec<Box<str>> = vec!["api".into()];
        let rules = Rules { issuer: ISS, now: NOW, skew: SKEW, expect: Expect::Access { audiences: &audiences, also: None } };
        let c = parsed.verify(&s.key, &rules).map_err(|e| TestCaseError::fail(format!("{e:?} for {claims}")))?;
        prop_assert_eq!(c.sub, "u");
        prop_assert_eq!(c.roles, roles);
        if let Some(n) = c.name {
            prop_assert!(n.chars().count() <= MAX_NAME_CHARS && !n.chars().any(char::is_control) && !n.is_empty(), "{n:?}");
        }
    }

    /// Signed claims of any shape never panic the checks; what passes satisfies the realm's
    /// rules as the contract states them.
    #[test]
    fn claims_checks_hold(claims in prop_oneof![claims(), mostly_valid_claims()]) {
        let s = signer();
        let token = s.token(&claims.to_string());
        let parsed = parse_jwt(&token, 8192).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let audiences: Vec<Box<str>> = vec!["api".into()];
        let rules = Rules {
            issuer: ISS,
            now: NOW,
            skew: SKEW,
            expect: Expect::Access { audiences: &audiences, also: None },
        };
        if let Ok(c) = parsed.verify(&s.key, &rules) {
            prop_assert_eq!(&claims["iss"], &json!(ISS));
            prop_assert!(!c.sub.is_empty());
            prop_assert_eq!(&claims["sub"], &json!(c.sub));
            prop_assert!(c.exp.saturating_add(SKEW) > NOW, "expired token accepted: {}", claims);
            let aud_ok = claims["aud"] == json!("api")
                || claims["aud"].as_array().is_some_and(|a| a.contains(&json!("api")))
                || claims["azp"] == json!("api");
            prop_assert!(aud_ok, "token for another audience accepted: {}", claims);
            prop_assert!(
                !claims["typ"].is_string() || claims["typ"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
                "typ {} accepted", claims["typ"]
            );
            if let Some(name) = &c.name {
                prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
                prop_assert!(!name.chars().any(char::is_control), "{name:?}");
                prop_assert!(!name.is_empty());
            }
        }
        // The same claims under a signature by nobody never verify.
        let forged = format!("{}.{}", &token[..token.rfind('.').unwrap_or(0)], b64(&[0u8; 64]));
        if let Ok(p) = parse_jwt(&forged, 8192) {
            prop_assert!(p.verify(&s.key, &rules).is_err(), "forged signature verified");
        }
    }
}

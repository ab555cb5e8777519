//! Token attacks against the real gateway (issue 3 §6): each gets a clear 401 (or 400), the
//! key URLs a token names are never fetched, and the gateway keeps serving.

use jsonwebtoken::Algorithm;
use realmgate_e2e::gateway::Reply;
use realmgate_e2e::tokens::{access_claims, b64, rsa1_public_pem, sign_hmac};
use realmgate_e2e::{Gateway, GatewayOpts, JwksServer, Table, TestKey, Upstream};
use serde_json::{json, Value};

const ISS: &str = "http://id.test/realms/acme";

struct F {
    gw: Gateway,
    _up: Upstream,
    jwks: JwksServer,
    /// A server a hostile token may name (`jku`, `x5u`); it must never be asked anything.
    trap: JwksServer,
    key: TestKey,
}

async fn fixture() -> F {
    let up = Upstream::start("app").await;
    let jwks = JwksServer::start().await;
    let key = TestKey::rs256("k1");
    jwks.set_keys(
        "/certs",
        vec![
            key.jwk(),
            TestKey::new("ec256", Algorithm::ES256, "ec").jwk(),
        ],
    );
    // Every loopback server binds before the gateway picks its ports (they are chosen free,
    // released, then bound by the gateway: a server binding in between could take one).
    let trap = JwksServer::start().await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test"],
            "realm": {"issuer": ISS, "jwks_uri": jwks.url("/certs"), "audiences": ["acme-api"]},
            "routes": [{"prefix": "/", "upstream": "app", "auth": "jwt"}]}))
        .build();
    gw.push_ok(&table).await;
    F {
        gw,
        _up: up,
        jwks,
        trap,
        key,
    }
}

impl F {
    async fn call(&self, token: &str) -> Reply {
        self.gw
            .fetch(
                self.gw
                    .get("acme.test", "/")
                    .header("authorization", format!("Bearer {token}")),
            )
            .await
    }

    async fn refused(&self, what: &str, token: &str, description: &str) {
        let r = self.call(token).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        r.assert_error(401, "unauthorized");
        let challenge = r.header("www-authenticate").unwrap_or("");
        assert!(
            challenge.contains("error=\"invalid_token\"") && challenge.contains(description),
            "{what}: challenge {challenge:?} lacks {description:?}"
        );
    }
}

fn claims() -> Value {
    access_claims(ISS, "user-1", "acme-api")
}

fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn algorithm_attacks() {
    let f = fixture().await;
    assert_eq!(f.call(&f.key.sign(&claims())).await.status, 200, "control");
    for alg in ["none", "None", "NONE"] {
        let h = json!({"alg": alg, "kid": "k1", "typ": "JWT"});
        f.refused(alg, &unsigned(&h, &claims(), ""), "not accepted")
            .await;
        f.refused(alg, &unsigned(&h, &claims(), "AAAA"), "not accepted")
            .await;
    }
    // RS256 → HS256 confusion: HMAC keyed with the realm's public key.
    let pem = rsa1_public_pem();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let h = json!({"alg": realmgate_e2e::tokens::alg_name(alg), "kid": "k1"});
        f.refused(
            "hs confusion",
            &sign_hmac(&h, &claims(), &pem, alg),
            "not accepted",
        )
        .await;
        // The same MAC under an RS256 header fails the signature.
        let t = sign_hmac(&json!({"alg": "RS256", "kid": "k1"}), &claims(), &pem, alg);
        f.refused("hs mac as rs256", &t, "does not verify").await;
    }
    // The key decides the algorithm: k1 is RS256, a PS256 header does not switch it.
    let ps = TestKey::new("rsa1", Algorithm::PS256, "k1").sign(&claims());
    f.refused("ps256 on an rs256 key", &ps, "differs from its key")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_attacks() {
    let f = fixture().await;
    let good = f.key.sign(&claims());
    let (input, _) = good.rsplit_once('.').expect("parts");
    f.refused("empty signature", &format!("{input}."), "does not verify")
        .await;
    let es = json!({"alg": "ES256", "kid": "ec"});
    f.refused(
        "ecdsa r=s=0",
        &unsigned(&es, &claims(), &b64(&[0u8; 64])),
        "does not verify",
    )
    .await;
    // Payload swapped under a valid signature.
    let mut admin = claims();
    admin["sub"] = json!("admin");
    let (_, sig) = good.rsplit_once('.').expect("parts");
    let swapped = unsigned(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        &admin,
        sig,
    );
    f.refused("swapped payload", &swapped, "does not verify")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_keys_and_key_urls_are_never_used() {
    let f = fixture().await;
    let trap = &f.trap;
    let attacker = TestKey::new("rsa2", Algorithm::RS256, "k1");
    trap.set_keys("/jwks", vec![attacker.jwk()]);
    let mut headers = vec![
        json!({"alg": "RS256", "kid": "k1", "jwk": attacker.jwk()}),
        json!({"alg": "RS256", "kid": "k1", "jku": trap.url("/jwks")}),
        json!({"alg": "RS256", "kid": "k1", "x5u": trap.url("/cert.pem")}),
        json!({"alg": "RS256", "kid": "k1", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ];
    for h in &headers {
        let t = attacker.sign_raw(&h.to_string(), &claims().to_string());
        f.refused("embedded key", &t, "does not verify").await;
    }
    // With kids the realm does not have, the gateway refetches its own JWKS at most, never the
    // token's URLs.
    headers = vec![
        json!({"alg": "RS256", "kid": "attacker", "jku": trap.url("/jwks")}),
        json!({"alg": "RS256", "kid": "attacker2", "x5u": trap.url("/cert.pem")}),
    ];
    for h in &headers {
        let t = attacker.sign_raw(&h.to_string(), &claims().to_string());
        f.refused("jku/x5u", &t, "not one of the realm's keys")
            .await;
    }
    assert_eq!(
        trap.total_hits(),
        0,
        "the gateway fetched a URL named by a token"
    );
    assert!(f.jwks.hits("/certs") <= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_kids_are_plain_map_keys() {
    let f = fixture().await;
    for kid in [
        "../../dev/null",
        "' OR 1=1--",
        "/etc/passwd",
        "k1\"}",
        "%6B1",
        "K1",
    ] {
        let h = json!({"alg": "RS256", "kid": kid});
        let t = f.key.sign_raw(&h.to_string(), &claims().to_string());
        f.refused(kid, &t, "not one of the realm's keys").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_tokens_are_refused_and_never_crash_the_gateway() {
    let f = fixture().await;
    let good = f.key.sign(&claims());
    let (h, rest) = good.split_once('.').expect("parts");
    f.refused("oversized", &"a".repeat(9000), "larger than")
        .await;
    f.refused("two parts", "abc.def", "not a compact JWS").await;
    f.refused("four parts", &format!("{good}.x"), "not a compact JWS")
        .await;
    f.refused("padding", &format!("{h}=.{rest}"), "base64url")
        .await;
    f.refused(
        "std alphabet",
        &format!("{}+/.{rest}", &h[..h.len() - 2]),
        "base64url",
    )
    .await;
    f.refused(
        "header not json",
        &format!("{}.{rest}", b64(b"{alg")),
        "expected JSON",
    )
    .await;
    let dup_header = f.key.sign_raw(
        r#"{"alg":"RS256","kid":"k1","alg":"none"}"#,
        &claims().to_string(),
    );
    f.refused("duplicate header member", &dup_header, "repeat a member")
        .await;
    let dup_claims = f.key.sign_raw(
        r#"{"alg":"RS256","kid":"k1"}"#,
        &claims().to_string().replacen('{', r#"{"sub":"admin","#, 1),
    );
    f.refused("duplicate claim", &dup_claims, "repeat a member")
        .await;
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    f.refused("missing exp", &f.key.sign(&no_exp), "no exp claim")
        .await;
    let mut wrong = claims();
    wrong["iss"] = json!("http://id.test/realms/acme/");
    f.refused("iss with a slash", &f.key.sign(&wrong), "another realm")
        .await;
    // Bytes no token has: still a clean refusal.
    for v in ["Bearer \u{7f}", "Bearer ", "Bearer a.b.c d", "bearer    "] {
        let r = f
            .gw
            .raw(format!(
                "GET / HTTP/1.1\r\nHost: acme.test\r\nAuthorization: {v}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(matches!(r.status, 400 | 401), "{v:?}: {}", r.status);
    }
    assert_eq!(f.call(&good).await.status, 200, "still serving");
}

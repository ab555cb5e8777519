//! Browser login over TLS, end to end: headless Chromium trusts the test certificate by its
//! public key (`--ignore-certificate-errors-spki-list`, never `--ignore-certificate-errors`),
//! follows the tenant's `https: redirect` from plain HTTP to the gateway's TLS listener, logs
//! in at the real Keycloak, and comes back to `https://…/.realmgate/callback`: the redirect
//! URI, the cookies (`Secure`, `__Host-` session) and `x-forwarded-proto` all say https.

use base64::Engine as _;
use realmgate_e2e::browser::Browser;
use realmgate_e2e::keycloak::Keycloak;
use realmgate_e2e::{Gateway, GatewayOpts, Table, TempDir, Upstream};
use realmgate_table::test_certs::TestCa;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery";

/// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's SPKI list takes.
fn spki_hash(cert_pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("certificate PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn err(e: fantoccini::error::CmdError) -> String {
    e.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_is_redirected_to_https_logs_in_and_gets_secure_cookies() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let ca = TestCa::new("realmgate browser tls CA");
    let leaf = ca.leaf(&["acme.test"]);
    let up = Upstream::start("app").await;
    let key_dir = TempDir::new("session-key");
    let key_file = key_dir.write("session-key", "cd".repeat(32));
    // `$TLS_PORT` is the TLS listener's port: redirects name it.
    let gw = Gateway::start_tls(GatewayOpts {
        gateway_yaml: format!(
            "  session_key_file: \"{}\"\n  https_port: $TLS_PORT\n",
            key_file.display()
        ),
        ..GatewayOpts::default()
    })
    .await;
    let base = format!("https://acme.test:{}", gw.tls_addr().port());
    let plain = format!("http://acme.test:{}", gw.listen_addr().port());
    let realm = kc.create_realm("acmetls").await;
    kc.create_client(
        &realm,
        json!({
            "clientId": "realmgate", "publicClient": true, "standardFlowEnabled": true,
            "directAccessGrantsEnabled": false,
            "redirectUris": [format!("{base}/.realmgate/callback")],
            "attributes": {"pkce.code.challenge.method": "S256",
                           "post.logout.redirect.uris": format!("{base}/*")}
        }),
    )
    .await;
    let alice = kc.create_user(&realm, "alice", PASSWORD).await;
    let mut table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test"], "https": "redirect",
            "hsts": {"max_age": 600},
            "realm": {"issuer": realm.issuer, "audiences": ["realmgate"], "client_id": "realmgate"},
            "routes": [{"prefix": "/", "upstream": "app", "auth": "session"}]}))
        .build();
    table["certificates"] =
        json!(
            [serde_json::to_value(leaf.entry("acme", &["acme.test"])).expect("certificate JSON")]
        );
    gw.push_ok(&table).await;
    drop(key_dir);

    let spki = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_hash(&leaf.cert_pem)
    );
    let Some(b) = Browser::start_with(&[spki]).await else {
        return;
    };
    let scenario = async {
        let c = &b.client;
        // Plain HTTP: 308 to the TLS listener, then the realm's login page.
        c.goto(&format!("{plain}/app/page?x=1"))
            .await
            .map_err(err)?;
        let login = format!("{}/realms/{}/", kc.url, realm.name);
        let url = b.wait_url(&login, Duration::from_secs(30)).await?;
        let callback = format!("{base}/.realmgate/callback");
        let encoded: String = url::form_urlencoded::byte_serialize(callback.as_bytes()).collect();
        if !url.contains(&format!("redirect_uri={encoded}")) {
            return Err(format!("redirect URI is not the https callback: {url}"));
        }
        b.keycloak_login("alice", PASSWORD).await?;
        b.wait_url(&format!("{base}/app/page?x=1"), Duration::from_secs(30))
            .await?;
        let echo = b.body_json().await?;
        let headers = &echo["headers"];
        if headers["x-realmgate-subject"] != json!([alice]) {
            return Err(format!("subject: {headers}"));
        }
        if headers["x-forwarded-proto"] != json!(["https"]) {
            return Err(format!("x-forwarded-proto: {headers}"));
        }
        let cookies = c.get_all_cookies().await.map_err(err)?;
        let session = cookies
            .iter()
            .find(|k| k.name() == "__Host-rg_session")
            .ok_or_else(|| format!("no __Host-rg_session cookie: {cookies:?}"))?;
        if session.secure() != Some(true) || session.http_only() != Some(true) {
            return Err(format!("session cookie attributes: {session:?}"));
        }
        if let Some(k) = cookies.iter().find(|k| k.secure() != Some(true)) {
            return Err(format!("a cookie set over TLS without Secure: {k:?}"));
        }
        Ok::<(), String>(())
    };
    let result = scenario.await;
    if let Err(e) = &result {
        let seen = b.failure_report("login_tls-failure").await;
        panic!("{e}\n{seen}\ngateway log:\n{}", gw.logs());
    }
    b.close().await;
    let m = gw.metrics().await;
    assert_eq!(m.value("realmgate_logins_total", &[("result", "ok")]), 1.0);
}

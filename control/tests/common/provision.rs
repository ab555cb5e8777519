//! Provisioning fixtures shared by the provisioning test files: the real Keycloak and
//! PowerDNS that tests/run starts (found through the environment), realmctl's provisioning
//! config for them, DNS queries through `dig`, and Keycloak's admin API to check results.

use super::*;
use realmgate_e2e::kube::Kube;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

pub struct Services {
    pub keycloak: String,
    pub admin_password: String,
    pub pdns_url: String,
    pub pdns_key_file: String,
    pub pdns_dns: String,
    pub zone: String,
}

pub fn services(test: &str) -> Option<Services> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = (|| {
        Some(Services {
            keycloak: var("REALMGATE_KEYCLOAK_URL")?,
            admin_password: var("KEYCLOAK_ADMIN_PASSWORD")
                .unwrap_or_else(|| "realmgate-e2e-admin".into()),
            pdns_url: var("REALMGATE_POWERDNS_URL")?,
            pdns_key_file: var("REALMGATE_POWERDNS_KEY_FILE")?,
            pdns_dns: var("REALMGATE_POWERDNS_DNS")?,
            zone: var("REALMGATE_POWERDNS_ZONE").unwrap_or_else(|| "realmgate.test".into()),
        })
    })();
    if found.is_none() {
        let msg = format!(
            "{test}: needs REALMGATE_KEYCLOAK_URL and REALMGATE_POWERDNS_URL/_KEY_FILE/_DNS (run ./tests/run, which starts Keycloak and PowerDNS)"
        );
        assert!(
            var("REALMGATE_REQUIRE_PROVISION").is_none(),
            "{msg}: required under tests/run"
        );
        eprintln!("SKIPPED {msg}");
    }
    found
}

/// realmctl's service-account client in Keycloak's master realm, made with the bootstrap
/// admin through realmctl's own hidden command; returns the secret file.
pub fn bootstrap_keycloak(dir: &TempDir, s: &Services) -> String {
    // The tests of this file run in parallel against one Keycloak; concurrent updates of the
    // same client's role mappings are refused there (400), so bootstraps take turns.
    static BOOTSTRAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = BOOTSTRAP.lock().unwrap_or_else(|p| p.into_inner());
    let file = dir.path().join("kc-secret");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"))
        .args([
            "keycloak-bootstrap",
            "--keycloak-url",
            &s.keycloak,
            "--secret-file",
        ])
        .arg(&file)
        .env("KEYCLOAK_ADMIN_PASSWORD", &s.admin_password)
        .output()
        .expect("run realmctl keycloak-bootstrap");
    assert!(
        out.status.success(),
        "bootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    file.display().to_string()
}

pub fn provision_yaml(dir: &TempDir, s: Option<&Services>, kube: &Kube) -> String {
    let key = dir.write(
        "secrets.key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    let kubeconfig = dir.write("kubeconfig", &kube.kubeconfig());
    let mut y = format!(
        "provision:\n  secrets_key_file: {}\n  initial_backoff_ms: 100\n  max_backoff_ms: 400\n\
         \x20 database: {{provider: libsql}}\n\
         \x20 ingress: {{provider: kubernetes, kubeconfig: {}, namespace: edge, ingress_class: nginx, service: {{name: realmgate, port: 8080}}, tls_secret: \"{{tenant}}-tls\", cert_issuer: letsencrypt}}\n",
        key.display(),
        kubeconfig.display()
    );
    if let Some(s) = s {
        let secret = bootstrap_keycloak(dir, s);
        y.push_str(&format!(
            "  identity: {{provider: keycloak, url: \"{}\", client_secret_file: {secret}, redirect_scheme: http, redirect_port: 8080}}\n\
             \x20 dns: {{provider: powerdns, api_url: \"{}\", api_key_file: {}, zone: {}, ttl: 60, addresses: [\"127.0.0.7\"]}}\n",
            s.keycloak, s.pdns_url, s.pdns_key_file, s.zone
        ));
    }
    y
}

/// `dig +short` against PowerDNS: what a resolver would get.
pub fn dig(s: &Services, name: &str) -> Vec<String> {
    let (host, port) = s.pdns_dns.split_once(':').expect("host:port");
    let out = std::process::Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            "+short",
            "+time=2",
            name,
            "A",
        ])
        .output()
        .expect("dig (Debian dnsutils) runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Keycloak's admin API as the bootstrap admin, to check what realmctl made.
pub struct KcAdmin {
    base: String,
    password: String,
    http: reqwest::Client,
}

impl KcAdmin {
    pub async fn login(s: &Services) -> KcAdmin {
        KcAdmin {
            base: s.keycloak.clone(),
            password: s.admin_password.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// A fresh token per call: master tokens live 60 s, and it must see new realms.
    pub async fn token(&self) -> String {
        let v: Value = self
            .http
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.base
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=password&client_id=admin-cli&username=admin&password={}",
                self.password
            ))
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        v["access_token"].as_str().expect("admin token").to_owned()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let token = self.token().await;
        let r = self
            .http
            .get(format!("{}/admin/realms{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("keycloak");
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, path: &str) -> usize {
        self.get(path).await.1.as_array().map_or(0, Vec::len)
    }
}

pub async fn wait_state(api: &Api, id: &str, state: &str, within: Duration) -> Value {
    eventually(within, &format!("tenant {id} {state}"), || async {
        let (st, v) = api
            .call(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        (st == StatusCode::OK && v["provisioning"]["state"] == state).then_some(v)
    })
    .await
}

pub async fn wait_gone(api: &Api, id: &str, within: Duration) {
    eventually(within, &format!("tenant {id} deleted"), || async {
        let (st, _) = api
            .call(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        (st == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

pub fn body(id: &str, host: &str) -> Value {
    json!({"id": id, "hosts": [host], "display_name": format!("Tenant {id}"),
           "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]})
}

/// One gateway, a realmctl that provisions with every provider (`services`: Keycloak and
/// PowerDNS; without them, identity and DNS `none`) and a real Kubernetes API server, and a pool `app`
/// whose upstream answers `upstream <name>`.
pub struct Stack {
    pub dir: TempDir,
    pub kube: Kube,
    pub up: Upstream,
    pub gw: Gateway,
    pub rc: Realmctl,
}

impl Stack {
    pub async fn start(prefix: &str, services: Option<&Services>, upstream: &'static str) -> Stack {
        let dir = TempDir::new(prefix);
        let kube = Kube::start(&["edge"]).await;
        let up = Upstream::start(upstream).await;
        let gw = Gateway::start(&dir, "gw", None).await;
        let yaml = provision_yaml(&dir, services, &kube);
        let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
        rc.api().put_pool("app", up.addr).await;
        Stack {
            dir,
            kube,
            up,
            gw,
            rc,
        }
    }
}

/// An access token from a tenant realm's API client (`tenant-admin`, a service account).
pub async fn tenant_admin_token(s: &Services, realm: &str, secret: &str) -> String {
    let v: Value = reqwest::Client::new()
        .post(format!(
            "{}/realms/{realm}/protocol/openid-connect/token",
            s.keycloak
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "tenant-admin"),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("json");
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token from realm {realm}: {v}"))
        .to_owned()
}

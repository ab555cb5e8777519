//! The set-up the console's management tests share: a realmctl whose console signs
//! operators in through a fresh operators' realm of the real Keycloak (bootstrapped with
//! `realmctl operators bootstrap`, first admin `ada`), tenant realms in the same Keycloak,
//! one gateway and one upstream.

use crate::common::provision::{bootstrap_keycloak, Services};
use crate::common::*;
use realmgate_e2e::keycloak::{KcRealm, Keycloak};

pub const CLIENT: &str = "realmctl-console";
pub const PASSWORD: &str = "operator-Passw0rd-e2e";

pub struct Console {
    pub realm: KcRealm,
    pub up: Upstream,
    pub gw: Gateway,
    pub rc: Realmctl,
    pub base: String,
}

impl Console {
    /// In `dir`, with `realm_name` as the operators' realm. `head` goes before realmctl's
    /// `operators:` section (e.g. `gateways:` settings), `provision` under `provision:`.
    pub async fn start(
        dir: &TempDir,
        kc: &Keycloak,
        svc: &Services,
        realm_name: &str,
        upstream: &'static str,
        head: &str,
        provision: &str,
    ) -> Console {
        let secret = bootstrap_keycloak(dir, svc);
        let key = dir.write(
            "secrets.key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
        let yaml = format!(
            "{head}operators:\n  oidc:\n    issuer_url: {}/realms/{realm_name}\n    client_id: {CLIENT}\n    redirect_url: http://{REALMCTL_ADDR}/auth/callback\n\
             provision:\n  secrets_key_file: {}\n  initial_backoff_ms: 100\n  max_backoff_ms: 400\n\
             {provision}\
             \x20 identity: {{provider: keycloak, url: \"{}\", client_secret_file: {secret}, redirect_scheme: http, redirect_port: 8080}}\n",
            kc.url,
            key.display(),
            svc.keycloak
        );
        let up = Upstream::start(upstream).await;
        let gw = Gateway::start(dir, "gw", None).await;
        let rc = Realmctl::start_with(dir, &[&gw], &yaml, &[]).await;
        let base = rc.url();
        let out = crate::common::operators::bootstrap(
            dir,
            &kc.url,
            &svc.admin_password,
            realm_name,
            CLIENT,
            &base,
            ("ada", PASSWORD),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Console {
            realm: KcRealm {
                issuer: format!("{}/realms/{realm_name}", kc.url),
                name: realm_name.to_owned(),
            },
            up,
            gw,
            rc,
            base,
        }
    }
}

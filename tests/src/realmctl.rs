//! realmctl as a real process for the e2e tests: `$REALMCTL_BIN`, else
//! `<workspace>/target/debug/realmctl`, with a provisioning plan of the database step alone
//! (no Keycloak, no Kubernetes): each tenant gets its libsql file under the data directory.

use crate::process::{free_addrs, Proc, TempDir};
use serde_json::Value;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OPERATOR_TOKEN: &str = "operator-token-for-app-database-tests";

/// A running realmctl (no gateways: the tests push their own tables); killed on drop.
pub struct Realmctl {
    proc: Proc,
    addr: SocketAddr,
    dir: TempDir,
    http: reqwest::Client,
}

pub fn realmctl_bin() -> PathBuf {
    crate::process::workspace_bin("realmctl", "REALMCTL_BIN")
}

/// `realmctl serve --conf <conf>` in `dir`, once its `/healthz` at `addr` answers (within
/// `within`; a realmctl that exits or does not answer in time fails the caller with its log).
pub async fn serve(conf: &Path, dir: &TempDir, addr: SocketAddr, within: Duration) -> Proc {
    let args: Vec<OsString> = vec!["serve".into(), "--conf".into(), conf.into()];
    let mut proc = Proc::spawn("realmctl", &realmctl_bin(), &args, dir.path());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = proc.try_wait() {
            panic!("realmctl exited during start ({status})\n{}", proc.logs());
        }
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                return proc;
            }
        }
        assert!(
            Instant::now() < deadline,
            "realmctl did not start\n{}",
            proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Realmctl {
    pub async fn with_databases() -> Realmctl {
        let dir = TempDir::new("realmctl");
        let addr = free_addrs(1)[0];
        let token = dir.write("operator-token", OPERATOR_TOKEN);
        let key = dir.write(
            "secrets.key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
        let conf = dir.write(
            "realmctl.yaml",
            format!(
                "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\n\
                 provision:\n  secrets_key_file: {}\n  initial_backoff_ms: 100\n  max_backoff_ms: 400\n\
                 \x20 database: {{provider: libsql}}\n",
                dir.join("data").display(),
                token.display(),
                key.display()
            ),
        );
        let proc = serve(&conf, &dir, addr, Duration::from_secs(30)).await;
        let http = reqwest::Client::new();
        Realmctl {
            proc,
            addr,
            dir,
            http,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where realmctl keeps tenant databases (`<id>.db`, and `archive/`).
    pub fn tenants_dir(&self) -> PathBuf {
        self.dir.join("data").join("tenants")
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// A call with the operator token.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(OPERATOR_TOKEN, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("realmctl answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `realmctl <args>` as an operator would run it, against this realmctl: its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(realmctl_bin())
            .args(args)
            .env("REALMCTL_URL", self.url())
            .env("REALMCTL_TOKEN_FILE", self.dir.join("operator-token"))
            .output()
            .expect("run the realmctl CLI");
        assert!(
            out.status.success(),
            "realmctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until `GET /v1/tenants/{id}/database` answers `status` to the operator.
    pub async fn until_database(&self, tenant: &str, status: u16) -> Value {
        let path = format!("/v1/tenants/{tenant}/database");
        crate::eventually(
            Duration::from_secs(30),
            &format!("{path} answering {status}"),
            || async {
                let (s, v) = self.call(reqwest::Method::GET, &path, None).await;
                (s == status).then_some(v)
            },
        )
        .await
    }
}

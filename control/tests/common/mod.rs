//! Cross-process harness: the real `realmctl` binary, real `realmgate` processes and real
//! upstream HTTP servers, all on loopback. Nothing here is a mock.

#![allow(dead_code)]

pub mod acme;
pub mod fault_proxy;
pub mod operators;
pub mod pki;
pub mod provision;
pub mod raw;

use realmgate_e2e::process::listens;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0123";
pub const GATEWAY_TOKEN: &str = "gateway-token-for-tests-4567";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temp directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir()
            .join("realmctl-e2e")
            .join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub use realmgate_e2e::process::free_addrs;

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$REALMGATE_BIN`, else `<workspace>/target/debug/realmgate`, built if missing.
pub fn realmgate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REALMGATE_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("target/debug/realmgate");
    if !p.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "realmgate"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build -p realmgate");
        assert!(status.success(), "cargo build -p realmgate failed");
    }
    p
}

/// A child process killed (and reaped) on drop; its output goes to a log file.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn process");
        Proc {
            child: Some(child),
            log,
        }
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `f` every 20 ms until it yields `Some`, or panic with `what` at the deadline.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `proc` itself answers `url`. `Err` when it exited first (its port was taken:
/// the caller starts it again on fresh ports).
async fn wait_healthy(proc: &mut Proc, url: &str, port: u16) -> Result<(), String> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = proc.exited() {
            return Err(format!(
                "process exited with {status} before {url} answered:\n{}",
                proc.log_text()
            ));
        }
        let ours = proc.id().is_some_and(|pid| listens(pid, port));
        if ours {
            if let Ok(r) = http.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} not healthy in time:\n{}",
            proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many times a process is started on fresh ports when its port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// A real `realmgate` process.
pub struct Gateway {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, when started with one ([`Gateway::start_tls`]).
    pub tls: Option<SocketAddr>,
    conf: PathBuf,
    log: PathBuf,
    pub proc: Proc,
}

impl Gateway {
    /// Start a gateway with its state in `dir/<name>/`; `control_url` makes it pull the
    /// table from realmctl at start.
    pub async fn start(dir: &TempDir, name: &str, control_url: Option<&str>) -> Gateway {
        Self::start_listening(dir, name, control_url, false).await
    }

    /// Like [`Gateway::start`], with a TLS listener too (certificates come with the table).
    pub async fn start_tls(dir: &TempDir, name: &str) -> Gateway {
        Self::start_listening(dir, name, None, true).await
    }

    async fn start_listening(
        dir: &TempDir,
        name: &str,
        control_url: Option<&str>,
        tls: bool,
    ) -> Gateway {
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(dir, name, control_url, tls).await {
                Ok(gw) => return gw,
                Err(e) if attempt < START_ATTEMPTS => eprintln!("gateway {name}: {e}; again"),
                Err(e) => panic!("gateway {name}: {e}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    async fn try_start(
        dir: &TempDir,
        name: &str,
        control_url: Option<&str>,
        tls: bool,
    ) -> Result<Gateway, String> {
        let addrs = free_addrs(3);
        let tls = tls.then_some(addrs[2]);
        let tls_yaml = tls.map_or_else(String::new, |a| format!("\n  tls_listen: [\"{a}\"]"));
        let token = dir.write(&format!("{name}-token"), GATEWAY_TOKEN);
        let state = dir.path().join(format!("{name}-state"));
        let control = control_url.map_or_else(String::new, |u| format!("\n  control_url: {u}"));
        let conf = dir.write(
            &format!("{name}.yaml"),
            &format!(
                "pingora: {{threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}}\n\
                 gateway:\n  listen: {}\n  admin_listen: {}\n  admin_token_file: {}\n  state_dir: {}\n  health_check_interval_ms: 200{control}{tls_yaml}\n",
                addrs[0],
                addrs[1],
                token.display(),
                state.display()
            ),
        );
        let log = dir.path().join(format!("{name}.log"));
        let mut gw = Gateway {
            listen: addrs[0],
            admin: addrs[1],
            tls,
            proc: Proc::spawn(Self::command(&conf), log.clone()),
            conf,
            log,
        };
        gw.wait().await?;
        Ok(gw)
    }

    fn command(conf: &Path) -> Command {
        let mut cmd = Command::new(realmgate_bin());
        cmd.arg("--conf").arg(conf).env("RUST_LOG", "info");
        cmd
    }

    async fn wait(&mut self) -> Result<(), String> {
        let url = format!("http://{}/healthz", self.admin);
        wait_healthy(&mut self.proc, &url, self.admin.port()).await?;
        // The data port too: Pingora binds it after the admin listener.
        let (pid, port) = (self.proc.id(), self.listen.port());
        for _ in 0..400 {
            if let Some(status) = self.proc.exited() {
                return Err(format!("exited with {status} binding {}", self.listen));
            }
            if pid.is_some_and(|p| listens(p, port)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("{} never listened", self.listen))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Start again with the same configuration, ports and state directory.
    pub async fn restart(&mut self) {
        self.proc.kill();
        self.proc = Proc::spawn(Self::command(&self.conf), self.log.clone());
        if let Err(e) = self.wait().await {
            panic!("gateway restart on {}: {e}", self.admin);
        }
    }

    /// `GET /` with `Host: host`: the status and body.
    pub async fn get(&self, host: &str) -> Option<(u16, String)> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let r = http
            .get(format!("http://{}/", self.listen))
            .header(reqwest::header::HOST, host)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    /// The table version the gateway serves (`GET /v1/table` on its admin API).
    pub async fn version(&self) -> Option<u64> {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/table", self.admin_url()))
            .bearer_auth(GATEWAY_TOKEN)
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["version"].as_u64()
    }
}

/// In [`Realmctl::start_with`]'s `extra`: replaced by the address realmctl listens on.
pub const REALMCTL_ADDR: &str = "{REALMCTL_ADDR}";

/// The real `realmctl serve` process.
pub struct Realmctl {
    pub addr: SocketAddr,
    conf: PathBuf,
    log: PathBuf,
    pub proc: Proc,
}

impl Realmctl {
    pub async fn start(dir: &TempDir, gateways: &[&Gateway]) -> Realmctl {
        Self::start_with(dir, gateways, "", &[]).await
    }

    /// Start with `extra` appended to the configuration (e.g. a `provision:` section; its
    /// [`REALMCTL_ADDR`] becomes the listen address) and extra environment variables.
    pub async fn start_with(
        dir: &TempDir,
        gateways: &[&Gateway],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Realmctl {
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(dir, gateways, extra, env).await {
                Ok(r) => return r,
                Err(e) if attempt < START_ATTEMPTS => eprintln!("realmctl: {e}; again"),
                Err(e) => panic!("realmctl: {e}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    async fn try_start(
        dir: &TempDir,
        gateways: &[&Gateway],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Realmctl, String> {
        let addr = free_addrs(1)[0];
        let admin = dir.write("operator-token", OPERATOR_TOKEN);
        let gw_token = dir.write("realmctl-gateway-token", GATEWAY_TOKEN);
        let urls: Vec<String> = gateways
            .iter()
            .map(|g| format!("\"{}\"", g.admin_url()))
            .collect();
        let conf = dir.write(
            "realmctl.yaml",
            &(format!(
                "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\n\
                 gateways:\n  urls: [{}]\n  token_file: {}\n\
                 \x20 push: {{initial_backoff_ms: 50, max_backoff_ms: 250, resync_interval_ms: 1000, timeout_ms: 10000}}\n",
                dir.path().join("realmctl-data").display(),
                admin.display(),
                urls.join(", "),
                gw_token.display()
) + &extra.replace(REALMCTL_ADDR, &addr.to_string())),
        );
        let log = dir.path().join("realmctl.log");
        let mut r = Realmctl {
            addr,
            proc: Proc::spawn(Self::command(&conf, env), log.clone()),
            conf,
            log,
        };
        r.wait().await?;
        Ok(r)
    }

    fn command(conf: &Path, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_realmctl"));
        cmd.arg("serve")
            .arg("--conf")
            .arg(conf)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// A second realmctl on this one's data directory and configuration, listening on
    /// another port: spawned, not waited for (it stands by while this one runs).
    pub fn spawn_standby(&self, dir: &TempDir) -> (Proc, SocketAddr) {
        let addr = free_addrs(1)[0];
        let conf = std::fs::read_to_string(&self.conf)
            .expect("read realmctl.yaml")
            .replacen(
                &format!("listen: {}", self.addr),
                &format!("listen: {addr}"),
                1,
            );
        let conf = dir.write("realmctl-standby.yaml", &conf);
        let log = dir.path().join("realmctl-standby.log");
        (Proc::spawn(Self::command(&conf, &[]), log), addr)
    }

    /// SIGKILL, then start again on the same data directory with `env`.
    pub async fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.proc.kill();
        self.proc = Proc::spawn(Self::command(&self.conf, env), self.log.clone());
        if let Err(e) = self.wait().await {
            panic!("realmctl restart on {}: {e}", self.addr);
        }
    }

    async fn wait(&mut self) -> Result<(), String> {
        let url = format!("{}/healthz", self.url());
        wait_healthy(&mut self.proc, &url, self.addr.port()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kill (SIGKILL: no graceful shutdown) and start again on the same data directory.
    pub async fn restart(&mut self) {
        self.restart_with(&[]).await;
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.url(),
            token: OPERATOR_TOKEN.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Wait until every gateway reports `version` (or newer) applied.
    pub async fn wait_in_sync(&self, version: u64, within: Duration) {
        let api = self.api();
        eventually(
            within,
            &format!("every gateway at version {version}"),
            || async {
                let (_, v) = api.call(Method::GET, "/v1/gateways", None).await;
                let all = v["gateways"].as_array()?;
                all.iter()
                    .all(|g| g["applied_version"].as_u64().is_some_and(|a| a >= version))
                    .then_some(())
            },
        )
        .await;
    }
}

/// realmctl's API with the operator token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    /// `PUT /v1/upstreams/{name}` with one endpoint; asserts success, returns the table version.
    pub async fn put_pool(&self, name: &str, endpoint: SocketAddr) -> u64 {
        let (status, v) = self
            .call(
                Method::PUT,
                &format!("/v1/upstreams/{name}"),
                Some(serde_json::json!({"endpoints": [endpoint.to_string()]})),
            )
            .await;
        assert!(status.is_success(), "{v}");
        v["table_version"].as_u64().expect("version")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = req.send().await.expect("realmctl answers");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A loopback HTTP server answering `upstream <name>` to everything.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(move || async move { format!("upstream {name}") });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { addr, task }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn tenant_body(id: &str, hosts: &[&str], upstream: &str) -> Value {
    serde_json::json!({"id": id, "hosts": hosts, "display_name": id,
        "routes": [{"prefix": "/", "upstream": upstream, "auth": "public"}]})
}

/// Wait until `gw` answers `host` with `status` (and, for 200, the upstream's body).
pub async fn until_answers(
    gw: &Gateway,
    host: &str,
    status: u16,
    body: Option<&str>,
    within: Duration,
) {
    eventually(
        within,
        &format!("{host} answering {status} at {}", gw.listen),
        || async {
            let (s, b) = gw.get(host).await?;
            (s == status && body.is_none_or(|want| b.contains(want))).then_some(())
        },
    )
    .await;
}

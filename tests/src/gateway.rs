//! The real `realmgate` process under test: config, start, admin calls, kill -9 and restart.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, HOST};
use serde_json::Value;

use crate::echo::Echo;
use crate::metrics::Metrics;
use crate::process::{free_addrs, realmgate_bin, Proc, TempDir};
use crate::raw::{raw_request, RawResponse};

/// How long a gateway may take to answer `/healthz` after spawn (debug build, busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Gateway::start`].
#[derive(Debug, Clone)]
pub struct GatewayOpts {
    pub health_check_interval_ms: u64,
    pub token: String,
    /// More YAML under `gateway:`, indented by two spaces (e.g. `  auth:\n    clock_skew_s: 0\n`).
    pub gateway_yaml: String,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        GatewayOpts {
            health_check_interval_ms: 200,
            token: "e2e-admin-token-3f9c1a".to_string(),
            gateway_yaml: String::new(),
        }
    }
}

/// A fully custom launch, for config tests (flags only, flags overriding a file, ...).
pub struct Launch {
    /// Owns the logs and whatever files the args point to; removed on drop of the gateway.
    pub dir: TempDir,
    pub args: Vec<OsString>,
    /// Where the data listener is expected.
    pub listen: SocketAddr,
    /// Where the admin listener is expected.
    pub admin: SocketAddr,
    /// The admin token the gateway was given, if any.
    pub token: Option<String>,
    pub state_dir: PathBuf,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a gateway error: this status, a JSON body with this `error` code, and a
    /// `request_id` equal to the `x-request-id` response header. Returns the body.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        crate::check_error(
            status,
            code,
            self.status,
            self.header("content-type"),
            self.header("x-request-id"),
            &self.text,
        )
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {}, headers {:?}, body {:?}",
                self.status, self.headers, self.text
            )
        })
    }

    /// The upstream echo; panics unless the status is 200 and the body is an echo.
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status, 200,
            "expected a proxied 200, got {}: {}",
            self.status, self.text
        );
        Echo::from_json(&self.json())
    }
}

/// A running `realmgate`. Dropping it kills the process (SIGKILL, reaped) and removes its dir.
pub struct Gateway {
    // Declared first so it drops (and the process dies) before the dir is removed.
    proc: Proc,
    listen: SocketAddr,
    admin: SocketAddr,
    token: Option<String>,
    state_dir: PathBuf,
    args: Vec<OsString>,
    client: reqwest::Client,
    /// The TLS listener, when started with one ([`Gateway::start_tls`]).
    tls: Option<SocketAddr>,
    dir: TempDir,
}

/// A reqwest client that ignores proxy settings from the environment and never hangs a test.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client")
}

impl Gateway {
    /// Writes a token file and a YAML config into a fresh temp dir, starts the gateway with
    /// `--conf` on two free loopback ports and waits until `/healthz` answers.
    /// A port taken by a parallel test before the gateway bound it: started again on fresh
    /// ports, up to five times.
    pub async fn start(opts: GatewayOpts) -> Gateway {
        Gateway::start_listening(opts, false).await
    }

    /// Like [`Gateway::start`], with a TLS listener too (`gateway.tls_listen`, a third free
    /// loopback port): see [`Gateway::tls_addr`].
    pub async fn start_tls(opts: GatewayOpts) -> Gateway {
        Gateway::start_listening(opts, true).await
    }

    async fn start_listening(opts: GatewayOpts, tls: bool) -> Gateway {
        for attempt in 1..=5 {
            match Gateway::try_start(&opts, tls).await {
                Ok(gw) => return gw,
                Err(e) if attempt < 5 => eprintln!("realmgate: {e}; starting again"),
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    async fn try_start(opts: &GatewayOpts, tls: bool) -> Result<Gateway, String> {
        let dir = TempDir::new("gw");
        let addrs = free_addrs(3);
        let (listen, admin) = (addrs[0], addrs[1]);
        let tls = tls.then_some(addrs[2]);
        let tls_yaml = tls
            .map(|a| format!("  tls_listen: [\"{a}\"]\n"))
            .unwrap_or_default();
        let token_file = dir.write("admin-token", format!("{}\n", opts.token));
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).expect("create state dir");
        let conf = format!(
            "pingora:\n  threads: 2\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n\
             gateway:\n  listen: \"{listen}\"\n  admin_listen: \"{admin}\"\n  admin_token_file: \"{}\"\n  \
             state_dir: \"{}\"\n  health_check_interval_ms: {}\n{tls_yaml}{}",
            token_file.display(),
            state_dir.display(),
            opts.health_check_interval_ms,
            // `$TLS_PORT` in the caller's YAML: the TLS listener's port (e.g. for https_port).
            opts.gateway_yaml
                .replace("$TLS_PORT", &tls.map_or(0, |a| a.port()).to_string()),
        );
        let conf_file = dir.write("realmgate.yaml", conf);
        Gateway::try_launch_tls(
            Launch {
                args: vec!["--conf".into(), conf_file.into()],
                dir,
                listen,
                admin,
                token: Some(opts.token.clone()),
                state_dir,
            },
            tls,
        )
        .await
    }

    /// Starts the binary with `launch.args` and waits until `/healthz` answers on `launch.admin`.
    pub async fn launch(launch: Launch) -> Gateway {
        match Gateway::try_launch(launch).await {
            Ok(gw) => gw,
            Err(e) => panic!("{e}"),
        }
    }

    async fn try_launch(launch: Launch) -> Result<Gateway, String> {
        Gateway::try_launch_tls(launch, None).await
    }

    async fn try_launch_tls(launch: Launch, tls: Option<SocketAddr>) -> Result<Gateway, String> {
        let proc = Proc::spawn(
            "realmgate",
            &realmgate_bin(),
            &launch.args,
            launch.dir.path(),
        );
        let mut gw = Gateway {
            proc,
            listen: launch.listen,
            admin: launch.admin,
            token: launch.token,
            state_dir: launch.state_dir,
            args: launch.args,
            client: http_client(),
            tls,
            dir: launch.dir,
        };
        gw.wait_healthy().await?;
        Ok(gw)
    }

    /// Until this process answers `/healthz` and holds both its listeners (the admin listener
    /// starts before Pingora binds the data one). `Err` when it exited first.
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.admin_url("/healthz");
        loop {
            if let Some(status) = self.proc.try_wait() {
                return Err(format!(
                    "realmgate exited during start ({status}); args {:?}\n{}",
                    self.args,
                    self.proc.logs()
                ));
            }
            let ours = self.proc.id().is_some_and(|pid| {
                crate::process::listens(pid, self.admin.port())
                    && crate::process::listens(pid, self.listen.port())
                    && self
                        .tls
                        .is_none_or(|t| crate::process::listens(pid, t.port()))
            });
            if ours {
                if let Ok(r) = self.client.get(&url).send().await {
                    if r.status().as_u16() == 200 {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "realmgate did not answer {url} (and accept on its data port) within {START_TIMEOUT:?}; args {:?}\n{}",
                    self.args,
                    self.proc.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The TLS listener; panics unless started with [`Gateway::start_tls`].
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls.expect("gateway started without a TLS listener")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The process logs so far (for messages).
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// The gateway's process id (`None` once it was stopped).
    pub fn pid(&self) -> Option<u32> {
        self.proc.id()
    }

    /// The gateway process's resident memory, bytes (Linux `/proc`), `None` when unreadable.
    pub fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.listen)
    }

    pub fn admin_url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.admin)
    }

    /// A GET on the data listener with this Host header.
    pub fn get(&self, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).header(HOST, host)
    }

    /// Sends `req` and reads the whole response; panics on transport errors.
    pub async fn fetch(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", self.proc.logs()));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read response body");
        Reply {
            status,
            headers,
            text,
        }
    }

    /// GET `path` with `Host: host`, the whole response.
    pub async fn request(&self, host: &str, path: &str) -> Reply {
        self.fetch(self.get(host, path)).await
    }

    /// GET `path` with `Host: host`; it must be proxied (200), the echo is returned.
    pub async fn echo(&self, host: &str, path: &str) -> Echo {
        let reply = self.request(host, path).await;
        assert_eq!(
            reply.status, 200,
            "GET {path} Host {host}: expected a proxied 200, got {}: {}",
            reply.status, reply.text
        );
        Echo::from_json(&reply.json())
    }

    /// Sends raw bytes to the data listener on a fresh connection.
    pub async fn raw(&self, request: impl AsRef<[u8]>) -> RawResponse {
        raw_request(self.listen, request).await
    }

    fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// `PUT /v1/table` with the admin token: `(status, body)`; a non-JSON body is a JSON string.
    pub async fn push(&self, table: &Value) -> (u16, Value) {
        let auth = self.bearer();
        self.push_with(table.to_string(), auth.as_deref()).await
    }

    /// `PUT /v1/table` with any body and any (or no) `Authorization` header value.
    pub async fn push_with(&self, body: String, authorization: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .put(self.admin_url("/v1/table"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        let reply = self.fetch(req).await;
        (reply.status, body_value(&reply.text))
    }

    /// `PATCH /v1/table` (a delta) with the admin token: `(status, body)`.
    pub async fn push_delta(&self, delta: &Value) -> (u16, Value) {
        let auth = self.bearer();
        self.patch_with(delta.to_string(), "application/json", auth.as_deref())
            .await
    }

    /// `PATCH /v1/table` with any body, content type and (or no) `Authorization` value.
    pub async fn patch_with(
        &self,
        body: String,
        content_type: &str,
        authorization: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .patch(self.admin_url("/v1/table"))
            .header("content-type", content_type)
            .body(body);
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        let reply = self.fetch(req).await;
        (reply.status, body_value(&reply.text))
    }

    /// Pushes and asserts 200 with the table's version.
    pub async fn push_ok(&self, table: &Value) {
        let (status, body) = self.push(table).await;
        assert_eq!(
            status, 200,
            "push of version {} refused: {body}",
            table["version"]
        );
        assert_eq!(body["version"], table["version"], "push answer: {body}");
    }

    /// `GET /v1/table` with the token: `(status, body)`.
    pub async fn table_info(&self) -> (u16, Value) {
        self.admin_get_json("/v1/table").await
    }

    /// An admin GET with the token: `(status, body as JSON or JSON string)`.
    pub async fn admin_get_json(&self, path: &str) -> (u16, Value) {
        let mut req = self.client.get(self.admin_url(path));
        if let Some(a) = self.bearer() {
            req = req.header(AUTHORIZATION, a);
        }
        let reply = self.fetch(req).await;
        (reply.status, body_value(&reply.text))
    }

    /// An admin GET without any token.
    pub async fn admin_get_anon(&self, path: &str) -> Reply {
        self.fetch(self.client.get(self.admin_url(path))).await
    }

    pub async fn metrics(&self) -> Metrics {
        let reply = self.admin_get_anon("/metrics").await;
        assert_eq!(reply.status, 200, "/metrics: {}", reply.text);
        Metrics::parse(&reply.text)
    }

    /// Waits until `/readyz` answers 200 (a table is loaded).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.admin_get_anon("/readyz").await;
            if reply.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {} after 10s: {}\n{}",
                reply.status,
                reply.text,
                self.proc.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL, like `kill -9`: no shutdown hook runs.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.id().is_some() && self.proc.try_wait().is_none()
    }

    /// Kills the process if it still runs, then starts it again with the same args (same
    /// config, ports and state dir) and waits for `/healthz`.
    pub async fn restart(&mut self) {
        self.proc.kill();
        self.proc = Proc::spawn("realmgate", &realmgate_bin(), &self.args, self.dir.path());
        if let Err(e) = self.wait_healthy().await {
            panic!("{e}");
        }
    }
}

fn body_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

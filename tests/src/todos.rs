//! The example `todos` app as a real process: `$TODOS_BIN`, else `<workspace>/target/debug/todos`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::process::{free_addrs, Proc, TempDir};

/// A running `todos` with its own data dir (one libsql file per tenant); killed on drop.
pub struct Todos {
    proc: Proc,
    addr: SocketAddr,
    dir: TempDir,
    /// The stand-in database directory of [`Todos::verifying`], while it runs.
    directory: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Todos {
    fn drop(&mut self) {
        if let Some(d) = self.directory.take() {
            d.abort();
        }
    }
}

/// The credential the stand-in directory of [`Todos::verifying`] accepts.
const STAND_IN_CREDENTIAL: &str = "rga_stand-in-for-tests-about-the-assertion";

/// A stand-in for realmctl's `GET /v1/tenants/{id}/database` (for the tests about the
/// assertion, which run without realmctl): every tenant's database is `<data>/<id>.db`,
/// made empty on first ask, as realmctl's database step would. The tests about the tenant
/// database itself use the real realmctl (`tests/tests/app_database.rs`).
async fn stand_in_directory(data: PathBuf) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    async fn locate(
        State(data): State<PathBuf>,
        Path(tenant): Path<String>,
        headers: HeaderMap,
    ) -> Result<axum::Json<serde_json::Value>, StatusCode> {
        let bearer = format!("Bearer {STAND_IN_CREDENTIAL}");
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let ok = !tenant.is_empty()
            && tenant
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !ok {
            return Err(StatusCode::FORBIDDEN);
        }
        let path = data.join(format!("{tenant}.db"));
        if !path.exists() {
            std::fs::write(&path, b"").map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        }
        Ok(axum::Json(
            serde_json::json!({"tenant": tenant, "kind": "file", "path": path}),
        ))
    }
    std::fs::create_dir_all(&data).expect("todos data dir");
    let app = axum::Router::new()
        .route("/v1/tenants/{id}/database", axum::routing::get(locate))
        .with_state(data);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the stand-in directory");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

pub fn todos_bin() -> PathBuf {
    crate::process::workspace_bin("todos", "TODOS_BIN")
}

impl Todos {
    /// Believing the plain `x-realmgate-*` headers (`--trust-headers`): for the shell tests,
    /// which run without a realm.
    pub async fn start() -> Todos {
        Todos::start_with(&["--trust-headers"]).await
    }

    /// Verifying assertions against `jwks_url` for `pool` (issuer `realmgate`), fetching the
    /// keys again on every unknown `kid` (no refetch interval: tests are not timed); tenant
    /// databases from a stand-in of realmctl's database endpoint.
    pub async fn verifying(jwks_url: &str, pool: &str) -> Todos {
        let dir = TempDir::new("todos");
        let (addr, task) = stand_in_directory(dir.join("data")).await;
        let credential = dir.write("app-credential", STAND_IN_CREDENTIAL);
        let url = format!("http://{addr}");
        let credential = credential.display().to_string();
        let mut t = Todos::start_in(
            dir,
            &[
                "--jwks-url",
                jwks_url,
                "--pool",
                pool,
                "--jwks-refetch-interval-ms",
                "0",
                "--realmctl-url",
                &url,
                "--app-credential-file",
                &credential,
            ],
        )
        .await;
        t.directory = Some(task);
        t
    }

    /// Verifying assertions against `jwks_url` for `pool`, tenant databases from the real
    /// realmctl at `realmctl_url` with the app credential in `credential_file`.
    pub async fn with_realmctl(
        jwks_url: &str,
        pool: &str,
        realmctl_url: &str,
        credential_file: &std::path::Path,
    ) -> Todos {
        let credential = credential_file.display().to_string();
        Todos::start_with(&[
            "--jwks-url",
            jwks_url,
            "--pool",
            pool,
            "--jwks-refetch-interval-ms",
            "0",
            "--realmctl-url",
            realmctl_url,
            "--app-credential-file",
            &credential,
        ])
        .await
    }

    /// With `--trust-headers` (and no `--realmctl-url`), the demo's `--data-dir`.
    pub async fn start_with(extra: &[&str]) -> Todos {
        Todos::start_in(TempDir::new("todos"), extra).await
    }

    async fn start_in(dir: TempDir, extra: &[&str]) -> Todos {
        let addr = free_addrs(1)[0];
        let mut args: Vec<OsString> = vec!["--listen".into(), addr.to_string().into()];
        if extra.contains(&"--trust-headers") && !extra.contains(&"--realmctl-url") {
            args.extend(["--data-dir".into(), dir.join("data").into()]);
        }
        args.extend(extra.iter().map(Into::into));
        let mut proc = Proc::spawn("todos", &todos_bin(), &args, dir.path());
        let client = crate::gateway::http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = proc.try_wait() {
                panic!("todos exited during start ({status})\n{}", proc.logs());
            }
            if let Ok(r) = client.get(format!("http://{addr}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "todos did not start\n{}",
                proc.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Todos {
            proc,
            addr,
            dir,
            directory: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where tenant databases live (`<tenant>.db`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }
}

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
    /// keys again on every unknown `kid` (no refetch interval: tests are not timed).
    pub async fn verifying(jwks_url: &str, pool: &str) -> Todos {
        Todos::start_with(&[
            "--jwks-url",
            jwks_url,
            "--pool",
            pool,
            "--jwks-refetch-interval-ms",
            "0",
        ])
        .await
    }

    pub async fn start_with(extra: &[&str]) -> Todos {
        let dir = TempDir::new("todos");
        let addr = free_addrs(1)[0];
        let mut args: Vec<OsString> = vec![
            "--listen".into(),
            addr.to_string().into(),
            "--data-dir".into(),
            dir.join("data").into(),
        ];
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
        Todos { proc, addr, dir }
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

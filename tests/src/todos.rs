//! The example `todos` app as a real process: `$TODOS_BIN`, else `<workspace>/target/debug/todos`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::process::{free_addrs, Proc, TempDir};
use crate::realmctl::Realmctl;

/// A running `todos`; killed on drop (with the realmctl of [`Todos::verifying`]).
pub struct Todos {
    proc: Proc,
    addr: SocketAddr,
    dir: TempDir,
    /// The realmctl [`Todos::verifying`] started: it holds the tenants' databases.
    realmctl: Option<Realmctl>,
}

pub fn todos_bin() -> std::path::PathBuf {
    crate::process::workspace_bin("todos", "TODOS_BIN")
}

/// Make `pool` and `tenants` (hosts `<id>.test`, `/todos/` forwarding to `pool`) in `rc`,
/// wait until each tenant's database is provisioned, and mint the todos app's credential for
/// `pool` with realmctl's CLI, as `deploy/local/run` does: the credential (shown once).
///
/// The pool's endpoint is a placeholder: the tests push their own tables to their gateways;
/// realmctl's tenants are there for their databases and for the credential's scope.
pub async fn provision_for_todos(rc: &Realmctl, pool: &str, tenants: &[&str]) -> String {
    let (s, v) = rc
        .call(
            Method::PUT,
            &format!("/v1/upstreams/{pool}"),
            Some(json!({"endpoints": ["127.0.0.1:9"]})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    for id in tenants {
        let body = json!({"id": id, "hosts": [format!("{id}.test")], "display_name": id,
                          "routes": [{"prefix": "/todos/", "upstream": pool, "auth": "public"}]});
        let (s, v) = rc.call(Method::POST, "/v1/tenants", Some(body)).await;
        assert!(s == 201 || s == 202, "{s} {v}");
    }
    for id in tenants {
        rc.until_database(id, 200).await;
    }
    let out = rc.cli(&["app", "create", "todos", "--pool", pool]);
    let credential = out.lines().next().unwrap_or("").to_owned();
    assert!(credential.starts_with("rga_"), "{out}");
    credential
}

impl Todos {
    /// As the local platform runs it: verifying the gateway's assertions against `jwks_url`
    /// for `pool` (issuer `realmgate`; the keys fetched again on every unknown `kid`, no
    /// refetch interval, as tests are not timed), and reading each tenant's database from a
    /// real realmctl started for it, where `tenants` and `pool` are made and the app's
    /// credential minted ([`provision_for_todos`]). [`Todos::realmctl`] is that realmctl.
    pub async fn verifying(jwks_url: &str, pool: &str, tenants: &[&str]) -> Todos {
        let rc = Realmctl::with_databases().await;
        let credential = provision_for_todos(&rc, pool, tenants).await;
        let dir = TempDir::new("todos");
        let file = dir.write("app-credential", &credential);
        let mut t = Todos::start_in(dir, &verifying_args(jwks_url, pool, &rc.url(), &file)).await;
        t.realmctl = Some(rc);
        t
    }

    /// Verifying assertions against `jwks_url` for `pool`, tenant databases from the real
    /// realmctl at `realmctl_url` (the caller's) with the app credential in `credential_file`.
    pub async fn with_realmctl(
        jwks_url: &str,
        pool: &str,
        realmctl_url: &str,
        credential_file: &Path,
    ) -> Todos {
        let args = verifying_args(jwks_url, pool, realmctl_url, credential_file);
        Todos::start_in(TempDir::new("todos"), &args).await
    }

    /// Believing the plain `x-realmgate-*` headers (`--trust-headers`, the weaker mode for
    /// apps that cannot verify), with the demo's `--data-dir`: only for tests about that mode.
    pub async fn trusting_headers() -> Todos {
        let dir = TempDir::new("todos");
        let data = dir.join("data").display().to_string();
        Todos::start_in(dir, &["--trust-headers".into(), "--data-dir".into(), data]).await
    }

    async fn start_in(dir: TempDir, extra: &[String]) -> Todos {
        let addr = free_addrs(1)[0];
        let mut args: Vec<OsString> = vec!["--listen".into(), addr.to_string().into()];
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
            realmctl: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The realmctl of [`Todos::verifying`] (its tenants' databases: `tenants_dir()`).
    pub fn realmctl(&self) -> &Realmctl {
        self.realmctl
            .as_ref()
            .expect("a realmctl: this todos was started by Todos::verifying")
    }

    /// With `--trust-headers`: where the demo keeps tenant databases (`<tenant>.db`).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.join("data")
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }
}

fn verifying_args(
    jwks_url: &str,
    pool: &str,
    realmctl_url: &str,
    credential: &Path,
) -> Vec<String> {
    [
        "--jwks-url",
        jwks_url,
        "--pool",
        pool,
        "--jwks-refetch-interval-ms",
        "0",
        "--realmctl-url",
        realmctl_url,
        "--app-credential-file",
        &credential.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

//! Push bench: compile tables of 1k, 10k and 100k tenants with realmctl's compiler and push
//! them with realmctl's push workers to two real `realmgate` processes; print the time from
//! the start of the compile until both gateways have applied each table.
//!
//! ```text
//! cargo build --release -p realmgate
//! cargo run --release -p realmctl --example push_bench -- [--tenants 1000,10000,100000] [--rounds 3]
//! ```
//!
//! The gateway binary is `$REALMGATE_BIN`, else `target/release/realmgate` when it exists,
//! else `target/debug/realmgate`. Target (issue 6): 100k tenants converged in < 2 s.

use realmctl::compile::compile;
use realmctl::ids::{TenantId, UpstreamName};
use realmctl::metrics::Metrics;
use realmctl::model::{Model, TenantRecord, UpstreamRecord};
use realmctl::push::{PushSettings, Pusher};
use realmgate_table::host::HostPattern;
use realmgate_table::{AuthSpec, Route, Tenant, TenantStatus, Upstream};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "push-bench-token-0123456789";

struct Gw {
    child: Child,
    admin: String,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REALMGATE_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = root.join("target/release/realmgate");
    if release.exists() {
        release
    } else {
        root.join("target/debug/realmgate")
    }
}

fn start_gateway(dir: &std::path::Path, name: &str) -> Result<Gw, Box<dyn std::error::Error>> {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN)?;
    let (listen, admin) = (free_port()?, free_port()?);
    let conf = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &conf,
        format!(
            "pingora: {{threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}}\n\
             gateway:\n  listen: 127.0.0.1:{listen}\n  admin_listen: 127.0.0.1:{admin}\n  admin_token_file: {}\n  state_dir: {}\n  health_check_interval_ms: 60000\n",
            token.display(),
            dir.join(format!("{name}-state")).display()
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(gateway_bin())
        .arg("--conf")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(Gw {
        child,
        admin: format!("http://127.0.0.1:{admin}"),
    })
}

async fn wait_up(gw: &Gw) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(format!("{}/healthz", gw.admin))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("gateway {} did not start", gw.admin).into())
}

fn model(tenants: usize) -> Result<Model, Box<dyn std::error::Error>> {
    let mut m = Model::default();
    let app = UpstreamName::parse("app").ok_or("name")?;
    let spec = Upstream {
        endpoints: vec!["127.0.0.1:9".into()],
        health_check: None,
        connect_timeout_ms: None,
        read_timeout_ms: None,
        write_timeout_ms: None,
        ..Upstream::default()
    };
    m.upstreams.insert(
        app,
        UpstreamRecord {
            spec,
            table_version: 1,
            updated_at_ms: 0,
        },
    );
    for i in 0..tenants {
        let id = format!("t{i}");
        let host = format!("t{i}.bench.test");
        let pattern = HostPattern::parse(&host).map_err(|e| e.to_string())?;
        let record = TenantRecord {
            wire: Tenant {
                id: id.clone(),
                hosts: vec![host],
                routes: vec![Route {
                    prefix: "/".into(),
                    upstream: "app".into(),
                    auth: AuthSpec::One("public".into()),
                    namespace: None,
                    forward_token: false,
                }],
                status: TenantStatus::Active,
                rate_limits: Default::default(),
                realm: None,
                display_name: None,
                catalog: Vec::new(),
                shell: None,
                ..Tenant::default()
            },
            display_name: id.clone(),
            catalog: Vec::new(),
            revision: 1,
            table_version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            provision: realmctl::provision::Provision::ready(Vec::new()),
        };
        m.put_tenant(TenantId::parse(&id).ok_or("id")?, record, vec![pattern]);
    }
    Ok(m)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = arg("--tenants")
        .unwrap_or_else(|| "1000,10000,100000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let rounds: usize = arg("--rounds").map_or(Ok(3), |r| r.parse())?;
    let dir = std::env::temp_dir().join(format!("realmctl-push-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let gws = [start_gateway(&dir, "g1")?, start_gateway(&dir, "g2")?];
    for g in &gws {
        wait_up(g).await?;
    }
    let (tx, rx) = tokio::sync::watch::channel(None);
    let urls: Vec<String> = gws.iter().map(|g| g.admin.clone()).collect();
    let pusher = Pusher::start(
        &urls,
        &Default::default(),
        Some(TOKEN.into()),
        PushSettings::default(),
        rx,
        Arc::new(Metrics::new()?),
    )?;

    println!("gateway binary: {}", gateway_bin().display());
    println!(
        "{:>8}  {:>10}  {:>10}  {:>12}  {:>12}",
        "tenants", "bytes", "compile", "converged", "median"
    );
    // Bench tenants are not provisioned: no secret is ever opened.
    let secrets = realmctl::provision::secrets::SecretBox::random();
    let mut version = 0u64;
    for &n in &sizes {
        let mut m = model(n)?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            version += 1;
            m.version = version;
            let started = Instant::now();
            let compiled = compile(&m, &secrets)?;
            let compile_took = started.elapsed();
            let bytes = compiled.full_table().map_err(|e| e.to_string())?.body.len();
            tx.send_replace(Some(Arc::new(compiled)));
            let deadline = started + Duration::from_secs(120);
            while !pusher
                .gateways()
                .iter()
                .all(|g| g.applied().is_some_and(|a| a >= version))
            {
                if Instant::now() > deadline {
                    return Err(format!(
                        "gateways did not apply version {version}: {:?}",
                        pusher.views()
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let took = started.elapsed();
            times.push(took);
            println!(
                "{n:>8}  {bytes:>10}  {:>10.1?}  {:>12.1?}",
                compile_took, took
            );
        }
        times.sort_unstable();
        println!(
            "{n:>8}  {:>10}  {:>10}  {:>12}  {:>12.1?}",
            "",
            "",
            "",
            times[times.len() / 2]
        );
    }
    drop(gws);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

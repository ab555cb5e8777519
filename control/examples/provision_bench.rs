//! Provisioning bench: time per tenant (median of 20, one after another) and for 10 tenants
//! in parallel, through realmctl's own service and runner against a real Keycloak and libsql
//! files, with the share of the time spent waiting on Keycloak. Prints a markdown table.
//!
//! ```sh
//! KEYCLOAK_ADMIN_PASSWORD=… cargo run --release -p realmctl --example provision_bench -- \
//!   --keycloak-url http://127.0.0.1:18180 [--sequential 20] [--parallel 10]
//! ```
//! The tenants (realms `pb<pid>x<n>`) are deleted again at the end.

use realmctl::ids::TenantId;
use realmctl::provision::config::RunnerSettings;
use realmctl::provision::database::Database;
use realmctl::provision::identity::{Identity, IdentitySettings};
use realmctl::provision::keycloak::{bootstrap, Credentials, Keycloak};
use realmctl::provision::secrets::SecretBox;
use realmctl::provision::{Plan, Step, StepKind, TenantState};
use realmctl::registry::Registry;
use realmctl::service::runner::Runner;
use realmctl::service::Control;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn until_ready(c: &Control, id: &TenantId) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match c.provision_snapshot(id) {
            Some((_, p)) if p.state == TenantState::Ready => return Ok(()),
            Some((_, p)) if p.state == TenantState::Failed => {
                return Err(format!("{id}: {}", p.error.unwrap_or_default()))
            }
            _ if Instant::now() > deadline => return Err(format!("{id}: not ready in 120 s")),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id": "{id}", "hosts": ["{id}.bench.test"], "routes": [{{"prefix": "/", "upstream": "app", "auth": "public"}}]}}"#).into_bytes()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = arg("--keycloak-url").unwrap_or_else(|| "http://127.0.0.1:18180".into());
    let sequential: usize = arg("--sequential")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let parallel: usize = arg("--parallel").and_then(|v| v.parse().ok()).unwrap_or(10);
    let password =
        std::env::var("KEYCLOAK_ADMIN_PASSWORD").unwrap_or_else(|_| "realmgate-e2e-admin".into());
    let secret = bootstrap(&url, "master", "admin", &password, "realmctl")
        .await
        .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("provision-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kc = Arc::new(Keycloak::new(
        &url,
        "master",
        Credentials::Client {
            id: "realmctl".into(),
            secret,
        },
    )?);
    let identity = Identity::new(
        Arc::clone(&kc),
        IdentitySettings {
            public_url: url.clone(),
            redirect_scheme: "http".into(),
            redirect_port: Some(8080),
            callback_path: "/.realmgate/callback".into(),
            login_client_id: "realmgate".into(),
            admin_client_id: "tenant-admin".into(),
            admin_username: "admin".into(),
            delete_realm: true,
        },
    );
    let steps: Vec<Arc<dyn Step>> = vec![Arc::new(identity), Arc::new(Database::new(&dir, None))];
    let plan = Plan {
        providers: vec![
            (StepKind::Identity, "keycloak"),
            (StepKind::Database, "libsql"),
            (StepKind::Ingress, "none"),
            (StepKind::Dns, "none"),
        ],
    };
    let reg = Registry::open(&dir, None)
        .await
        .map_err(|e| e.to_string())?;
    let c = Arc::new(
        Control::with_plan(reg, plan, SecretBox::random())
            .await
            .map_err(|e| e.to_string())?,
    );
    Runner::start(Arc::clone(&c), steps, RunnerSettings::default());
    c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9"]}"#)
        .await
        .map_err(|e| e.to_string())?;
    let pid = std::process::id();
    let mut ids = Vec::new();

    let mut times = Vec::new();
    let kc_before = kc.waited();
    let seq_started = Instant::now();
    for n in 0..sequential {
        let id = format!("pb{pid}x{n}");
        let started = Instant::now();
        c.create_tenant(&body(&id))
            .await
            .map_err(|e| e.to_string())?;
        let tid = TenantId::parse(&id).ok_or("id")?;
        until_ready(&c, &tid).await?;
        times.push(started.elapsed());
        ids.push(tid);
    }
    let seq_total = seq_started.elapsed();
    let seq_kc = kc.waited() - kc_before;

    let kc_before = kc.waited();
    let par_started = Instant::now();
    let mut par_ids = Vec::new();
    for n in 0..parallel {
        let id = format!("pb{pid}x{}", sequential + n);
        c.create_tenant(&body(&id))
            .await
            .map_err(|e| e.to_string())?;
        par_ids.push(TenantId::parse(&id).ok_or("id")?);
    }
    for id in &par_ids {
        until_ready(&c, id).await?;
    }
    let par_total = par_started.elapsed();
    let par_kc = kc.waited() - kc_before;
    ids.extend(par_ids);

    let share = |kc: Duration, total: Duration| 100.0 * kc.as_secs_f64() / total.as_secs_f64();
    println!("| provisioning (identity=keycloak, database=libsql) | time | Keycloak share |");
    println!("|---|---|---|");
    println!(
        "| one tenant, median of {sequential} | {:.0} ms | {:.0}% |",
        median(times).as_secs_f64() * 1000.0,
        share(seq_kc, seq_total)
    );
    println!(
        "| {parallel} tenants in parallel, until all ready | {:.0} ms | {:.0}% (Keycloak request time ÷ tenants ÷ wall time) |",
        par_total.as_secs_f64() * 1000.0,
        share(par_kc, par_total) / parallel.max(1) as f64
    );

    for id in &ids {
        c.delete_tenant(id, None).await.map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ids.iter().any(|id| c.provision_snapshot(id).is_some()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

//! `todos`: the example Realmgate app — per-user todos in each tenant's libsql database.

mod identity;
mod store;
mod web;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Example Realmgate app: lists and adds todos for the signed-in user in the tenant's own
/// database, the one realmctl provisioned (asked of realmctl with this app's credential).
/// The caller comes from the gateway's signed identity assertion (`x-realmgate-assertion`),
/// checked against the fleet's keys: a request that did not come through the gateway, or was
/// forwarded to another pool, is refused (401).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// realmctl's URL: each tenant's database location is asked of its
    /// `/v1/tenants/{id}/database`.
    #[arg(long, env = "TODOS_REALMCTL_URL", requires = "app_credential_file")]
    realmctl_url: Option<String>,
    /// A file holding this app's credential (`realmctl app create todos --pool POOL`).
    #[arg(long, env = "TODOS_APP_CREDENTIAL_FILE", requires = "realmctl_url")]
    app_credential_file: Option<PathBuf>,
    /// How long realmctl's answer about a tenant's database is kept.
    #[arg(long, default_value_t = 60_000)]
    database_ttl_ms: u64,
    /// Most tenants' databases held open at once.
    #[arg(long, default_value_t = 1024)]
    max_open_databases: usize,
    /// Demo only, with --trust-headers: one libsql file per tenant id in this directory,
    /// instead of the tenant's provisioned database (such a file outlives its tenant).
    #[arg(long, requires = "trust_headers", conflicts_with = "realmctl_url")]
    data_dir: Option<PathBuf>,
    /// Path prefix the app is routed under (the catalog path without its trailing slash).
    #[arg(long, default_value = "/todos")]
    base_path: String,
    /// The fleet's JWKS: realmctl's `/v1/assertion-keys`, or
    /// `https://<tenant host>/.realmgate/jwks.json`.
    #[arg(
        long,
        env = "TODOS_JWKS_URL",
        required_unless_present = "trust_headers"
    )]
    jwks_url: Option<String>,
    /// The fleet's issuer name (realmctl's `assertion.issuer`).
    #[arg(long, env = "TODOS_ISSUER", default_value = "realmgate")]
    issuer: String,
    /// This app's pool name in the routing table (repeatable): assertions minted for any
    /// other pool are refused.
    #[arg(
        long = "pool",
        env = "TODOS_POOL",
        default_value = "todos",
        value_delimiter = ','
    )]
    pools: Vec<String>,
    /// Least time between two JWKS fetches (an assertion with an unknown `kid` fetches the
    /// keys again, at most this often).
    #[arg(long, default_value_t = 10_000)]
    jwks_refetch_interval_ms: u64,
    /// Believe the plain `x-realmgate-tenant`/`-subject` headers instead of verifying the
    /// assertion (anonymous without a subject). Weaker: anyone who reaches the app directly
    /// can send them. For demos without a realm only.
    #[arg(long, conflicts_with = "jwks_url")]
    trust_headers: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if !cli.base_path.is_empty() && !cli.base_path.starts_with('/') {
        eprintln!("error: --base-path must be empty or start with '/'");
        return ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: listen {}: {e}", cli.listen);
            return ExitCode::from(1);
        }
    };
    let store = match (&cli.realmctl_url, &cli.app_credential_file, &cli.data_dir) {
        (Some(url), Some(file), _) => {
            let credential = match std::fs::read_to_string(file) {
                Ok(c) if c.trim().starts_with("rga_") => c.trim().to_owned(),
                Ok(_) => {
                    eprintln!("error: {}: not an app credential (rga_…)", file.display());
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            log::info!("tenant databases from realmctl at {url}");
            store::Store::Tenants(Arc::new(realmgate_app::TenantDatabases::new(
                realmgate_app::DatabasesConfig {
                    realmctl_url: url.clone(),
                    credential,
                    ttl: std::time::Duration::from_millis(cli.database_ttl_ms),
                    capacity: cli.max_open_databases,
                },
                store::migrations(),
            )))
        }
        (_, _, Some(dir)) => {
            log::warn!(
                "--data-dir: todos in {} (demo only: these files outlive their tenants)",
                dir.display()
            );
            store::Store::files(dir.clone())
        }
        _ => {
            eprintln!("error: give --realmctl-url and --app-credential-file (or, with --trust-headers only, --data-dir)");
            return ExitCode::from(2);
        }
    };
    let store = Arc::new(store);
    let identify = match &cli.jwks_url {
        Some(url) => {
            log::info!(
                "callers verified against {url} (issuer {:?}, pools {:?})",
                cli.issuer,
                cli.pools
            );
            let mut config =
                realmgate_app::VerifierConfig::new(url.as_str(), cli.issuer.as_str(), &cli.pools);
            config.refetch_interval =
                std::time::Duration::from_millis(cli.jwks_refetch_interval_ms);
            identity::Identify::Assertion(Arc::new(realmgate_app::Verifier::new(config)))
        }
        None => {
            log::warn!("--trust-headers: callers are whoever the x-realmgate-* headers say");
            identity::Identify::TrustHeaders
        }
    };
    log::info!(
        "todos listening on {} under {}/",
        cli.listen,
        cli.base_path.trim_end_matches('/')
    );
    match axum::serve(listener, web::app(store, &cli.base_path, identify)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

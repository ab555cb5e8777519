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
/// database, `<data-dir>/<tenant>.db`. The caller comes from the gateway's signed identity
/// assertion (`x-realmgate-assertion`), checked against the fleet's keys: a request that did
/// not come through the gateway, or was forwarded to another pool, is refused (401).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// Directory holding one libsql database file per tenant.
    #[arg(long, default_value = "./todos-data")]
    data_dir: PathBuf,
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
    let store = Arc::new(store::Store::new(cli.data_dir.clone()));
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
        "todos listening on {} under {}/ (data in {})",
        cli.listen,
        cli.base_path.trim_end_matches('/'),
        cli.data_dir.display()
    );
    match axum::serve(listener, web::app(store, &cli.base_path, identify)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

//! `todos`: the example Realmgate app — per-user todos in each tenant's libsql database.

mod store;
mod web;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Example Realmgate app: lists and adds todos for the caller (`x-realmgate-subject`, else
/// anonymous) in the tenant's (`x-realmgate-tenant`) own database, `<data-dir>/<tenant>.db`.
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
    log::info!(
        "todos listening on {} under {}/ (data in {})",
        cli.listen,
        cli.base_path.trim_end_matches('/'),
        cli.data_dir.display()
    );
    match axum::serve(listener, web::app(store, &cli.base_path)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

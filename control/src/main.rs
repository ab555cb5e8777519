//! `realmctl`: parse the command line; `serve` runs the daemon, everything else is a client.

use clap::Parser;
use realmctl::cli::{self, Cli, Command, ServeArgs};
use realmctl::config::{Config, Overrides};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        _ => client(cli),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // kube's client logs each failed request at error level; realmctl reports every failed
    // Kubernetes call itself, naming the call (kube_access::describe), once per change of
    // state instead of once per retry.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,kube_client::client::builder=off"),
    )
    .init();
    // kube's TLS is rustls 0.23: name its crypto provider once for the whole process, so
    // no second provider pulled in by another crate can make rustls refuse to choose.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        admin_token_file: args.admin_token_file,
        gateways: args.gateways,
        gateway_token_file: args.gateway_token_file,
        discovery: realmctl::discovery::config::DiscoveryOverrides {
            kubernetes: args.gateway_discovery == Some(cli::DiscoveryArg::Kubernetes),
            service: args.gateway_service,
            namespace: args.gateway_namespace,
        },
    };
    let config = match Config::load(args.conf.as_deref(), &overrides) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("realmctl: invalid configuration:");
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realmctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(realmctl::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("realmctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realmctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("realmctl: {e}");
            ExitCode::FAILURE
        }
    }
}

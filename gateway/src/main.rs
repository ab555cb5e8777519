//! `realmgate`: parse flags, load configuration and the last good table, start Pingora.

use clap::{Parser, Subcommand};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use realmgate::admin::{router, AdminService, AdminState, ControlPull};
use realmgate::auth::{Auth, SessionKeys};
use realmgate::background::HealthChecker;
use realmgate::config::{Config, Overrides};
use realmgate::connection::{Edge, PlainEdge};
use realmgate::metrics::Metrics;
use realmgate::proxy::Gateway;
use realmgate::snapshot::pace::Pacing;
use realmgate::snapshot::{Compaction, Store};
use realmgate::tls::accept::tls_service;
use realmgate::tls::resolve::CertSource;
use realmgate::tls::settings::{admin_server_config, h2_options};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Realmgate: the multi-tenant edge gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML configuration: Pingora's server settings under `pingora:`, ours under `gateway:`.
    #[arg(long, global = true)]
    conf: Option<PathBuf>,
    /// Data-plane listen address [default: 0.0.0.0:8080].
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Admin API listen address [default: 127.0.0.1:9080].
    #[arg(long, global = true)]
    admin_listen: Option<String>,
    /// File holding the admin bearer token (at least 16 characters).
    #[arg(long, global = true)]
    admin_token_file: Option<PathBuf>,
    /// Where the last accepted table is kept [default: /var/lib/realmgate].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// realmctl's base URL: at start, pull the current table from it (bearer: the admin token).
    #[arg(long, global = true)]
    control_url: Option<String>,
    /// TLS listen address (repeatable; replaces `gateway.tls_listen`) [default: none].
    #[arg(long = "tls-listen", global = true, value_name = "ADDR")]
    tls_listen: Vec<String>,
    /// Validate the configuration (and `--table`, if given), then exit.
    #[arg(long)]
    check: bool,
    /// With `--check`: a routing table JSON file to validate.
    #[arg(long, global = true)]
    table: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration (`--conf` and flags) and/or a routing table (`--table`);
    /// exit non-zero listing every problem.
    Check,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen.clone(),
        admin_listen: cli.admin_listen.clone(),
        admin_token_file: cli.admin_token_file.clone(),
        state_dir: cli.state_dir.clone(),
        control_url: cli.control_url.clone(),
        tls_listen: cli.tls_listen.clone(),
    };
    match cli.command {
        Some(Command::Check) => check(cli.conf.as_deref(), cli.table.as_deref(), &overrides),
        None if cli.check => check(cli.conf.as_deref(), cli.table.as_deref(), &overrides),
        None => run(cli.conf.as_deref(), &overrides),
    }
}

fn check(
    conf: Option<&std::path::Path>,
    table: Option<&std::path::Path>,
    o: &Overrides,
) -> ExitCode {
    let mut problems = Vec::new();
    let flags_given = o.listen.is_some()
        || o.admin_listen.is_some()
        || o.admin_token_file.is_some()
        || o.state_dir.is_some()
        || o.control_url.is_some()
        || !o.tls_listen.is_empty();
    if conf.is_some() || flags_given || table.is_none() {
        if let Err(p) = Config::load(conf, o) {
            problems.extend(p);
        }
    }
    if let Some(path) = table {
        match std::fs::read(path) {
            Ok(bytes) => {
                if let Err(p) = realmgate_table::parse(&bytes) {
                    problems.extend(p.iter().map(|p| format!("{}: {p}", path.display())));
                }
            }
            Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    if problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::from(1)
    }
}

fn run(conf: Option<&std::path::Path>, o: &Overrides) -> ExitCode {
    let config = match Config::load(conf, o) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            return ExitCode::from(2);
        }
    };
    // Before any other thread starts: the proxy's workers and every thread after inherit it.
    if config.worker_cpus.is_set() {
        if let Err(e) = config.worker_cpus.pin_process() {
            eprintln!("error: gateway.worker_cpus: {e}");
            return ExitCode::from(1);
        }
        let workers = config.worker_cpus.count();
        if config.server.threads > workers {
            log::warn!(
                "pingora.threads is {} on {workers} CPU(s) of gateway.worker_cpus: workers will take turns on a core",
                config.server.threads
            );
        }
    }
    // Full tables are applied on the worker CPUs (where this thread now is) and the table CPUs.
    let full_cpus = config.table_cpus.and_this_thread();
    let metrics = match Metrics::new(config.metrics_tenant_labels) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("error: metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let keys = match &config.session_keys {
        Some(keys) => SessionKeys::new(keys),
        None => {
            log::warn!(
                "no session_key_file configured: using a random session key, so browser sessions \
                 neither survive a restart nor work across replicas"
            );
            SessionKeys::random()
        }
    };
    // One TLS crypto provider for the realm client (https issuers), chosen here rather than
    // by whichever crate features happen to be unified into the build.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        log::debug!("a TLS crypto provider was already installed");
    }
    let auth = match Auth::new(config.auth.clone(), keys, Arc::clone(&metrics.auth)) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let store = Arc::new(
        Store::new(config.state_dir.clone(), metrics)
            .with_compaction(Compaction {
                bytes: config.journal_compact_bytes,
                ..Compaction::default()
            })
            .with_pacing(Pacing {
                yield_for: config.delta_yield,
                idle_for: config.delta_idle,
                cpus: config.table_cpus,
            })
            .with_full_cpus(full_cpus),
    );
    if config.table_cpus.is_set() {
        log::info!(
            "table work runs on gateway.table_cpus ({} CPU(s)), every other thread on {} CPU(s) of gateway.worker_cpus; full tables on both",
            config.table_cpus.count(),
            config.worker_cpus.count()
        );
    }
    // Said now, not at the first delta: what the kernel here lets table changes do.
    if !config.delta_idle.is_zero() {
        realmgate::snapshot::pace::may_idle();
    }
    if !config.delta_yield.is_zero() {
        realmgate::snapshot::pace::may_yield();
    }
    match store.load_state() {
        Ok(Some(v)) => log::info!(
            "serving table version {v} from {}",
            config.state_dir.display()
        ),
        Ok(None) => log::info!("no stored table yet: every request answers 503 until a push"),
        Err(e) => log::error!("{e}; starting without a table"),
    }
    if config.admin_token.is_none() {
        log::warn!("no admin token configured (--admin-token-file): table pushes are refused");
    }
    let admin_listener = match std::net::TcpListener::bind(config.admin_listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: admin_listen {}: {e}", config.admin_listen);
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::net::TcpListener::bind(config.listen) {
        eprintln!("error: listen {}: {e}", config.listen);
        return ExitCode::from(1);
    }
    for addr in &config.tls.listen {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            eprintln!("error: tls_listen {addr}: {e}");
            return ExitCode::from(1);
        }
    }
    let admin_tls = match config
        .tls
        .admin
        .clone()
        .map(|k| admin_server_config(k, config.tls.min_version))
    {
        None => None,
        Some(Ok(c)) => Some(Arc::new(c)),
        Some(Err(e)) => {
            eprintln!("error: gateway.admin_tls: {e}");
            return ExitCode::from(1);
        }
    };

    let mut server = Server::new_with_opt_and_conf(None, config.server);
    server.bootstrap();
    let trusted_proxies = Arc::new(config.trusted_proxies.clone());
    let mut gateway = pingora_proxy::http_proxy(
        &server.configuration,
        Gateway {
            store: Arc::clone(&store),
            trusted_proxies: Arc::clone(&trusted_proxies),
            auth,
            https_port: config.https_port,
        },
    );
    gateway.h2_options = Some(h2_options(config.tls.h2));
    // An HTTP/2 connection with no stream open is idle: closed after the keep-alive idle time,
    // like an HTTP/1 one.
    let mut server_options = pingora_core::apps::HttpServerOptions::default();
    server_options.h2_idle_timeout = Some(config.client.keepalive_idle_timeout);
    gateway.server_options = Some(server_options);
    // One registry of connections for plain and TLS listeners: the limits are global.
    let edge = Arc::new(Edge::new(gateway, config.client, trusted_proxies));
    let mut proxy = Service::new("realmgate".to_string(), PlainEdge(Arc::clone(&edge)));
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);
    let source: Arc<dyn CertSource> = Arc::clone(&store) as Arc<dyn CertSource>;
    match tls_service(Arc::clone(&edge), source, &config.tls) {
        Ok(Some(tls)) => {
            server.add_service(tls);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    let admin = router(
        AdminState::new(Arc::clone(&store), config.admin_token.as_deref()),
        config.max_table_bytes,
    );
    server.add_service(background_service(
        "admin",
        AdminService::new(admin_listener, admin).with_tls(admin_tls),
    ));
    if let (Some(url), Some(token)) = (config.control_url.clone(), config.admin_token.clone()) {
        server.add_service(background_service(
            "control pull",
            ControlPull {
                store: Arc::clone(&store),
                control_url: url,
                token,
                max_bytes: config.max_table_bytes,
                ca_pem: config.tls.control_ca_pem.clone(),
            },
        ));
    }
    server.add_service(background_service(
        "health checks",
        HealthChecker {
            store,
            interval: Duration::from_millis(config.health_check_interval_ms),
        },
    ));
    log::info!(
        "realmgate listening on {} (TLS: {:?}; admin {}{})",
        config.listen,
        config.tls.listen,
        config.admin_listen,
        if config.tls.admin.is_some() {
            ", https"
        } else {
            ""
        }
    );
    server.run_forever()
}

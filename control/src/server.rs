//! `realmctl serve`: open the registry, start the compiler and the push workers, and serve
//! the API until SIGINT or SIGTERM.

use crate::api::{self, AppState, Tokens};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::push;
use crate::push::{PushSettings, Pusher};
use crate::registry::{Registry, RegistryError};
use crate::service::Control;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Push(#[from] crate::push::PushStartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("provisioning: {0}")]
    Provision(String),
    #[error(transparent)]
    Lock(#[from] crate::writer_lock::LockError),
    #[error("lease: {0}")]
    Lease(String),
    #[error("traffic: {0}")]
    Traffic(String),
    #[error("gateway discovery: {0}")]
    Discovery(String),
    #[error("assertion keys: {0}")]
    Assertion(#[from] crate::service::ServiceError),
}

/// What the daemon needs besides the registry.
pub struct Wiring<'a> {
    pub operator_token: &'a str,
    pub gateway_token: Option<Arc<str>>,
    pub gateways: &'a [String],
    /// How `https://` gateway URLs are verified.
    pub gateway_trust: crate::tls::GatewayTrust,
    pub push: PushSettings,
    pub max_body_bytes: usize,
    pub api: crate::api::ApiLimits,
    /// The provisioning steps (none: tenants are ready at creation).
    pub provision: Option<Provisioning>,
    /// The identity assertion's issuer and key rotation timing.
    pub assertion: crate::service::assertion::AssertionSettings,
}

/// What the provisioning runner needs.
pub struct Provisioning {
    pub plan: crate::provision::Plan,
    pub steps: Vec<Arc<dyn crate::provision::Step>>,
    pub secret_box: crate::provision::secrets::SecretBox,
    pub runner: crate::provision::config::RunnerSettings,
    /// `certificates.acme`: the certificate step, made here once the service and the
    /// pushers exist (it stores through the one and waits for the other).
    pub acme: Option<crate::acme::AcmeSettings>,
    /// The remote libsql server's tokens: its fleet token (operators) and the app token
    /// minter (apps get a token for their tenant's namespace only).
    pub remote_database: Option<crate::provision::database_token::RemoteAccess>,
}

/// Load the registry into a [`Control`], start the compiler and one push worker per
/// gateway, and return the API's state. Needs a Tokio runtime.
pub async fn assemble(registry: Registry, w: Wiring<'_>) -> Result<AppState, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let control = Arc::new(match &w.provision {
        Some(p) => Control::with_plan(registry, p.plan.clone(), p.secret_box.clone()).await?,
        None => Control::new(registry).await?,
    });
    if let Some(access) = w.provision.as_ref().and_then(|p| p.remote_database.clone()) {
        control.set_remote_database(access);
    }
    control.start_assertion(&w.assertion).await?;
    tokio::spawn(crate::service::assertion::maintain(Arc::clone(&control)));
    let (published, tables) = watch::channel(None);
    let debounce = w.push.debounce;
    let pusher = Arc::new(Pusher::start(
        w.gateways,
        &w.gateway_trust,
        w.gateway_token.clone(),
        w.push,
        tables.clone(),
        Arc::clone(&metrics),
    )?);
    if let Some(mut p) = w.provision {
        if let Some(settings) = p.acme.take() {
            p.steps
                .push(crate::acme_step::build(&control, &pusher, settings));
        }
        if p.plan.active() {
            crate::service::runner::Runner::start(Arc::clone(&control), p.steps, p.runner);
        }
    }
    tokio::spawn(push::publish::run(
        Arc::clone(&control),
        published,
        Arc::clone(&metrics),
        debounce,
        pusher.ahead(),
    ));
    let operator_keys = Arc::new(crate::operators::keys::OperatorKeys::load(&control).await?);
    Ok(AppState {
        operator_keys,
        control,
        pusher,
        tables,
        metrics,
        tokens: Arc::new(Tokens::new(w.operator_token, w.gateway_token.as_deref())),
        max_body_bytes: w.max_body_bytes,
        mint_quota: Arc::new(crate::api::limits::MintQuota::new(&w.api)),
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            w.api.max_concurrent_requests.max(1),
        )),
        long_polls: Arc::new(tokio::sync::Semaphore::new(crate::api::MAX_LONG_POLLS)),
        plain_http: true,
        operators: None,
        // Idle until `serve` starts it with `gateways.traffic`.
        traffic: Arc::new(crate::traffic::Traffic::new(Default::default())),
    })
}

pub async fn serve(config: Config) -> Result<(), StartError> {
    // One writer per registry: a second realmctl on this data directory stands by here.
    let _writer = crate::writer_lock::acquire(&config.data_dir).await?;
    let mut registry = Registry::open(&config.data_dir, config.remote.as_ref()).await?;
    // With a Lease: reads at once, writes once it is ours (crate::lease).
    let lease = match &config.lease {
        Some(cfg) => {
            let client = crate::kube_access::client(cfg.kubeconfig.as_deref())
                .await
                .map_err(StartError::Lease)?;
            let (fence, fence_control) = crate::leadership::Fence::closed(format!(
                "waiting for the Lease {} (not tried yet)",
                cfg.describe()
            ));
            registry.set_fence(fence);
            Some((cfg.clone(), client, fence_control))
        }
        None => None,
    };
    let (steps, _) = config
        .provision
        .build(&config.data_dir)
        .map_err(StartError::Provision)?;
    let mut plan = config.provision.plan();
    if config.acme.is_some() {
        plan = plan.with(crate::provision::StepKind::Certificate, "acme");
    }
    log::info!(
        "provisioning: {}",
        plan.providers
            .iter()
            .map(|(k, p)| format!("{}={p}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut state = assemble(
        registry,
        Wiring {
            operator_token: config.admin_token.expose(),
            gateway_token: config.gateway_token.as_ref().map(|t| t.shared()),
            gateways: &config.gateways,
            gateway_trust: config.gateway_trust.clone(),
            push: config.push.clone(),
            max_body_bytes: config.max_body_bytes,
            api: config.api,
            provision: Some(Provisioning {
                plan,
                steps,
                secret_box: config.provision.secret_box(),
                runner: config.provision.runner.clone(),
                acme: config.acme.clone(),
                remote_database: config.provision.remote_database_access(),
            }),
            assertion: config.assertion.clone(),
        },
    )
    .await?;
    if let Some(settings) = config.domains.clone() {
        state.control.set_domain_settings(settings);
        state.control.start_domain_checks();
    }
    if let Some(settings) = config.discovery.clone() {
        let found = crate::discovery::start(settings, Arc::clone(&state.metrics))
            .await
            .map_err(StartError::Discovery)?;
        state.pusher.follow(found.targets, found.status);
    }
    state.traffic = Arc::new(crate::traffic::Traffic::new(config.traffic.clone()));
    state
        .traffic
        .start(Arc::clone(&state.pusher), &config.gateway_trust)
        .map_err(StartError::Traffic)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    log::info!(
        "realmctl listening on {scheme}://{addr} (data dir {}, {} static gateway(s){})",
        config.data_dir.display(),
        config.gateways.len(),
        if config.discovery.is_some() {
            " and discovered ones"
        } else {
            ""
        }
    );
    if config.tls.is_none() && !crate::tls::is_loopback(&addr) {
        log::warn!(
            "realmctl serves plain http on {addr}, which is not loopback: gateways pulling the table (with its secrets) should use https (`tls:` in realmctl's configuration)"
        );
    }
    state.plain_http = config.tls.is_none();
    state.operators = config
        .operators
        .clone()
        .map(crate::operators::Operators::new);
    let control = Arc::clone(&state.control);
    let mut elector = lease.map(|(cfg, client, fence)| {
        crate::lease::LeaseTask::spawn(cfg, client, fence, Arc::clone(&state.metrics))
    });
    let app = api::app(state);
    let served = async move {
        match config.tls {
            Some(tls) => {
                // The peer's address, as over plain http: the audit log records it.
                let listener = crate::tls::TlsListener::new(listener, tls)
                    .map_err(StartError::Serve)?
                    .with_peer_addresses();
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown())
                .await
                .map_err(StartError::Serve)
            }
            // The peer's address: over plain http the full table goes only to loopback, and
            // the audit log records it.
            None => axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(StartError::Serve),
        }
    };
    let Some(mut task) = elector.take() else {
        let result = served.await;
        // The audit entries of the last calls answered, queued for the next commit.
        control.quiesce().await;
        return result;
    };
    let result = tokio::select! {
        r = served => r,
        // Another process held the Lease meanwhile: end non-zero (crate::lease explains).
        reason = task.lost() => return Err(StartError::Lease(reason)),
    };
    // Committed while the fence is still open: the audit entries of the last calls answered.
    control.quiesce().await;
    task.shutdown(control.quiesce()).await;
    result
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("cannot watch SIGTERM: {e}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    log::info!("shutting down");
}

//! The `realmctl` command line: `serve` runs the daemon; every other command is a thin client
//! over the REST API (`--url`/`REALMCTL_URL`, `--token-file`/`REALMCTL_TOKEN`).

mod app;
mod assertion_key;
mod body;
mod cert;
pub mod client;
mod domain;
mod key;
mod operator_key;
mod operators;
mod output;
mod provision;
mod tenant;
mod upstream;

use crate::views::{CreatedKey, Deleted, GatewayView, KeyList, KeyView, UpstreamView};
use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{CliError, Client};
use key::key;
use output::GatewayList;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tenant::tenant;
use upstream::upstream;

/// realmctl: Realmgate's control plane daemon and its command-line client.
#[derive(Parser)]
#[command(name = "realmctl", version, about)]
pub struct Cli {
    /// realmctl's API base URL.
    #[arg(
        long,
        global = true,
        env = "REALMCTL_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub url: String,
    /// CA certificate (PEM) that realmctl's https URL is verified against, besides the
    /// system roots.
    #[arg(long, global = true, env = "REALMCTL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// File holding the operator token; otherwise the REALMCTL_TOKEN variable is used.
    #[arg(long, global = true, env = "REALMCTL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// What read commands print: `table` (text for people) or `json` (the API's JSON, for
    /// scripts).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The same as `--output json`.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `--output`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: registry, API, compiler and push.
    Serve(ServeArgs),
    /// Create, list, show, update and delete tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Create or replace, list, show and delete upstream pools.
    #[command(subcommand)]
    Upstream(UpstreamCmd),
    /// The compiled routing table.
    #[command(subcommand)]
    Table(TableCmd),
    /// Each gateway's applied table version and last push result.
    Gateways,
    /// Mint, list and revoke API keys (the token may itself be an API key).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Add, list, show and remove the certificates gateways serve by SNI.
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// The fleet's identity assertion keys: list, rotate, retire.
    #[command(subcommand)]
    AssertionKey(assertion_key::AssertionKeyCmd),
    /// Add, list and remove tenants' custom domains (checked with a TXT record).
    #[command(subcommand)]
    Domain(domain::DomainCmd),
    /// App credentials: an app reads its pool's tenants' database locations with one.
    #[command(subcommand)]
    App(app::AppCmd),
    /// Mint, list and revoke operator API keys (machine access with a role).
    #[command(subcommand)]
    OperatorKey(operator_key::OperatorKeyCmd),
    /// The operators' realm in Keycloak, for signing in to the console.
    #[command(subcommand)]
    Operators(operators::OperatorsCmd),
    /// Print a completion script for a shell, e.g. `realmctl completions bash >
    /// /etc/bash_completion.d/realmctl`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Tests and the local platform: create realmctl's service-account client in
    /// Keycloak's admin realm with the bootstrap admin (password from
    /// KEYCLOAK_ADMIN_PASSWORD), and write its secret to a file.
    #[command(hide = true)]
    KeycloakBootstrap {
        /// Keycloak's base URL.
        #[arg(long)]
        keycloak_url: String,
        /// The admin realm the client is created in.
        #[arg(long, default_value = "master")]
        realm: String,
        /// The bootstrap admin's user name.
        #[arg(long, env = "KEYCLOAK_ADMIN_USER", default_value = "admin")]
        admin_user: String,
        /// The service-account client's id.
        #[arg(long, default_value = "realmctl")]
        client_id: String,
        /// Where the client's secret is written (mode 0600).
        #[arg(long)]
        secret_file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Mint a key; its secret is printed once.
    Create {
        /// The tenant it serves; omit for an operator key (or to inherit the calling key's).
        #[arg(long)]
        tenant: Option<String>,
        /// `@name` or `*`; repeatable, at least one.
        #[arg(long = "namespace", required = true)]
        namespaces: Vec<String>,
        /// Expiry as RFC 3339 UTC, e.g. 2027-01-01T00:00:00Z.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// Expiry as a duration from now, e.g. 30d or 12h.
        #[arg(long)]
        expires_in: Option<String>,
        /// The key's own rate limit: REQUESTS/SECONDS, e.g. 100/1 or 1000/60.
        #[arg(long)]
        rate_limit: Option<String>,
        /// Wait until every gateway accepts it.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30)]
        wait_timeout: u64,
    },
    /// The keys the caller may see (never their secrets).
    List,
    /// Revoke a key; gateways refuse it once they apply the next table.
    Revoke {
        /// The key's id (`realmctl key list`), not its secret.
        id: String,
        /// Wait until every gateway refuses it.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30)]
        wait_timeout: u64,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// YAML configuration (see conf/realmctl.example.yaml).
    #[arg(long)]
    pub conf: Option<PathBuf>,
    /// API listen address [default: 127.0.0.1:9090].
    #[arg(long)]
    pub listen: Option<String>,
    /// Where registry.db lives [default: /var/lib/realmctl].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// File holding the operator bearer token (at least 16 characters).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// A gateway's admin base URL, e.g. http://127.0.0.1:9080 (repeatable; replaces the
    /// configured list).
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// File holding the token realmctl presents to gateways (their admin token).
    #[arg(long)]
    pub gateway_token_file: Option<PathBuf>,
    /// Also push to the ready endpoints of a Kubernetes Service (gateways.discovery).
    #[arg(long, value_enum)]
    pub gateway_discovery: Option<DiscoveryArg>,
    /// The gateways' headless Service, with --gateway-discovery kubernetes.
    #[arg(long)]
    pub gateway_service: Option<String>,
    /// Its namespace [default: the kubeconfig's, or realmctl's own in the cluster].
    #[arg(long)]
    pub gateway_namespace: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryArg {
    Kubernetes,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum HttpsArg {
    Off,
    Redirect,
    Only,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Active,
    Suspended,
}

#[derive(Args)]
pub struct TenantFields {
    /// A host (exact, or *.suffix); repeatable. On update, replaces the list.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// A route PREFIX=UPSTREAM[:AUTH] (auth defaults to public; `session,jwt` accepts any of
    /// them); repeatable. On update, replaces the list.
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Shorthand for --route /=UPSTREAM.
    #[arg(long)]
    upstream: Option<String>,
    /// The name people see (the shell's header, the operator UI); defaults to the id.
    #[arg(long)]
    display_name: Option<String>,
    /// An app of the tenant's catalog, NAME=PATH (shown as NAME, capitalised); repeatable. On
    /// update, replaces the catalog. Titles and icons: the API's `catalog`.
    #[arg(long = "app")]
    apps: Vec<String>,
    /// Give browsers the app shell (the built-in one, or --shell-upstream's).
    #[arg(long)]
    shell: bool,
    /// The tenant's own shell page, served by this pool (implies --shell).
    #[arg(long)]
    shell_upstream: Option<String>,
    /// A path prefix that never gets the shell (implies --shell); repeatable.
    #[arg(long = "shell-exclude")]
    shell_excludes: Vec<String>,
    /// Remove the app shell.
    #[arg(long, conflicts_with_all = ["shell", "shell_upstream", "shell_excludes"])]
    no_shell: bool,
    /// `active` (routed) or `suspended` (every request answered 503, nothing removed).
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// Plain HTTP to the tenant's hosts: off (served), redirect (308 to https) or only (403).
    #[arg(long, value_enum)]
    https: Option<HttpsArg>,
    /// Send Strict-Transport-Security over TLS with this max-age (seconds).
    #[arg(long)]
    hsts_max_age: Option<u64>,
    /// With --hsts-max-age: the policy covers subdomains too.
    #[arg(long, requires = "hsts_max_age")]
    hsts_include_subdomains: bool,
    /// With --hsts-max-age: ask for the browsers' preload list.
    #[arg(long, requires = "hsts_max_age")]
    hsts_preload: bool,
    /// Stop sending Strict-Transport-Security.
    #[arg(long, conflicts_with = "hsts_max_age")]
    no_hsts: bool,
    /// Wait until provisioning is done and every gateway serves the change (progress on
    /// stderr; a new tenant's first admin credentials are printed once).
    #[arg(long)]
    wait: bool,
    /// Longest wait with --wait, in seconds.
    #[arg(long, default_value_t = 120)]
    wait_timeout: u64,
}

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Create a tenant: its hosts and routes, provisioned (realm, database, ingress, DNS)
    /// and routed once every step is done.
    Create {
        /// The tenant id: a DNS label (`a-z`, `0-9`, `-`), also its realm's name.
        id: String,
        #[command(flatten)]
        fields: TenantFields,
    },
    /// List tenants with their state, provisioning and hosts.
    List,
    /// Show one tenant: hosts, routes, provisioning steps, table version.
    Show {
        /// The tenant id.
        id: String,
    },
    /// Change a tenant's fields (hosts, routes, catalog, shell, limits, status).
    Update {
        /// The tenant id.
        id: String,
        #[command(flatten)]
        fields: TenantFields,
        /// Apply only if the tenant's revision is still this one.
        #[arg(long)]
        if_revision: Option<u64>,
    },
    /// Run a failed provisioning step now (on a ready tenant: every step again).
    Retry {
        /// The tenant id.
        id: String,
        /// Wait until provisioning is done.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 120)]
        wait_timeout: u64,
    },
    /// Delete a tenant: unrouted at once, then its provisioned parts removed in reverse
    /// (the tenant database is archived, not dropped).
    Delete {
        /// The tenant id.
        id: String,
        /// Apply only if the tenant's revision is still this one.
        #[arg(long)]
        if_revision: Option<u64>,
        /// Wait until every gateway serves the deletion and every provisioned part (realm,
        /// ingress, DNS) is removed, so the id can be created again.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 120)]
        wait_timeout: u64,
    },
}

#[derive(Subcommand)]
pub enum UpstreamCmd {
    /// Create or replace a pool.
    Set {
        /// The pool's name, as routes name it.
        name: String,
        /// An IP:port endpoint; repeatable, at least one.
        #[arg(long = "endpoint", required = true)]
        endpoints: Vec<String>,
        /// Probe endpoints with GET PATH (200 is healthy) instead of a TCP connect.
        #[arg(long)]
        health_path: Option<String>,
        /// Longest wait for a connection to an endpoint, in milliseconds.
        #[arg(long)]
        connect_timeout_ms: Option<u64>,
        /// Longest wait for the endpoint's answer (between reads), in milliseconds.
        #[arg(long)]
        read_timeout_ms: Option<u64>,
        /// Longest wait to send the request to the endpoint (between writes), in milliseconds.
        #[arg(long)]
        write_timeout_ms: Option<u64>,
    },
    /// List pools with their endpoints and the tenants routing to them.
    List,
    /// Show one pool.
    Show {
        /// The pool's name.
        name: String,
    },
    /// Delete a pool no route uses.
    Delete {
        /// The pool's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TableCmd {
    /// Version, digest and size; --full prints the whole table JSON.
    Show {
        /// The whole table JSON (keys and login secrets redacted).
        #[arg(long)]
        full: bool,
    },
}

/// Run a client command; returns what to print.
pub async fn run(cli: Cli) -> Result<String, CliError> {
    let token = match &cli.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| {
                    CliError::Usage(format!("cannot read --token-file {}: {e}", p.display()))
                })?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("REALMCTL_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    if let Command::KeycloakBootstrap {
        keycloak_url,
        realm,
        admin_user,
        client_id,
        secret_file,
        ..
    } = &cli.command
    {
        let password = std::env::var("KEYCLOAK_ADMIN_PASSWORD").map_err(|_| {
            CliError::Usage("set KEYCLOAK_ADMIN_PASSWORD to the bootstrap admin's password".into())
        })?;
        return provision::bootstrap(
            keycloak_url,
            realm,
            admin_user,
            &password,
            client_id,
            secret_file,
        )
        .await;
    }
    if let Command::Operators(cmd) = cli.command {
        return operators::run(cmd).await;
    }
    if let Command::Completions { shell } = cli.command {
        let mut out = Vec::new();
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "realmctl",
            &mut out,
        );
        return String::from_utf8(out).map_err(|e| CliError::BadResponse(e.to_string()));
    }
    let c = Client::new(&cli.url, token, cli.ca_file.as_deref())?;
    let json = cli.json || cli.output == Output::Json;
    match cli.command {
        Command::KeycloakBootstrap { .. } => Err(CliError::Usage("handled above".into())),
        Command::Serve(_) | Command::Completions { .. } | Command::Operators(_) => {
            Err(CliError::Usage("not a client command".into()))
        }
        Command::Tenant(cmd) => tenant(&c, cmd, json).await,
        Command::Upstream(cmd) => upstream(&c, cmd, json).await,
        Command::Key(cmd) => key(&c, cmd, json).await,
        Command::Cert(cmd) => cert::cert(&c, cmd, json).await,
        Command::AssertionKey(cmd) => assertion_key::assertion_key(&c, cmd, json).await,
        Command::Domain(cmd) => domain::domain(&c, cmd, json).await,
        Command::App(cmd) => app::app(&c, cmd, json).await,
        Command::OperatorKey(cmd) => operator_key::operator_key(&c, cmd, json).await,
        Command::Table(TableCmd::Show { full }) => {
            if full {
                let v: Value = c.get("/v1/table").await?;
                return pretty(&v);
            }
            let v: Value = c.get("/v1/table?summary=1").await?;
            if json {
                return pretty(&v);
            }
            Ok(format!(
                "table version {}: {} tenant(s), {} bytes, {}\n",
                v["version"],
                v["tenants"],
                v["bytes"],
                v["digest"].as_str().unwrap_or("")
            ))
        }
        Command::Gateways => {
            let v: GatewayList = c.get("/v1/gateways").await?;
            if json {
                return pretty(&v.raw());
            }
            Ok(output::gateways(&v.gateways, v.discovery.as_ref()))
        }
    }
}

/// Poll `/v1/gateways` until every gateway serves `version`.
async fn wait_for_gateways(c: &Client, version: u64, timeout: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let v: GatewayList = c.get("/v1/gateways").await?;
        let behind: Vec<&GatewayView> = v
            .gateways
            .iter()
            .filter(|g| g.applied_version.is_none_or(|a| a < version))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = behind
                .iter()
                .map(|g| {
                    format!(
                        "{} (applied {:?}, last result {:?})",
                        g.url, g.applied_version, g.last_result
                    )
                })
                .collect();
            return Err(CliError::Timeout(format!(
                "the change is saved (table version {version}) but not yet served by: {}",
                names.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn pretty<T: serde::Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| CliError::BadResponse(e.to_string()))
}

#[cfg(test)]
mod tests;

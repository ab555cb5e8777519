//! The `realmctl` command line: `serve` runs the daemon; every other command is a thin client
//! over the REST API (`--url`/`REALMCTL_URL`, `--token-file`/`REALMCTL_TOKEN`).

mod assertion_key;
mod body;
mod cert;
pub mod client;
mod key;
mod output;
mod provision;
mod upstream;

use crate::views::{
    CreatedKey, Deleted, GatewayView, KeyList, KeyView, TenantPage, TenantView, UpstreamView,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{CliError, Client};
use key::key;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
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
        Command::Serve(_) | Command::Completions { .. } => {
            Err(CliError::Usage("not a client command".into()))
        }
        Command::Tenant(cmd) => tenant(&c, cmd, json).await,
        Command::Upstream(cmd) => upstream(&c, cmd, json).await,
        Command::Key(cmd) => key(&c, cmd, json).await,
        Command::Cert(cmd) => cert::cert(&c, cmd, json).await,
        Command::AssertionKey(cmd) => assertion_key::assertion_key(&c, cmd, json).await,
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
            Ok(output::gateways(&v.gateways))
        }
    }
}

async fn tenant(c: &Client, cmd: TenantCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        TenantCmd::Create { id, fields } => {
            let mut body = fields.body()?;
            body.insert("id".into(), Value::String(id));
            let t: TenantView = c
                .send(
                    Method::POST,
                    "/v1/tenants",
                    Some(&Value::Object(body)),
                    None,
                )
                .await?;
            finish(c, t, &fields, json, "created").await
        }
        TenantCmd::Update {
            id,
            fields,
            if_revision,
        } => {
            let body = Value::Object(fields.body()?);
            let path = format!("/v1/tenants/{}", crate::percent::encode(&id));
            let t: TenantView = c
                .send(Method::PATCH, &path, Some(&body), if_revision)
                .await?;
            finish(c, t, &fields, json, "updated").await
        }
        TenantCmd::List => {
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let path = match &after {
                    Some(a) => format!("/v1/tenants?after={}", crate::percent::encode(a)),
                    None => "/v1/tenants".to_owned(),
                };
                let page: TenantPage = c.get(&path).await?;
                all.extend(page.tenants);
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            if json {
                return pretty(&all);
            }
            Ok(output::tenants(&all))
        }
        TenantCmd::Show { id } => {
            let t: TenantView = c
                .get(&format!("/v1/tenants/{}", crate::percent::encode(&id)))
                .await?;
            if json {
                return pretty(&t);
            }
            Ok(output::tenant(&t) + &provision::steps_text(&t))
        }
        TenantCmd::Retry {
            id,
            wait,
            wait_timeout,
        } => {
            let timeout = wait.then(|| Duration::from_secs(wait_timeout));
            provision::retry(c, &id, timeout, json).await
        }
        TenantCmd::Delete {
            id,
            if_revision,
            wait,
            wait_timeout,
        } => {
            let path = format!("/v1/tenants/{}", crate::percent::encode(&id));
            let d: Deleted = c.send(Method::DELETE, &path, None, if_revision).await?;
            if wait {
                // Unrouted everywhere first, then every provisioned part removed: only then
                // can the same id be created again.
                let timeout = Duration::from_secs(wait_timeout);
                wait_for_gateways(c, d.table_version, timeout).await?;
                provision::wait_gone(c, &id, timeout).await?;
            }
            if json {
                return pretty(&d);
            }
            Ok(format!(
                "deleted tenant {} (table version {})\n",
                d.deleted, d.table_version
            ))
        }
    }
}

async fn finish(
    c: &Client,
    t: TenantView,
    f: &TenantFields,
    json: bool,
    what: &str,
) -> Result<String, CliError> {
    let mut credentials = None;
    let t = if f.wait {
        let timeout = Duration::from_secs(f.wait_timeout);
        let t = provision::wait_ready(c, &t.id, timeout).await?;
        wait_for_gateways(c, t.table_version, timeout).await?;
        if what == "created" && !json {
            credentials = provision::claim(c, &t.id).await;
        }
        t
    } else {
        t
    };
    if json {
        return pretty(&t);
    }
    let served = if f.wait {
        ", served by every gateway"
    } else {
        ""
    };
    Ok(format!(
        "{what} tenant {} (revision {}, table version {}{served})\n{}{}{}",
        t.id,
        t.revision,
        t.table_version,
        output::tenant(&t),
        provision::steps_text(&t),
        credentials.unwrap_or_default()
    ))
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

#[derive(Deserialize)]
struct GatewayList {
    target_version: Option<u64>,
    gateways: Vec<GatewayView>,
}

impl GatewayList {
    fn raw(&self) -> Value {
        json!({"target_version": self.target_version, "gateways": self.gateways})
    }
}

pub(crate) fn pretty<T: serde::Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| CliError::BadResponse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(crate::percent::encode("a b/c"), "a%20b%2Fc");
    }

    /// Every command and every argument says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<Cli as clap::CommandFactory>::command(),
            "realmctl",
            &mut missing,
        );
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    #[test]
    fn output_json_and_completions_parse() {
        let cli = Cli::try_parse_from(["realmctl", "tenant", "list", "-o", "json"]).expect("parse");
        assert!(cli.output == Output::Json && !cli.json);
        let cli = Cli::try_parse_from(["realmctl", "completions", "bash"]).expect("parse");
        assert!(matches!(cli.command, Command::Completions { .. }));
        assert!(Cli::try_parse_from(["realmctl", "tenant", "list", "-o", "yaml"]).is_err());
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "realmctl",
            "--json",
            "tenant",
            "create",
            "acme",
            "--host",
            "acme.test",
            "--upstream",
            "app",
            "--wait",
        ])
        .expect("parse");
        let Command::Tenant(TenantCmd::Create { id, fields }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(id, "acme");
        let body = fields.body().expect("body");
        assert_eq!(body["hosts"], json!(["acme.test"]));
        assert_eq!(body["routes"][0]["upstream"], "app");
        assert!(cli.json && fields.wait);
    }
}

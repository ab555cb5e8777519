//! The `provision:` section of realmctl's configuration: one provider per step (`none`
//! records the step as skipped), their settings, the secrets key and the retry policy.

use super::database::Database;
use super::database_token::{self, AppTokens, RemoteAccess};
use super::dns::{Dns, DnsSettings, Target};
use super::identity::{Identity, IdentitySettings};
use super::ingress::{IngressSettings, IngressStep};
use super::keycloak::{Credentials, Keycloak};
use super::secrets::SecretBox;
use super::{Plan, Step, StepKind};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
pub struct ProvisionFile {
    secrets_key_file: Option<PathBuf>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    max_parallel: Option<usize>,
    identity: Option<IdentityFile>,
    database: Option<DatabaseFile>,
    ingress: Option<IngressFile>,
    dns: Option<DnsFile>,
}

#[derive(Debug, Deserialize)]
struct IdentityFile {
    provider: String,
    url: Option<String>,
    public_url: Option<String>,
    admin_realm: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    redirect_scheme: Option<String>,
    redirect_port: Option<u16>,
    callback_path: Option<String>,
    login_client_id: Option<String>,
    admin_client_id: Option<String>,
    admin_username: Option<String>,
    on_delete: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DatabaseFile {
    provider: String,
    remote: Option<DatabaseRemote>,
}

#[derive(Debug, Deserialize)]
struct DatabaseRemote {
    url_template: String,
    auth_token_file: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM) whose public half sqld trusts: per-tenant app tokens.
    app_token_key_file: Option<PathBuf>,
    app_token_ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct IngressFile {
    provider: String,
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    name_template: Option<String>,
    ingress_class: Option<String>,
    service: Option<ServiceRef>,
    tls_secret: Option<String>,
    cert_issuer: Option<String>,
    issuer_kind: Option<String>,
    field_manager: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ServiceRef {
    name: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
struct DnsFile {
    provider: String,
    api_url: Option<String>,
    server_id: Option<String>,
    api_key_file: Option<PathBuf>,
    zone: Option<String>,
    ttl: Option<u32>,
    #[serde(default)]
    addresses: Vec<String>,
    cname: Option<String>,
}

/// The configured steps, and the Keycloak client when identity is on.
pub type Built = (Vec<Arc<dyn Step>>, Option<Arc<Keycloak>>);

/// The resolved section; [`ProvisionConfig::build`] makes the steps.
#[derive(Debug, Default)]
pub struct ProvisionConfig {
    secret_box: Option<SecretBox>,
    identity: Option<(String, String, Credentials, IdentitySettings)>,
    database: Option<Option<(String, String)>>,
    /// With a remote server: its fleet token and the app token minter.
    remote_access: Option<RemoteAccess>,
    ingress: Option<IngressSettings>,
    dns: Option<DnsSettings>,
    pub runner: RunnerSettings,
}

impl ProvisionConfig {
    /// The remote libsql server's tokens, when tenant databases live on one.
    pub fn remote_database_access(&self) -> Option<RemoteAccess> {
        self.remote_access.clone()
    }

    /// The dns step's zone (absolute, with the trailing dot), when it runs.
    pub fn dns_zone(&self) -> Option<&str> {
        self.dns.as_ref().map(|d| d.zone.as_str())
    }

    /// The dns step's provider, as dns-01 publishes `_acme-challenge` records through it.
    pub fn acme_dns(&self) -> Option<crate::acme::DnsProvider> {
        let s = self.dns.as_ref()?;
        Some(crate::acme::DnsProvider {
            describe: format!("powerdns at {}", s.api_url),
            zone: s.zone.trim_end_matches('.').to_owned(),
            records: Arc::new(Dns::new(s.clone()).ok()?),
        })
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// The app token minter, when `app_token_key_file` is set (a lifetime alone is a mistake).
fn resolve_app_tokens(r: &DatabaseRemote, problems: &mut Vec<String>) -> Option<AppTokens> {
    let key = "provision.database.remote.app_token_key_file";
    let Some(path) = &r.app_token_key_file else {
        if r.app_token_ttl_s.is_some() {
            problems.push(format!(
                "provision.database.remote.app_token_ttl_s: set without {key}"
            ));
        }
        return None;
    };
    let pem = read_secret(path, key, problems);
    if pem.is_empty() {
        return None;
    }
    let ttl = r.app_token_ttl_s.unwrap_or(database_token::DEFAULT_TTL_S);
    AppTokens::from_pem(&pem, ttl)
        .map_err(|e| problems.push(format!("{key}: {}: {e}", path.display())))
        .ok()
}

fn read_secret(path: &Path, key: &str, problems: &mut Vec<String>) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        Ok(_) => {
            problems.push(format!("{key}: {} is empty", path.display()));
            String::new()
        }
        Err(e) => {
            problems.push(format!("{key}: cannot read {}: {e}", path.display()));
            String::new()
        }
    }
}

fn provider(raw: &str, key: &str, allowed: &str, problems: &mut Vec<String>) -> bool {
    match raw {
        "none" => false,
        p if p == allowed => true,
        other => {
            problems.push(format!(
                "provision.{key}.provider: {other:?} is not one of {allowed:?}, \"none\""
            ));
            false
        }
    }
}

fn need<T>(v: Option<T>, key: &str, problems: &mut Vec<String>) -> Option<T> {
    if v.is_none() {
        problems.push(format!("provision.{key}: required with this provider"));
    }
    v
}

impl ProvisionConfig {
    pub fn resolve(f: ProvisionFile, problems: &mut Vec<String>) -> ProvisionConfig {
        let mut c = ProvisionConfig::default();
        let d = RunnerSettings::default();
        c.runner = RunnerSettings {
            initial_backoff: f
                .initial_backoff_ms
                .map_or(d.initial_backoff, Duration::from_millis),
            max_backoff: f
                .max_backoff_ms
                .map_or(d.max_backoff, Duration::from_millis),
            max_parallel: f.max_parallel.unwrap_or(d.max_parallel),
        };
        if c.runner.initial_backoff.is_zero() || c.runner.max_backoff < c.runner.initial_backoff {
            problems.push("provision: need 0 < initial_backoff_ms <= max_backoff_ms".into());
        }
        if let Some(p) = &f.secrets_key_file {
            match SecretBox::from_file(p) {
                Ok(b) => c.secret_box = Some(b),
                Err(e) => problems.push(format!("provision.secrets_key_file: {e}")),
            }
        }
        if let Some(i) = f.identity {
            if provider(&i.provider, "identity", "keycloak", problems) {
                if c.secret_box.is_none() && f.secrets_key_file.is_none() {
                    problems.push("provision.secrets_key_file: required with identity provider keycloak (client secrets are sealed with it)".into());
                }
                let url = need(i.url, "identity.url", problems).unwrap_or_default();
                let secret = need(
                    i.client_secret_file,
                    "identity.client_secret_file",
                    problems,
                )
                .map(|p| read_secret(&p, "provision.identity.client_secret_file", problems))
                .unwrap_or_default();
                let on_delete = i.on_delete.unwrap_or_else(|| "delete".into());
                if on_delete != "delete" && on_delete != "disable" {
                    problems.push(format!(
                        "provision.identity.on_delete: {on_delete:?} is not \"delete\" or \"disable\""
                    ));
                }
                let s = IdentitySettings {
                    public_url: i.public_url.unwrap_or_else(|| url.clone()),
                    redirect_scheme: i.redirect_scheme.unwrap_or_else(|| "https".into()),
                    redirect_port: i.redirect_port,
                    callback_path: i
                        .callback_path
                        .unwrap_or_else(|| "/.realmgate/callback".into()),
                    login_client_id: i.login_client_id.unwrap_or_else(|| "realmgate".into()),
                    admin_client_id: i.admin_client_id.unwrap_or_else(|| "tenant-admin".into()),
                    admin_username: i.admin_username.unwrap_or_else(|| "admin".into()),
                    delete_realm: on_delete == "delete",
                };
                let creds = Credentials::Client {
                    id: i.client_id.unwrap_or_else(|| "realmctl".into()),
                    secret,
                };
                let admin_realm = i.admin_realm.unwrap_or_else(|| "master".into());
                c.identity = Some((url, admin_realm, creds, s));
            }
        }
        if let Some(db) = f.database {
            if provider(&db.provider, "database", "libsql", problems) {
                let remote = db.remote.map(|r| {
                    let token = r
                        .auth_token_file
                        .as_ref()
                        .map(|p| {
                            read_secret(p, "provision.database.remote.auth_token_file", problems)
                        })
                        .unwrap_or_default();
                    if let Err(e) = database_token::check_template(&r.url_template) {
                        problems.push(format!("provision.database.remote.url_template: {e}"));
                    }
                    let app_tokens = resolve_app_tokens(&r, problems).map(Arc::new);
                    c.remote_access = Some(RemoteAccess {
                        url_template: r.url_template.clone(),
                        fleet_token: token.clone(),
                        app_tokens,
                    });
                    (r.url_template, token)
                });
                c.database = Some(remote);
            }
        }
        if let Some(ing) = f.ingress {
            if provider(&ing.provider, "ingress", "kubernetes", problems) {
                let service = need(ing.service, "ingress.service", problems);
                let kind = ing.issuer_kind.unwrap_or_else(|| "ClusterIssuer".into());
                if kind != "ClusterIssuer" && kind != "Issuer" {
                    problems.push(format!(
                        "provision.ingress.issuer_kind: {kind:?} is not ClusterIssuer or Issuer"
                    ));
                }
                c.ingress = service.map(|svc| IngressSettings {
                    kubeconfig: ing.kubeconfig,
                    namespace: ing.namespace.unwrap_or_else(|| "default".into()),
                    name_template: ing
                        .name_template
                        .unwrap_or_else(|| "realmgate-{tenant}".into()),
                    ingress_class: ing.ingress_class,
                    service_name: svc.name,
                    service_port: svc.port,
                    tls_secret_template: ing.tls_secret,
                    cert_issuer: ing.cert_issuer,
                    issuer_kind_cluster: kind == "ClusterIssuer",
                    field_manager: ing.field_manager.unwrap_or_else(|| "realmctl".into()),
                });
            }
        }
        if let Some(dns) = f.dns {
            if provider(&dns.provider, "dns", "powerdns", problems) {
                c.dns = resolve_dns(dns, problems);
            }
        }
        c
    }

    pub fn plan(&self) -> Plan {
        let on = |k: StepKind, p: &'static str, yes: bool| (k, if yes { p } else { "none" });
        Plan {
            providers: vec![
                on(StepKind::Identity, "keycloak", self.identity.is_some()),
                on(StepKind::Database, "libsql", self.database.is_some()),
                on(StepKind::Ingress, "kubernetes", self.ingress.is_some()),
                on(StepKind::Dns, "powerdns", self.dns.is_some()),
                // Made with the service it stores through (`server::assemble`).
                (StepKind::Certificate, "none"),
            ],
        }
    }

    /// The sealing key (an ephemeral one without `secrets_key_file`).
    pub fn secret_box(&self) -> SecretBox {
        self.secret_box.clone().unwrap_or_else(SecretBox::ephemeral)
    }

    /// The configured steps, in order; also the Keycloak client (the bench reads its wait
    /// time).
    pub fn build(&self, data_dir: &Path) -> Result<Built, String> {
        let mut steps: Vec<Arc<dyn Step>> = Vec::new();
        let mut kc_out = None;
        if let Some((url, realm, creds, s)) = &self.identity {
            let kc = Arc::new(Keycloak::new(url, realm, creds.clone())?);
            kc_out = Some(Arc::clone(&kc));
            steps.push(Arc::new(Identity::new(kc, s.clone())));
        }
        if let Some(remote) = &self.database {
            steps.push(Arc::new(Database::new(data_dir, remote.clone())));
        }
        if let Some(s) = &self.ingress {
            steps.push(Arc::new(IngressStep::new(s.clone())));
        }
        if let Some(s) = &self.dns {
            steps.push(Arc::new(Dns::new(s.clone())?));
        }
        Ok((steps, kc_out))
    }
}

fn resolve_dns(d: DnsFile, problems: &mut Vec<String>) -> Option<DnsSettings> {
    let api_url = need(d.api_url, "dns.api_url", problems)?;
    let key_file = need(d.api_key_file, "dns.api_key_file", problems)?;
    let api_key = read_secret(&key_file, "provision.dns.api_key_file", problems);
    let mut zone = need(d.zone, "dns.zone", problems)?;
    if !zone.ends_with('.') {
        zone.push('.');
    }
    let target = match (d.addresses.is_empty(), d.cname) {
        (false, None) => {
            let mut addrs = Vec::new();
            for (i, a) in d.addresses.iter().enumerate() {
                match a.parse() {
                    Ok(ip) => addrs.push(ip),
                    Err(_) => problems.push(format!(
                        "provision.dns.addresses[{i}]: {a:?} is not an IP address"
                    )),
                }
            }
            Target::Addresses(addrs)
        }
        (true, Some(mut c)) => {
            if !c.ends_with('.') {
                c.push('.');
            }
            Target::Cname(c)
        }
        _ => {
            problems.push(
                "provision.dns: give either addresses (A/AAAA) or cname, not both or neither"
                    .into(),
            );
            return None;
        }
    };
    Some(DnsSettings {
        api_url,
        server_id: d.server_id.unwrap_or_else(|| "localhost".into()),
        api_key,
        zone,
        ttl: d.ttl.unwrap_or(300),
        target,
    })
}

/// How the provisioning runner paces its work.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Tenants provisioned at the same time.
    pub max_parallel: usize,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_parallel: 8,
        }
    }
}

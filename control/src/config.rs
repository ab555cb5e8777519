//! `realmctl serve` configuration: a YAML file (unknown keys rejected, every problem listed)
//! with command-line overrides, resolved once into a checked [`Config`].

use crate::api::ApiLimits;
use crate::push::PushSettings;
use crate::registry::RemoteSync;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/realmctl";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Tokens shorter than this are refused: they would be guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The YAML file, as written. Every field is optional; flags may supply the rest. Unknown
/// keys are found by `serde_ignored` (not `deny_unknown_fields`) so that all are listed.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_concurrent_requests: Option<usize>,
    key_minting: Option<KeyMintingFile>,
    registry: Option<RegistryFile>,
    gateways: Option<GatewaysFile>,
    provision: Option<crate::provision::config::ProvisionFile>,
    tls: Option<TlsFile>,
    lease: Option<crate::lease::config::LeaseFile>,
    certificates: Option<crate::acme::config::CertificatesFile>,
    assertion: Option<AssertionFile>,
    domains: Option<domains::DomainsFile>,
    operators: Option<crate::operators::config::OperatorsFile>,
}

/// `assertion:`: the fleet's signed identity assertion (see `docs/apps.md`).
#[derive(Debug, Default, Deserialize)]
struct AssertionFile {
    /// The assertions' `iss` (default `realmgate`).
    issuer: Option<String>,
    /// Seconds a rotated-in key is published before it signs (default 30; 0: at once).
    activation_delay_s: Option<u64>,
    /// Seconds a rotated-out key stays published (default 3600).
    retire_after_s: Option<u64>,
}

/// realmctl's API over TLS: a certificate chain (PEM, leaf first) and its key.
#[derive(Debug, Deserialize)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// Keys each caller (the operator, or each calling key) may mint.
#[derive(Debug, Default, Deserialize)]
struct KeyMintingFile {
    per_minute: Option<u32>,
    burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct RegistryFile {
    remote: Option<RemoteFile>,
}

#[derive(Debug, Deserialize)]
struct RemoteFile {
    url: String,
    auth_token_file: Option<PathBuf>,
    sync_interval_ms: Option<u64>,
    read_your_writes: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct GatewaysFile {
    #[serde(default)]
    urls: Vec<String>,
    token_file: Option<PathBuf>,
    push: Option<PushFile>,
    /// The CA gateways' admin certificates chain to (for `https://` URLs).
    ca_file: Option<PathBuf>,
    /// Or the SHA-256 of the gateway admin certificate (DER), hex.
    cert_sha256: Option<String>,
    /// Gateways found in a Kubernetes Service's EndpointSlices, besides `urls`.
    discovery: Option<crate::discovery::config::DiscoveryFile>,
    /// Scraping each gateway's `/metrics` for `GET /v1/traffic`.
    traffic: Option<crate::traffic::config::TrafficFile>,
}

#[derive(Debug, Default, Deserialize)]
struct PushFile {
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    resync_interval_ms: Option<u64>,
    debounce_ms: Option<u64>,
}

/// Command-line flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    /// When non-empty, replaces `gateways.urls`.
    pub gateways: Vec<String>,
    pub gateway_token_file: Option<PathBuf>,
    /// `--gateway-discovery kubernetes --gateway-service NAME [--gateway-namespace NS]`.
    pub discovery: crate::discovery::config::DiscoveryOverrides,
}

/// A bearer token read from a file. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Token,
    pub max_body_bytes: usize,
    /// Concurrent requests and key-minting quota.
    pub api: ApiLimits,
    pub remote: Option<RemoteSync>,
    pub gateways: Vec<String>,
    /// Gateways discovered from EndpointSlices (with the static `gateways`, if any).
    pub discovery: Option<crate::discovery::config::KubernetesDiscovery>,
    pub gateway_token: Option<Token>,
    pub push: PushSettings,
    /// How each gateway's `/metrics` is scraped (`gateways.traffic`).
    pub traffic: crate::traffic::TrafficSettings,
    /// Provisioning steps and their providers (all `none` without a `provision:` section).
    pub provision: crate::provision::config::ProvisionConfig,
    /// How gateways' `https://` admin URLs are verified.
    pub gateway_trust: crate::tls::GatewayTrust,
    /// Serve the API over TLS with this (`tls:`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Hold this Kubernetes Lease before writing (`lease:`); `None`: the writer lock alone.
    pub lease: Option<crate::lease::config::LeaseConfig>,
    /// Certificates from an ACME CA for every tenant (`certificates.acme`); `None`: off.
    pub acme: Option<crate::acme::AcmeSettings>,
    /// The identity assertion's issuer and key rotation timing (`assertion:`).
    pub assertion: crate::service::assertion::AssertionSettings,
    /// Custom domains' ownership checks (`domains`); `None`: custom domains refused.
    pub domains: Option<crate::service::domains::DomainSettings>,
    /// Console sign-in through the operators' realm (`operators.oidc`); `None`: token only.
    pub operators: Option<crate::operators::config::OidcSettings>,
}

impl Config {
    /// Read `path` (if any), apply `o`, and check everything; on failure every problem is
    /// returned, each naming the key or flag at fault.
    pub fn load(path: Option<&Path>, o: &Overrides) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let file = match path {
            None => FileConfig::default(),
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => parse_yaml(&text, &mut problems),
                Err(e) => return Err(vec![format!("cannot read {}: {e}", p.display())]),
            },
        };
        let listen_raw = o
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_raw.parse::<SocketAddr>().map_err(|_| {
            problems.push(format!("listen: {listen_raw:?} is not an IP:port address"));
        });
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let admin_token = match o.admin_token_file.clone().or(file.admin_token_file) {
            Some(p) => read_token(&p, "admin_token_file", &mut problems),
            None => {
                problems.push(
                    "admin_token_file: required (the operator bearer token for realmctl's API)"
                        .into(),
                );
                None
            }
        };
        let max_body_bytes = file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            problems.push("max_body_bytes: must be at least 1024".into());
        }
        let api = api_limits(
            file.max_concurrent_requests,
            file.key_minting.unwrap_or_default(),
            &mut problems,
        );
        let remote = file
            .registry
            .and_then(|r| r.remote)
            .and_then(|r| remote_sync(r, &mut problems));
        let gw = file.gateways.unwrap_or_default();
        let gateways = if o.gateways.is_empty() {
            gw.urls
        } else {
            o.gateways.clone()
        };
        for (i, url) in gateways.iter().enumerate() {
            if let Err(e) = check_gateway_url(url) {
                problems.push(format!("gateways.urls[{i}]: {url:?}: {e}"));
            }
            if gateways[..i]
                .iter()
                .any(|u| u.trim_end_matches('/') == url.trim_end_matches('/'))
            {
                problems.push(format!("gateways.urls[{i}]: {url:?} listed twice"));
            }
        }
        let discovery =
            crate::discovery::config::resolve(gw.discovery, &o.discovery, &mut problems);
        let gateway_token = match o.gateway_token_file.clone().or(gw.token_file) {
            Some(p) => read_token(&p, "gateways.token_file", &mut problems),
            None if !gateways.is_empty() || discovery.is_some() => {
                problems.push("gateways.token_file: required when gateways are configured (the gateways' admin token)".into());
                None
            }
            None => None,
        };
        let push = push_settings(gw.push.unwrap_or_default(), &mut problems);
        let traffic = crate::traffic::config::resolve(gw.traffic, &mut problems);
        let gateway_trust = gateway_trust(gw.ca_file, gw.cert_sha256, &mut problems);
        for url in gateways
            .iter()
            .filter(|u| !crate::tls::may_carry_secrets(u))
        {
            log::warn!(
                "gateway {url} is plain http to a non-loopback host: tables carry secrets (the assertion signing keys, login client secrets, certificate keys) and will not be pushed to it; give it admin_tls and an https:// URL"
            );
        }
        let tls = file.tls.and_then(|t| {
            crate::tls::server_config(&t.cert_file, &t.key_file)
                .map_err(|e| problems.push(format!("tls: {e}")))
                .ok()
        });
        let assertion = assertion_settings(file.assertion.unwrap_or_default(), &mut problems);
        let provision = crate::provision::config::ProvisionConfig::resolve(
            file.provision.unwrap_or_default(),
            &mut problems,
        );
        let lease = file
            .lease
            .and_then(|l| crate::lease::config::LeaseConfig::resolve(l, &mut problems));
        let acme = crate::acme::config::resolve(
            file.certificates.unwrap_or_default(),
            provision.acme_dns(),
            &mut problems,
        );
        if acme.is_some() && provision.secret_box().is_ephemeral() {
            problems.push("certificates.acme: needs provision.secrets_key_file (the ACME account and certificate keys are sealed with it)".into());
        }
        let domains = domains::resolve(file.domains, provision.dns_zone(), &mut problems);
        let operators = crate::operators::config::resolve(file.operators, &mut problems);
        match (listen, admin_token) {
            (Ok(listen), Some(admin_token)) if problems.is_empty() => Ok(Config {
                listen,
                data_dir,
                admin_token,
                max_body_bytes,
                api,
                remote,
                gateways: gateways
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
                discovery,
                gateway_token,
                push,
                traffic,
                provision,
                gateway_trust,
                tls,
                lease,
                acme,
                assertion,
                domains,
                operators,
            }),
            _ => Err(problems),
        }
    }
}

fn api_limits(
    max_concurrent: Option<usize>,
    minting: KeyMintingFile,
    problems: &mut Vec<String>,
) -> ApiLimits {
    let d = ApiLimits::default();
    let limits = ApiLimits {
        max_concurrent_requests: max_concurrent.unwrap_or(d.max_concurrent_requests),
        mint_per_minute: minting.per_minute.unwrap_or(d.mint_per_minute),
        mint_burst: minting.burst.unwrap_or(d.mint_burst),
    };
    if limits.max_concurrent_requests == 0 {
        problems.push("max_concurrent_requests: must be at least 1".into());
    }
    if limits.mint_per_minute == 0 {
        problems.push("key_minting.per_minute: must be at least 1".into());
    }
    if limits.mint_burst == 0 {
        problems.push("key_minting.burst: must be at least 1".into());
    }
    limits
}

fn parse_yaml(text: &str, problems: &mut Vec<String>) -> FileConfig {
    let mut unknown = Vec::new();
    let de = serde_yaml::Deserializer::from_str(text);
    let parsed: Result<Option<FileConfig>, _> = serde_ignored::deserialize(de, |path| {
        unknown.push(realmgate_table::field_path(&path));
    });
    problems.extend(unknown.into_iter().map(|k| format!("{k}: unknown key")));
    match parsed {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            problems.push(format!("malformed configuration: {e}"));
            FileConfig::default()
        }
    }
}

fn read_token(path: &Path, key: &str, problems: &mut Vec<String>) -> Option<Token> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() < MIN_TOKEN_LEN {
                problems.push(format!(
                    "{key}: the token in {} is shorter than {MIN_TOKEN_LEN} characters",
                    path.display()
                ));
                return None;
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(format!(
                    "{key}: the token in {} contains whitespace",
                    path.display()
                ));
                return None;
            }
            Some(Token(token.into()))
        }
        Err(e) => {
            problems.push(format!("{key}: cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn remote_sync(r: RemoteFile, problems: &mut Vec<String>) -> Option<RemoteSync> {
    let scheme_ok = ["libsql://", "https://", "http://"]
        .iter()
        .any(|s| r.url.starts_with(s) && r.url.len() > s.len());
    if !scheme_ok {
        problems.push(format!(
            "registry.remote.url: {:?} must be a libsql://, https:// or http:// URL",
            r.url
        ));
    }
    let auth_token = match &r.auth_token_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                problems.push(format!(
                    "registry.remote.auth_token_file: cannot read {}: {e}",
                    p.display()
                ));
                return None;
            }
        },
        None => String::new(),
    };
    if r.sync_interval_ms == Some(0) {
        problems.push("registry.remote.sync_interval_ms: must be at least 1".into());
    }
    scheme_ok.then(|| RemoteSync {
        url: r.url,
        auth_token,
        sync_interval: r.sync_interval_ms.map(Duration::from_millis),
        read_your_writes: r.read_your_writes.unwrap_or(true),
    })
}

fn gateway_trust(
    ca_file: Option<PathBuf>,
    pin: Option<String>,
    problems: &mut Vec<String>,
) -> crate::tls::GatewayTrust {
    use crate::tls::GatewayTrust;
    let trust = match (ca_file, pin) {
        (Some(_), Some(_)) => Err("gateways.ca_file and gateways.cert_sha256: give one".into()),
        (Some(p), None) => {
            GatewayTrust::from_ca_file(&p).map_err(|e| format!("gateways.ca_file: {e}"))
        }
        (None, Some(pin)) => {
            GatewayTrust::from_pin(&pin).map_err(|e| format!("gateways.cert_sha256: {e}"))
        }
        (None, None) => Ok(GatewayTrust::System),
    };
    trust.unwrap_or_else(|e| {
        problems.push(e);
        GatewayTrust::System
    })
}

/// A gateway's admin base URL: `https://` (verified with `gateways.ca_file`,
/// `gateways.cert_sha256` or the system roots) or `http://` (tables with secrets only to
/// loopback).
fn check_gateway_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(format!("scheme {other:?} is not http or https")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || parsed.path() != "/" {
        return Err("give the admin base URL only, like http://127.0.0.1:9080".into());
    }
    Ok(())
}

fn assertion_settings(
    a: AssertionFile,
    problems: &mut Vec<String>,
) -> crate::service::assertion::AssertionSettings {
    let mut s = crate::service::assertion::AssertionSettings::default();
    if let Some(issuer) = a.issuer {
        let n = issuer.chars().count();
        if n == 0
            || n > realmgate_table::assertion::MAX_ISSUER_CHARS
            || issuer.chars().any(char::is_control)
        {
            problems.push(
                "assertion.issuer: must be 1-256 characters without control characters".into(),
            );
        }
        s.issuer = issuer;
    }
    if let Some(d) = a.activation_delay_s {
        if d > 86_400 {
            problems.push("assertion.activation_delay_s: at most 86400".into());
        }
        s.activation_delay = Duration::from_secs(d);
    }
    if let Some(r) = a.retire_after_s {
        if !(60..=30 * 86_400).contains(&r) {
            problems.push(
                "assertion.retire_after_s: must be between 60 (an assertion's life) and 2592000"
                    .into(),
            );
        }
        s.retire_after = Duration::from_secs(r);
    }
    s
}

fn push_settings(p: PushFile, problems: &mut Vec<String>) -> PushSettings {
    let d = PushSettings::default();
    let mut ms = |key: &str, v: Option<u64>, default: Duration| match v {
        Some(0) => {
            problems.push(format!("gateways.push.{key}: must be at least 1"));
            default
        }
        Some(v) => Duration::from_millis(v),
        None => default,
    };
    let s = PushSettings {
        timeout: ms("timeout_ms", p.timeout_ms, d.timeout),
        connect_timeout: ms(
            "connect_timeout_ms",
            p.connect_timeout_ms,
            d.connect_timeout,
        ),
        initial_backoff: ms(
            "initial_backoff_ms",
            p.initial_backoff_ms,
            d.initial_backoff,
        ),
        max_backoff: ms("max_backoff_ms", p.max_backoff_ms, d.max_backoff),
        resync_interval: ms(
            "resync_interval_ms",
            p.resync_interval_ms,
            d.resync_interval,
        ),
        debounce: ms("debounce_ms", p.debounce_ms, d.debounce),
    };
    if s.max_backoff < s.initial_backoff {
        problems.push("gateways.push.max_backoff_ms: must not be below initial_backoff_ms".into());
    }
    s
}

mod domains;

#[cfg(test)]
mod tests;

//! Start-up configuration: the YAML file (Pingora's server settings plus ours), command-line
//! overrides, and `realmgate check`, which lists every problem instead of stopping at one.

use crate::auth::AuthConfig;
use crate::connection::{open_files_limit, ClientFile, ClientLimits};
use crate::limits::client::{Cidr, TrustedProxies};
use crate::snapshot::cpus::Cpus;
use crate::tls::settings::{CertFiles, H2File, TlsFile};
use crate::tls::TlsConfig;
use pingora_core::server::configuration::ServerConf;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9080";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/realmgate";
/// Shortest admin token accepted: a guessable token is worse than none.
pub const MIN_TOKEN_LEN: usize = 16;

/// The YAML file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileConf {
    /// Pingora's own `ServerConf` (threads, work_stealing, grace periods, keepalive pool…).
    pub pingora: Option<ServerConf>,
    pub gateway: GatewayFile,
}

/// Our part of the YAML file. Every field is optional; flags override it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GatewayFile {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// How often every upstream endpoint is probed.
    pub health_check_interval_ms: Option<u64>,
    /// Largest table accepted by `PUT /v1/table`.
    pub max_table_bytes: Option<usize>,
    pub journal_compact_bytes: Option<u64>,
    /// How long a delta's apply yields a core the traffic keeps busy (0: never).
    pub delta_yield_ms: Option<u64>,
    /// How long a delta's apply may run at the kernel's idle priority (0: never).
    pub delta_idle_ms: Option<u64>,
    /// The CPUs table work runs on, off the proxy workers' (absent: wherever the process runs).
    pub table_cpus: Option<Vec<usize>>,
    /// The CPUs every other thread runs on, the proxy's workers among them (absent: those the
    /// process was started on, but `table_cpus`).
    pub worker_cpus: Option<Vec<usize>>,
    /// Tenants that get their own `tenant` label in metrics; the rest are counted as `_other`.
    pub metrics_tenant_labels: Option<usize>,
    /// realmctl's base URL: at start the gateway asks it for the current table.
    pub control_url: Option<String>,
    /// Networks (`10.0.0.0/8`, `::1`) of proxies in front of the gateway whose
    /// `X-Forwarded-For` is believed when counting per-client rate limits.
    pub trusted_proxies: Option<Vec<String>>,
    /// Session cookie key(s): one per line, 32 bytes each as base64 or 64 hex digits; the
    /// first seals, all open (rotation). Absent: a random key at start (with a warning).
    pub session_key_file: Option<PathBuf>,
    pub auth: AuthFile,
    pub client: ClientFile,
    /// TLS listen addresses (`--tls-listen`, repeatable, replaces the list).
    pub tls_listen: Option<Vec<String>>,
    /// The public HTTPS port redirects point to (443: omitted from `Location`).
    pub https_port: Option<u32>,
    /// Served for an unknown or absent SNI; without it such handshakes fail.
    pub tls_fallback_certificate: Option<CertFiles>,
    /// `"1.2"` (default) or `"1.3"`.
    pub tls_min_version: Option<String>,
    /// Serve the admin listener over HTTPS with this certificate.
    pub admin_tls: Option<CertFiles>,
    /// PEM CA(s) for realmctl's certificate when `control_url` is https://.
    pub control_ca_file: Option<PathBuf>,
    pub h2: H2File,
}

/// `gateway.auth`: JWT, JWKS and session settings. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuthFile {
    pub clock_skew_s: Option<u64>,
    pub max_token_bytes: Option<usize>,
    pub jwks_refetch_interval_ms: Option<u64>,
    pub jwks_ttl_min_s: Option<u64>,
    pub jwks_ttl_default_s: Option<u64>,
    pub jwks_ttl_max_s: Option<u64>,
    pub realm_timeout_ms: Option<u64>,
    pub token_cache_entries: Option<u64>,
    pub assertion_cache_entries: Option<u64>,
    pub session_refresh_margin_s: Option<u64>,
    pub login_timeout_s: Option<u64>,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub control_url: Option<String>,
    /// `--tls-listen`, repeatable: replaces `gateway.tls_listen` when given.
    pub tls_listen: Vec<String>,
}

/// The resolved configuration the gateway runs with.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// `None`: no token configured, so every table endpoint answers 401.
    pub admin_token: Option<String>,
    pub state_dir: PathBuf,
    pub health_check_interval_ms: u64,
    pub max_table_bytes: usize,
    /// The delta journal is compacted past this size (and refuses deltas past 4×).
    pub journal_compact_bytes: u64,
    /// How long a delta's apply yields a core the traffic keeps busy (`snapshot::pace`; 1 s
    /// by default); zero: never.
    pub delta_yield: std::time::Duration,
    /// How long a delta's apply may run at the kernel's idle priority, where the process
    /// may raise it back (`snapshot::pace`); zero: never.
    pub delta_idle: std::time::Duration,
    /// The CPUs table work runs on (`snapshot::cpus`: the admin API, a delta's apply, freeing
    /// replaced snapshots, compaction, pulling); none named: wherever the process runs.
    pub table_cpus: crate::snapshot::cpus::Cpus,
    /// The CPUs the process is pinned to at start (`snapshot::cpus`), table work excepted;
    /// by default those it was started on but the table CPUs; none: where it was started.
    pub worker_cpus: crate::snapshot::cpus::Cpus,
    pub metrics_tenant_labels: usize,
    /// Base URL of realmctl, pulled from at start (with the admin token as bearer).
    pub control_url: Option<String>,
    pub trusted_proxies: TrustedProxies,
    pub auth: AuthConfig,
    /// `None`: no key file configured.
    pub session_keys: Option<Vec<[u8; 32]>>,
    pub client: ClientLimits,
    /// The public HTTPS port (`gateway.https_port`, default 443).
    pub https_port: u16,
    /// TLS listeners, certificates and HTTP/2 limits.
    pub tls: TlsConfig,
}

impl Config {
    /// Read the file (if any), apply overrides, and check everything. Returns every problem.
    pub fn load(conf: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let file = match conf {
            Some(path) => read_file(path, &mut problems),
            None => FileConf::default(),
        };
        let g = file.gateway;
        let listen = parse_addr(
            "listen",
            overrides.listen.as_deref().or(g.listen.as_deref()),
            DEFAULT_LISTEN,
            &mut problems,
        );
        let admin_listen = parse_addr(
            "admin_listen",
            overrides
                .admin_listen
                .as_deref()
                .or(g.admin_listen.as_deref()),
            DEFAULT_ADMIN_LISTEN,
            &mut problems,
        );
        let token_file = overrides.admin_token_file.clone().or(g.admin_token_file);
        let admin_token = token_file.and_then(|p| read_token(&p, &mut problems));
        let state_dir = overrides
            .state_dir
            .clone()
            .or(g.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        check_state_dir(&state_dir, &mut problems);
        let health_check_interval_ms = g.health_check_interval_ms.unwrap_or(1000);
        if !(50..=3_600_000).contains(&health_check_interval_ms) {
            problems
                .push("gateway.health_check_interval_ms: must be between 50 and 3600000".into());
        }
        let max_table_bytes = g.max_table_bytes.unwrap_or(256 << 20);
        let journal_compact_bytes = g.journal_compact_bytes.unwrap_or(64 << 20);
        if journal_compact_bytes < 4096 {
            problems.push("gateway.journal_compact_bytes: must be at least 4096".into());
        }
        let delta_yield_ms = g.delta_yield_ms.unwrap_or(1000);
        if delta_yield_ms > 60_000 {
            problems.push("gateway.delta_yield_ms: must be at most 60000".into());
        }
        let delta_idle_ms = g.delta_idle_ms.unwrap_or(0);
        if delta_idle_ms > 60_000 {
            problems.push("gateway.delta_idle_ms: must be at most 60000".into());
        }
        let mut cpus = |name: &str, list: Option<&[usize]>| match list.map(Cpus::parse) {
            None => Cpus::default(),
            Some(Ok(cpus)) => cpus,
            Some(Err(e)) => {
                problems.push(format!("gateway.{name}: {e}"));
                Cpus::default()
            }
        };
        let table_cpus = cpus("table_cpus", g.table_cpus.as_deref());
        let worker_cpus = match g.worker_cpus.as_deref() {
            Some(list) => cpus("worker_cpus", Some(list)),
            // Table CPUs are kept for table work: the rest of the process, its workers among
            // them, runs on the CPUs it was started on but those.
            None => table_cpus.the_others(),
        };
        if let Some(cpu) = worker_cpus.shared_with(&table_cpus) {
            problems.push(format!(
                "gateway.worker_cpus and gateway.table_cpus both name CPU {cpu}: table work would run beside the workers it is kept off"
            ));
        }
        if max_table_bytes < 1024 {
            problems.push("gateway.max_table_bytes: must be at least 1024".into());
        }
        let server = server_conf(file.pingora, &mut problems);
        let control_url = overrides.control_url.clone().or(g.control_url);
        if let Some(url) = &control_url {
            check_control_url(url, &mut problems);
            if admin_token.is_none() {
                problems.push("control_url needs an admin token: it is the bearer the gateway presents to realmctl".into());
            }
        }
        let tls = TlsConfig::load(
            TlsFile {
                tls_listen: g.tls_listen,
                https_port: g.https_port,
                tls_fallback_certificate: g.tls_fallback_certificate,
                tls_min_version: g.tls_min_version,
                admin_tls: g.admin_tls,
                control_ca_file: g.control_ca_file,
                h2: g.h2,
            },
            &overrides.tls_listen,
            crate::auth::unix_now(),
            &mut problems,
        );
        if tls.control_ca_pem.is_some()
            && !control_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        {
            problems.push(
                "gateway.control_ca_file is set but control_url is not an https:// URL".into(),
            );
        }
        for a in &tls.listen {
            if listen == Some(*a) || admin_listen == Some(*a) {
                problems.push(format!("tls_listen: {a} is also listen or admin_listen"));
            }
        }
        let mut nets = Vec::new();
        for (i, text) in g.trusted_proxies.iter().flatten().enumerate() {
            match Cidr::parse(text) {
                Ok(c) => nets.push(c),
                Err(e) => problems.push(format!("gateway.trusted_proxies[{i}]: {e}")),
            }
        }
        let auth = auth_conf(&g.auth, &mut problems);
        let client = ClientLimits::from_file(&g.client, open_files_limit(), &mut problems);
        let session_keys = g
            .session_key_file
            .as_deref()
            .map(|p| read_session_keys(p, &mut problems));
        if listen.is_some() && listen == admin_listen {
            problems.push("listen and admin_listen must differ".into());
        }
        match (listen, admin_listen) {
            (Some(listen), Some(admin_listen)) if problems.is_empty() => Ok(Config {
                server,
                listen,
                admin_listen,
                admin_token,
                state_dir,
                health_check_interval_ms,
                max_table_bytes,
                journal_compact_bytes,
                delta_yield: std::time::Duration::from_millis(delta_yield_ms),
                delta_idle: std::time::Duration::from_millis(delta_idle_ms),
                table_cpus,
                worker_cpus,
                metrics_tenant_labels: g.metrics_tenant_labels.unwrap_or(1000),
                control_url,
                trusted_proxies: TrustedProxies::new(nets),
                auth,
                session_keys,
                client,
                https_port: tls.https_port,
                tls,
            }),
            _ => Err(problems),
        }
    }
}

/// realmctl's URL: https://, or http:// to a loopback host only. The gateway pulls tables
/// that carry login client secrets and private keys; they never cross a network in clear.
fn check_control_url(url: &str, problems: &mut Vec<String>) {
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("control_url: {url:?} is not a URL: {e}"));
            return;
        }
    };
    match parsed.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback_host(&parsed) {
                problems.push(format!(
                    "control_url: {url:?} is plain http:// to a non-loopback host; the gateway \
                     pulls tables holding secrets from it: use https:// (with \
                     gateway.control_ca_file for a private CA)"
                ));
            }
        }
        _ => problems.push(format!(
            "control_url: {url:?} must be an https:// URL (or http:// on loopback)"
        )),
    }
}

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn read_file(path: &Path, problems: &mut Vec<String>) -> FileConf {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{}: cannot read: {e}", path.display()));
            return FileConf::default();
        }
    };
    let de = serde_yaml::Deserializer::from_str(&text);
    let mut unknown = Vec::new();
    let parsed: Result<FileConf, _> =
        serde_ignored::deserialize(de, |p| unknown.push(realmgate_table::field_path(&p)));
    match parsed {
        Ok(conf) => {
            for key in unknown {
                problems.push(format!("{}: unknown key {key}", path.display()));
            }
            conf
        }
        Err(e) => {
            problems.push(format!("{}: {e}", path.display()));
            FileConf::default()
        }
    }
}

fn parse_addr(
    key: &str,
    value: Option<&str>,
    default: &str,
    problems: &mut Vec<String>,
) -> Option<SocketAddr> {
    let value = value.unwrap_or(default);
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!("{key}: {value:?} is not an IP:port address"));
            None
        }
    }
}

fn read_token(path: &Path, problems: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() < MIN_TOKEN_LEN {
                problems.push(format!(
                    "admin_token_file {}: token must be at least {MIN_TOKEN_LEN} characters",
                    path.display()
                ));
                return None;
            }
            Some(token.to_owned())
        }
        Err(e) => {
            problems.push(format!(
                "admin_token_file {}: cannot read: {e}",
                path.display()
            ));
            None
        }
    }
}

fn auth_conf(f: &AuthFile, problems: &mut Vec<String>) -> AuthConfig {
    use std::time::Duration;
    let d = AuthConfig::default();
    let mut get = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| -> u64 {
        match value {
            Some(v) if !(min..=max).contains(&v) => {
                problems.push(format!(
                    "gateway.auth.{key}: must be between {min} and {max}"
                ));
                default
            }
            Some(v) => v,
            None => default,
        }
    };
    let secs = |x: Duration| x.as_secs();
    let c = AuthConfig {
        clock_skew_s: get("clock_skew_s", f.clock_skew_s, d.clock_skew_s, 0, 600),
        max_token_bytes: get(
            "max_token_bytes",
            f.max_token_bytes.map(|v| v as u64),
            d.max_token_bytes as u64,
            1024,
            65536,
        ) as usize,
        jwks_refetch_interval: Duration::from_millis(get(
            "jwks_refetch_interval_ms",
            f.jwks_refetch_interval_ms,
            d.jwks_refetch_interval.as_millis() as u64,
            100,
            3_600_000,
        )),
        jwks_ttl_min: Duration::from_secs(get(
            "jwks_ttl_min_s",
            f.jwks_ttl_min_s,
            secs(d.jwks_ttl_min),
            1,
            604_800,
        )),
        jwks_ttl_default: Duration::from_secs(get(
            "jwks_ttl_default_s",
            f.jwks_ttl_default_s,
            secs(d.jwks_ttl_default),
            1,
            604_800,
        )),
        jwks_ttl_max: Duration::from_secs(get(
            "jwks_ttl_max_s",
            f.jwks_ttl_max_s,
            secs(d.jwks_ttl_max),
            1,
            604_800,
        )),
        realm_timeout: Duration::from_millis(get(
            "realm_timeout_ms",
            f.realm_timeout_ms,
            d.realm_timeout.as_millis() as u64,
            100,
            60_000,
        )),
        token_cache_entries: get(
            "token_cache_entries",
            f.token_cache_entries,
            d.token_cache_entries,
            0,
            10_000_000,
        ),
        assertion_cache_entries: get(
            "assertion_cache_entries",
            f.assertion_cache_entries,
            d.assertion_cache_entries,
            0,
            10_000_000,
        ),
        session_refresh_margin_s: get(
            "session_refresh_margin_s",
            f.session_refresh_margin_s,
            d.session_refresh_margin_s,
            0,
            3600,
        ),
        login_timeout_s: get(
            "login_timeout_s",
            f.login_timeout_s,
            d.login_timeout_s,
            30,
            3600,
        ),
    };
    if !(c.jwks_ttl_min <= c.jwks_ttl_default && c.jwks_ttl_default <= c.jwks_ttl_max) {
        problems.push(
            "gateway.auth: need jwks_ttl_min_s <= jwks_ttl_default_s <= jwks_ttl_max_s".into(),
        );
    }
    c
}

/// Session keys: one per line (blank lines and `#` comments skipped), each 32 bytes as
/// base64 (standard or URL-safe, padded or not) or 64 hex digits.
fn read_session_keys(path: &Path, problems: &mut Vec<String>) -> Vec<[u8; 32]> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!(
                "session_key_file {}: cannot read: {e}",
                path.display()
            ));
            return Vec::new();
        }
    };
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_key(line) {
            Some(k) => keys.push(k),
            None => problems.push(format!(
                "session_key_file {} line {}: not 32 bytes of base64 or 64 hex digits (make one with: head -c 32 /dev/urandom | base64)",
                path.display(),
                i + 1
            )),
        }
    }
    if keys.is_empty() && problems.is_empty() {
        problems.push(format!("session_key_file {}: no key in it", path.display()));
    }
    keys
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(s).ok())?
    };
    bytes.try_into().ok()
}

fn check_state_dir(dir: &Path, problems: &mut Vec<String>) {
    if dir.exists() {
        if !dir.is_dir() {
            problems.push(format!("state_dir {}: not a directory", dir.display()));
        }
        return;
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        problems.push(format!(
            "state_dir {}: neither it nor its parent directory exists",
            dir.display()
        ));
    }
}

/// Pingora's settings, with grace periods that do not hold a restart for Pingora's default
/// 300 s unless asked to.
fn server_conf(conf: Option<ServerConf>, problems: &mut Vec<String>) -> ServerConf {
    let mut conf = conf.unwrap_or_default();
    conf.grace_period_seconds.get_or_insert(5);
    conf.graceful_shutdown_timeout_seconds.get_or_insert(10);
    if conf.threads == 0 {
        problems.push("pingora.threads: must be at least 1".into());
    }
    match conf.validate() {
        Ok(conf) => conf,
        Err(e) => {
            problems.push(format!("pingora: {e}"));
            ServerConf::default()
        }
    }
}

#[cfg(test)]
mod tests;

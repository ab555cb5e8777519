//! The `certificates.acme` section of realmctl's configuration: which ACME directory to order
//! from, how to trust it, the account's contact and external account binding, the challenge,
//! the authoritative server dns-01 records are checked on, and how platform hosts are covered.

use super::{AcmeSettings, ChallengeKind, DnsProvider, Eab, PlatformHosts};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `certificates:` as written.
#[derive(Debug, Default, Deserialize)]
pub struct CertificatesFile {
    acme: Option<AcmeFile>,
}

#[derive(Debug, Deserialize)]
struct AcmeFile {
    directory_url: Option<String>,
    directory_ca_file: Option<PathBuf>,
    #[serde(default)]
    contact: Vec<String>,
    eab: Option<EabFile>,
    challenge: Option<String>,
    resolver: Option<String>,
    dns_wait_ms: Option<u64>,
    platform_hosts: Option<String>,
    renew_before: Option<f64>,
    challenge_wait_ms: Option<u64>,
    validation_timeout_ms: Option<u64>,
    renew_check_ms: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct EabFile {
    kid: String,
    hmac_key_file: PathBuf,
}

/// Let's Encrypt and most CAs renew at a third of the lifetime left.
pub const DEFAULT_RENEW_BEFORE: f64 = 1.0 / 3.0;

/// Resolve the section; every problem is pushed, each naming its key. `dns` is the dns
/// step's provider (`provision.dns`), which dns-01 publishes through.
pub fn resolve(
    f: CertificatesFile,
    dns: Option<DnsProvider>,
    problems: &mut Vec<String>,
) -> Option<AcmeSettings> {
    let a = f.acme?;
    let start = problems.len();
    let directory_url = a.directory_url.unwrap_or_else(|| {
        problems.push("certificates.acme.directory_url: required (the CA's ACME directory, like https://acme-v02.api.letsencrypt.org/directory)".into());
        String::new()
    });
    if !directory_url.is_empty() {
        match url::Url::parse(&directory_url) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
            Ok(_) => problems.push(format!(
                "certificates.acme.directory_url: {directory_url:?} must be an https:// URL (RFC 8555 §6.1)"
            )),
            Err(e) => problems.push(format!(
                "certificates.acme.directory_url: {directory_url:?} is not a URL: {e}"
            )),
        }
    }
    let directory_ca_pem = a
        .directory_ca_file
        .as_ref()
        .and_then(|p| match std::fs::read(p) {
            Ok(pem) if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) => {
                Some(pem)
            }
            Ok(_) => {
                problems.push(format!(
                    "certificates.acme.directory_ca_file: {} holds no PEM certificate",
                    p.display()
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "certificates.acme.directory_ca_file: cannot read {}: {e}",
                    p.display()
                ));
                None
            }
        });
    for (i, c) in a.contact.iter().enumerate() {
        let ok = c.strip_prefix("mailto:").is_some_and(|m| {
            m.contains('@') && !m.contains(',') && !m.contains(char::is_whitespace)
        });
        if !ok {
            problems.push(format!(
                "certificates.acme.contact[{i}]: {c:?} must be a mailto: URL with one address (like mailto:ops@example.dev)"
            ));
        }
    }
    let eab = a.eab.and_then(|e| {
        if e.kid.trim().is_empty() {
            problems.push("certificates.acme.eab.kid: must not be empty".into());
        }
        match std::fs::read_to_string(&e.hmac_key_file) {
            Ok(text) => {
                use base64::Engine as _;
                // CAs hand the HMAC key out base64url-encoded (RFC 8555 §7.3.4).
                let t = text.trim();
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t.trim_end_matches('='))
                    .ok()
                    .filter(|k| !k.is_empty());
                match key {
                    Some(hmac_key) => Some(Eab {
                        kid: e.kid,
                        hmac_key,
                    }),
                    None => {
                        problems.push(format!(
                            "certificates.acme.eab.hmac_key_file: {} does not hold a base64url key",
                            e.hmac_key_file.display()
                        ));
                        None
                    }
                }
            }
            Err(err) => {
                problems.push(format!(
                    "certificates.acme.eab.hmac_key_file: cannot read {}: {err}",
                    e.hmac_key_file.display()
                ));
                None
            }
        }
    });
    let challenge = match a.challenge.as_deref().unwrap_or("http-01") {
        "http-01" => ChallengeKind::Http01,
        "dns-01" => ChallengeKind::Dns01,
        other => {
            problems.push(format!(
                "certificates.acme.challenge: {other:?} is not \"http-01\" or \"dns-01\""
            ));
            ChallengeKind::Http01
        }
    };
    let platform_hosts = match a.platform_hosts.as_deref().unwrap_or("per-host") {
        "per-host" => PlatformHosts::PerHost,
        "wildcard" => PlatformHosts::Wildcard,
        other => {
            problems.push(format!(
                "certificates.acme.platform_hosts: {other:?} is not \"per-host\" (a certificate per tenant) or \"wildcard\" (one *.<zone> certificate via dns-01)"
            ));
            PlatformHosts::PerHost
        }
    };
    if dns.is_none() {
        if challenge == ChallengeKind::Dns01 {
            problems.push("certificates.acme.challenge: \"dns-01\" publishes _acme-challenge TXT records through the DNS provider, and none is configured: set provision.dns (provider: powerdns), or use \"http-01\"".into());
        }
        if platform_hosts == PlatformHosts::Wildcard {
            problems.push("certificates.acme.platform_hosts: \"wildcard\" covers *.<zone> of the DNS provider via dns-01, and none is configured: set provision.dns (provider: powerdns), or use \"per-host\"".into());
        }
    }
    let resolver = a.resolver.as_deref().and_then(|r| match r.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!(
                "certificates.acme.resolver: {r:?} is not an IP address and port (the zone's authoritative DNS server, like 192.0.2.53:53)"
            ));
            None
        }
    });
    let renew_before = a.renew_before.unwrap_or(DEFAULT_RENEW_BEFORE);
    if !(renew_before > 0.0 && renew_before < 1.0) {
        problems.push(format!(
            "certificates.acme.renew_before: {renew_before} must be a fraction of the lifetime between 0 and 1 (like 0.33)"
        ));
    }
    let ms = |key: &str, v: Option<u64>, default: u64, problems: &mut Vec<String>| match v {
        Some(0) => {
            problems.push(format!("certificates.acme.{key}: must be at least 1"));
            Duration::from_millis(default)
        }
        v => Duration::from_millis(v.unwrap_or(default)),
    };
    let challenge_wait = ms("challenge_wait_ms", a.challenge_wait_ms, 30_000, problems);
    let validation_timeout = ms(
        "validation_timeout_ms",
        a.validation_timeout_ms,
        120_000,
        problems,
    );
    let dns_wait = ms("dns_wait_ms", a.dns_wait_ms, 120_000, problems);
    let renew_check = ms("renew_check_ms", a.renew_check_ms, 60_000, problems);
    let retry_initial = ms("retry_initial_ms", a.retry_initial_ms, 60_000, problems);
    let retry_max = ms("retry_max_ms", a.retry_max_ms, 3_600_000, problems);
    if retry_max < retry_initial {
        problems.push(format!(
            "certificates.acme.retry_max_ms: {} is less than retry_initial_ms ({})",
            retry_max.as_millis(),
            retry_initial.as_millis()
        ));
    }
    (problems.len() == start).then_some(AcmeSettings {
        directory_url,
        directory_ca_pem,
        contact: a.contact,
        eab,
        challenge,
        resolver,
        dns_wait,
        platform_hosts,
        dns,
        renew_before,
        challenge_wait,
        validation_timeout,
        renew_check,
        retry_initial,
        retry_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (Option<AcmeSettings>, Vec<String>) {
        parse_with(yaml, None)
    }

    fn parse_with(yaml: &str, dns: Option<DnsProvider>) -> (Option<AcmeSettings>, Vec<String>) {
        let f: CertificatesFile = serde_yaml::from_str(yaml).expect("yaml");
        let mut problems = Vec::new();
        (resolve(f, dns, &mut problems), problems)
    }

    /// A DNS provider that is never asked: the section only checks that one is there.
    struct Unused;

    #[async_trait::async_trait]
    impl super::super::TxtRecords for Unused {
        async fn zone_of(&self, _: &str) -> Result<Option<String>, String> {
            Err("unused".into())
        }
        async fn publish_txt(&self, _: &str, _: &str, _: &[String]) -> Result<(), String> {
            Err("unused".into())
        }
        async fn remove_txt(&self, _: &str, _: &str) -> Result<(), String> {
            Err("unused".into())
        }
        async fn authoritative_server(&self) -> Result<std::net::SocketAddr, String> {
            Err("unused".into())
        }
    }

    fn provider() -> Option<DnsProvider> {
        Some(DnsProvider {
            describe: "test".into(),
            zone: "example.dev".into(),
            records: std::sync::Arc::new(Unused),
        })
    }

    #[test]
    fn dns01_wildcards_and_the_resolver() {
        let (s, p) = parse_with(
            "acme: {directory_url: \"https://ca.test/dir\", challenge: dns-01, platform_hosts: wildcard, resolver: \"127.0.0.1:5353\", dns_wait_ms: 5000}",
            provider(),
        );
        assert!(p.is_empty(), "{p:?}");
        let s = s.expect("settings");
        assert_eq!(s.challenge, ChallengeKind::Dns01);
        assert_eq!(s.platform_hosts, PlatformHosts::Wildcard);
        assert_eq!(s.resolver, Some("127.0.0.1:5353".parse().expect("addr")));
        assert_eq!(s.dns_wait, Duration::from_secs(5));
        // The defaults: per-host, the DNS provider's own server, two minutes.
        let (s, _) = parse_with("acme: {directory_url: \"https://ca.test/dir\"}", provider());
        let s = s.expect("settings");
        assert_eq!(s.platform_hosts, PlatformHosts::PerHost);
        assert_eq!((s.resolver, s.dns_wait), (None, Duration::from_secs(120)));
        assert!(s.dns.is_some());
        // Bad values, each named with what to write instead.
        let (s, p) = parse_with(
            "acme: {directory_url: \"https://ca.test/dir\", platform_hosts: wild, resolver: ns1.example.dev, dns_wait_ms: 0}",
            provider(),
        );
        assert!(s.is_none());
        let joined = p.join("\n");
        for needle in [
            "platform_hosts: \"wild\" is not \"per-host\"",
            "resolver: \"ns1.example.dev\" is not an IP address and port (the zone's authoritative DNS server",
            "dns_wait_ms: must be at least 1",
        ] {
            assert!(joined.contains(needle), "{needle} in:\n{joined}");
        }
        assert_eq!(p.len(), 3, "{joined}");
        // dns-01 and wildcards without a DNS provider: said, with the fix.
        let (s, p) = parse(
            "acme: {directory_url: \"https://ca.test/dir\", challenge: dns-01, platform_hosts: wildcard}",
        );
        assert!(s.is_none());
        let joined = p.join("\n");
        assert!(
            joined.contains("challenge: \"dns-01\" publishes _acme-challenge TXT records through the DNS provider, and none is configured: set provision.dns"),
            "{joined}"
        );
        assert!(
            joined.contains("platform_hosts: \"wildcard\" covers *.<zone> of the DNS provider via dns-01, and none is configured"),
            "{joined}"
        );
        assert_eq!(p.len(), 2, "{joined}");
    }

    #[test]
    fn a_minimal_section_takes_the_defaults() {
        let (s, p) = parse("acme: {directory_url: \"https://ca.test/dir\"}");
        assert!(p.is_empty(), "{p:?}");
        let s = s.expect("settings");
        assert_eq!(s.challenge, ChallengeKind::Http01);
        assert!((s.renew_before - DEFAULT_RENEW_BEFORE).abs() < f64::EPSILON);
        assert!(s.eab.is_none() && s.directory_ca_pem.is_none());
        assert_eq!(parse("{}").0.map(|_| ()), None, "no acme: off");
    }

    #[test]
    fn every_problem_is_listed() {
        let dir = std::env::temp_dir().join(format!("realmctl-acme-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "hello").expect("write");
        let yaml = format!(
            "acme:\n  directory_url: http://ca.test/dir\n  directory_ca_file: {}\n  contact: [ops@example.dev]\n  eab: {{kid: \"\", hmac_key_file: {}/missing}}\n  challenge: dns-01\n  renew_before: 1.5\n  challenge_wait_ms: 0\n",
            not_pem.display(),
            dir.display()
        );
        let (s, p) = parse(&yaml);
        assert!(s.is_none());
        let joined = p.join("\n");
        for needle in [
            "directory_url: \"http://ca.test/dir\" must be an https:// URL",
            "directory_ca_file:",
            "contact[0]:",
            "eab.kid: must not be empty",
            "eab.hmac_key_file: cannot read",
            "\"dns-01\" publishes _acme-challenge TXT records",
            "renew_before: 1.5",
            "challenge_wait_ms: must be at least 1",
        ] {
            assert!(joined.contains(needle), "{needle} in:\n{joined}");
        }
        assert_eq!(p.len(), 8, "{joined}");
        let (_, p) = parse("acme: {challenge: tls-alpn-01}");
        assert_eq!(p.len(), 2, "{p:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

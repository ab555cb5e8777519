//! The `domains:` section of realmctl's configuration: the resolver custom domains'
//! ownership records are checked with, the platform's own zones (never a custom domain;
//! the dns step's zone always is one), and how long and how often a pending domain is
//! checked.

use crate::service::domains::DomainSettings;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainsFile {
    resolver: Option<String>,
    #[serde(default)]
    platform_zones: Vec<String>,
    check_for_ms: Option<u64>,
    check_initial_ms: Option<u64>,
    check_max_ms: Option<u64>,
    query_timeout_ms: Option<u64>,
}

/// Resolve the section (`None`: custom domains off); `dns_zone` is the dns step's zone.
pub fn resolve(
    f: Option<DomainsFile>,
    dns_zone: Option<&str>,
    problems: &mut Vec<String>,
) -> Option<DomainSettings> {
    let f = f?;
    let start = problems.len();
    let resolver = match f.resolver.as_deref() {
        None => {
            problems.push("domains.resolver: required (host:port of the DNS resolver custom domains' TXT records are checked with, like 1.1.1.1:53)".into());
            None
        }
        Some(r) => match r.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "domains.resolver: {r:?} is not an IP address and port (like 1.1.1.1:53)"
                ));
                None
            }
        },
    };
    let mut platform_zones: Vec<String> = Vec::new();
    for (i, z) in f.platform_zones.iter().enumerate() {
        let zone = z.trim_end_matches('.').to_ascii_lowercase();
        if zone.is_empty() || realmgate_table::host::HostPattern::parse(&zone).is_err() {
            problems.push(format!(
                "domains.platform_zones[{i}]: {z:?} is not a DNS zone"
            ));
        } else {
            platform_zones.push(zone);
        }
    }
    if let Some(z) = dns_zone {
        let z = z.trim_end_matches('.').to_ascii_lowercase();
        if !platform_zones.contains(&z) {
            platform_zones.push(z);
        }
    }
    let ms = |key: &str, v: Option<u64>, default: u64, problems: &mut Vec<String>| match v {
        Some(0) => {
            problems.push(format!("domains.{key}: must be at least 1"));
            Duration::from_millis(default)
        }
        v => Duration::from_millis(v.unwrap_or(default)),
    };
    let check_for = ms("check_for_ms", f.check_for_ms, 48 * 3_600_000, problems);
    let check_initial = ms("check_initial_ms", f.check_initial_ms, 10_000, problems);
    let check_max = ms("check_max_ms", f.check_max_ms, 600_000, problems);
    let query_timeout = ms("query_timeout_ms", f.query_timeout_ms, 3_000, problems);
    if check_max < check_initial {
        problems.push("domains.check_max_ms: less than check_initial_ms".into());
    }
    if problems.len() != start {
        return None;
    }
    Some(DomainSettings {
        resolver: resolver?,
        platform_zones,
        check_for,
        check_initial,
        check_max,
        query_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, zone: Option<&str>) -> (Option<DomainSettings>, Vec<String>) {
        let f: DomainsFile = serde_yaml::from_str(yaml).expect("yaml");
        let mut p = Vec::new();
        (resolve(Some(f), zone, &mut p), p)
    }

    #[test]
    fn the_section_resolves_and_names_each_problem() {
        let (s, p) = parse(
            "resolver: 127.0.0.1:53\nplatform_zones: [Example.DEV.]",
            Some("realmgate.test."),
        );
        assert!(p.is_empty(), "{p:?}");
        let s = s.expect("settings");
        assert_eq!(s.platform_zones, ["example.dev", "realmgate.test"]);
        assert_eq!(s.check_for, Duration::from_secs(48 * 3600));
        let (s, p) = parse("platform_zones: [\"a b\"]\ncheck_initial_ms: 0", None);
        assert!(s.is_none());
        let joined = p.join("\n");
        for needle in [
            "domains.resolver: required",
            "platform_zones[0]",
            "check_initial_ms: must be",
        ] {
            assert!(joined.contains(needle), "{needle} in {joined}");
        }
        let (_, p) = parse("resolver: dns.example:53", None);
        assert!(p[0].contains("not an IP address"), "{p:?}");
        assert!(resolve(None, None, &mut Vec::new()).is_none());
    }
}

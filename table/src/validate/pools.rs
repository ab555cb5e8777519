//! One upstream pool's own fields: endpoints, timeouts, health checks, and the TLS settings
//! that apply to `https://` endpoints only.

use super::*;

pub(super) fn check_upstream_spec(upstream: &Upstream, problems: &mut Vec<Problem>) {
    if upstream.endpoints.is_empty() {
        problems.push(Problem::new("endpoints", "needs at least one endpoint"));
    }
    if upstream.endpoints.len() > MAX_ENDPOINTS {
        problems.push(Problem::new(
            "endpoints",
            format!("more than {MAX_ENDPOINTS} endpoints"),
        ));
    }
    let mut seen = HashSet::new();
    let tls = upstream.uses_tls();
    for (i, ep) in upstream.endpoints.iter().enumerate() {
        let addr = match ep.strip_prefix("https://") {
            Some(addr) => addr,
            None if tls => {
                problems.push(Problem::new(
                    format!("endpoints[{i}]"),
                    format!("{ep:?}: a pool's endpoints are all https:// or none"),
                ));
                continue;
            }
            None => ep.as_str(),
        };
        match addr.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => problems.push(Problem::new(
                format!("endpoints[{i}]"),
                format!("{ep:?}: port 0"),
            )),
            Ok(addr) => {
                if !seen.insert(addr) {
                    problems.push(Problem::new(
                        format!("endpoints[{i}]"),
                        format!("{ep:?} listed twice"),
                    ));
                }
            }
            Err(_) => problems.push(Problem::new(
                format!("endpoints[{i}]"),
                format!("{ep:?} is not an IP:port address or https://IP:port (host names are not resolved by the gateway: give the address, and the name in server_name)"),
            )),
        }
    }
    check_upstream_tls(upstream, tls, problems);
    for (field, value) in [
        ("connect_timeout_ms", upstream.connect_timeout_ms),
        ("read_timeout_ms", upstream.read_timeout_ms),
        ("write_timeout_ms", upstream.write_timeout_ms),
    ] {
        if let Some(ms) = value {
            if ms == 0 || ms > MAX_TIMEOUT_MS {
                problems.push(Problem::new(
                    field,
                    format!("must be between 1 and {MAX_TIMEOUT_MS}"),
                ));
            }
        }
    }
    if let Some(path) = upstream
        .health_check
        .as_ref()
        .and_then(|hc| hc.http_path.as_deref())
    {
        if !matches!(normalise_path(path), Ok(Cow::Borrowed(_))) {
            problems.push(Problem::new(
                "health_check.http_path",
                format!("{path:?} is not a normalised absolute path"),
            ));
        }
    }
}

/// The TLS fields of a pool apply to `https://` endpoints only.
fn check_upstream_tls(upstream: &Upstream, tls: bool, problems: &mut Vec<Problem>) {
    for (field, set) in [
        ("server_name", upstream.server_name.is_some()),
        ("ca_file", upstream.ca_file.is_some()),
        ("insecure_skip_verify", upstream.insecure_skip_verify),
        ("h2", upstream.h2),
    ] {
        if set && !tls {
            problems.push(Problem::new(
                field,
                "applies only to a pool of https:// endpoints",
            ));
        }
    }
    if let Some(name) = &upstream.server_name {
        if let Err(e) = parse_cert_name(name).and_then(|p| match p {
            HostPattern::Exact(_) => Ok(()),
            HostPattern::Wildcard(_) => Err(format!("{name:?}: a server name is not a wildcard")),
        }) {
            problems.push(Problem::new("server_name", e));
        }
    }
    if let Some(path) = &upstream.ca_file {
        if !path.starts_with('/') || path.len() > 4096 || path.contains('\0') {
            problems.push(Problem::new(
                "ca_file",
                format!("{path:?} is not an absolute path"),
            ));
        }
        if upstream.insecure_skip_verify {
            problems.push(Problem::new(
                "insecure_skip_verify",
                "contradicts ca_file: verify against the CA, or not at all",
            ));
        }
    }
}

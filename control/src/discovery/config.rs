//! `gateways.discovery` in realmctl's configuration and the `--gateway-discovery` flags,
//! resolved into checked [`KubernetesDiscovery`] settings (every problem listed).

use super::endpoints::PortSel;
use serde::Deserialize;
use std::path::PathBuf;

/// `gateways.discovery:` as written.
#[derive(Debug, Default, Deserialize)]
pub struct DiscoveryFile {
    kubernetes: Option<KubernetesFile>,
}

#[derive(Debug, Default, Deserialize)]
struct KubernetesFile {
    /// The gateways' (headless) Service: its EndpointSlices carry
    /// `kubernetes.io/service-name=<service>`.
    service: Option<String>,
    /// Default: the kubeconfig's namespace, or the pod's own in the cluster.
    namespace: Option<String>,
    /// The admin port's name in the Service, or its number. Default: the port named `admin`.
    port: Option<PortValue>,
    /// `https` (default) or `http`.
    scheme: Option<String>,
    /// Default: the in-cluster configuration, else `$KUBECONFIG` / `~/.kube/config`.
    kubeconfig: Option<PathBuf>,
    /// `address` (default: `https://10.1.2.3:9080`) or `service_dns`
    /// (`https://10-1-2-3.<service>.<namespace>.svc.<cluster_domain>:9080`, for an admin
    /// certificate that names `*.<service>.<namespace>.svc.<cluster_domain>`).
    host: Option<String>,
    cluster_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u64),
    Name(String),
}

/// The discovery flags of `realmctl serve`; they override the file.
#[derive(Debug, Default, Clone)]
pub struct DiscoveryOverrides {
    /// `--gateway-discovery kubernetes`.
    pub kubernetes: bool,
    pub service: Option<String>,
    pub namespace: Option<String>,
}

/// Gateways discovered from a Service's EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesDiscovery {
    pub service: String,
    pub namespace: Option<String>,
    pub port: PortSel,
    pub scheme: &'static str,
    pub kubeconfig: Option<PathBuf>,
    /// `Some(cluster domain)` when URLs name the endpoint's Service DNS name.
    pub service_dns: Option<String>,
}

/// `None` when discovery is off. Problems name the key or flag at fault.
pub fn resolve(
    file: Option<DiscoveryFile>,
    o: &DiscoveryOverrides,
    problems: &mut Vec<String>,
) -> Option<KubernetesDiscovery> {
    let k = file.and_then(|f| f.kubernetes);
    if !o.kubernetes && k.is_none() {
        if o.service.is_some() || o.namespace.is_some() {
            problems.push(
                "--gateway-service/--gateway-namespace: need --gateway-discovery kubernetes".into(),
            );
        }
        return None;
    }
    let k = k.unwrap_or_default();
    let service = o.service.clone().or(k.service);
    let service = match service {
        Some(s) if is_dns_label(&s) => Some(s),
        Some(s) => {
            problems.push(format!(
                "gateways.discovery.kubernetes.service: {s:?} is not a Service name (lower-case letters, digits and '-', at most 63)"
            ));
            None
        }
        None => {
            problems.push("gateways.discovery.kubernetes.service: required (the gateways' headless Service; --gateway-service)".into());
            None
        }
    };
    let namespace = o.namespace.clone().or(k.namespace);
    if let Some(ns) = namespace.as_ref().filter(|ns| !is_dns_label(ns)) {
        problems.push(format!(
            "gateways.discovery.kubernetes.namespace: {ns:?} is not a namespace name"
        ));
    }
    let port = match k.port {
        None => PortSel::Name("admin".into()),
        Some(PortValue::Number(n)) => match u16::try_from(n).ok().filter(|n| *n > 0) {
            Some(n) => PortSel::Number(n),
            None => {
                problems.push(format!(
                    "gateways.discovery.kubernetes.port: {n} is not a port number (1-65535)"
                ));
                PortSel::Number(1)
            }
        },
        Some(PortValue::Name(name)) => {
            if !is_dns_label(&name) {
                problems.push(format!(
                    "gateways.discovery.kubernetes.port: {name:?} is neither a port number nor a Service port name"
                ));
            }
            PortSel::Name(name)
        }
    };
    let scheme = match k.scheme.as_deref() {
        None | Some("https") => "https",
        Some("http") => "http",
        Some(other) => {
            problems.push(format!(
                "gateways.discovery.kubernetes.scheme: {other:?} is not http or https"
            ));
            "https"
        }
    };
    let service_dns = match k.host.as_deref() {
        None | Some("address") => {
            if k.cluster_domain.is_some() {
                problems.push(
                    "gateways.discovery.kubernetes.cluster_domain: only with host: service_dns"
                        .into(),
                );
            }
            None
        }
        Some("service_dns") => {
            let domain = k.cluster_domain.unwrap_or_else(|| "cluster.local".into());
            if domain.is_empty() || !domain.split('.').all(is_dns_label) {
                problems.push(format!(
                    "gateways.discovery.kubernetes.cluster_domain: {domain:?} is not a domain name"
                ));
            }
            Some(domain)
        }
        Some(other) => {
            problems.push(format!(
                "gateways.discovery.kubernetes.host: {other:?} is not address or service_dns"
            ));
            None
        }
    };
    Some(KubernetesDiscovery {
        service: service?,
        namespace,
        port,
        scheme,
        kubeconfig: k.kubeconfig,
        service_dns,
    })
}

/// An RFC 1123 label, the way Kubernetes names Services, namespaces and ports.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> Option<DiscoveryFile> {
        Some(serde_yaml::from_str(yaml).expect("yaml"))
    }

    #[test]
    fn defaults_flags_and_every_problem() {
        let mut problems = Vec::new();
        let k = resolve(
            file("kubernetes: {service: realmgate-admin}"),
            &DiscoveryOverrides::default(),
            &mut problems,
        )
        .expect("on");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            (k.port, k.scheme, k.namespace, k.service_dns),
            (PortSel::Name("admin".into()), "https", None, None)
        );

        // Flags alone, and flags over the file.
        let flags = DiscoveryOverrides {
            kubernetes: true,
            service: Some("gw".into()),
            namespace: Some("edge".into()),
        };
        let k = resolve(
            file("kubernetes: {service: other, port: 9080, scheme: http, host: service_dns}"),
            &flags,
            &mut problems,
        )
        .expect("on");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            (k.service.as_str(), k.namespace.as_deref(), k.port, k.scheme),
            ("gw", Some("edge"), PortSel::Number(9080), "http")
        );
        assert_eq!(k.service_dns.as_deref(), Some("cluster.local"));
        assert!(resolve(None, &DiscoveryOverrides::default(), &mut problems).is_none());

        let bad = resolve(
            file("kubernetes: {namespace: Edge, port: 70000, scheme: ftp, host: dns, cluster_domain: x}"),
            &DiscoveryOverrides::default(),
            &mut problems,
        );
        assert!(bad.is_none());
        for key in [
            "service: required",
            "namespace",
            "port: 70000",
            "scheme",
            "host",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key} not in {problems:?}"
            );
        }
        problems.clear();
        let service_only = DiscoveryOverrides {
            service: Some("gw".into()),
            ..Default::default()
        };
        assert!(resolve(None, &service_only, &mut problems).is_none());
        assert!(problems[0].contains("--gateway-discovery kubernetes"));
    }

    /// The realmctl ConfigMap in deploy/kubernetes uses discovery: its configuration has no
    /// unknown key and no discovery problem (its files exist only in the pod).
    #[test]
    fn the_cluster_configmap_reads() {
        let manifest = include_str!("../../../deploy/kubernetes/realmctl.yaml");
        let doc = manifest
            .split("\n---\n")
            .find(|d| d.contains("kind: ConfigMap"))
            .expect("ConfigMap");
        let cm: serde_yaml::Value = serde_yaml::from_str(doc).expect("yaml");
        let text = cm["data"]["realmctl.yaml"].as_str().expect("realmctl.yaml");
        let path = std::env::temp_dir().join(format!("realmctl-cm-{}.yaml", std::process::id()));
        std::fs::write(&path, text).expect("write");
        let problems = crate::config::Config::load(Some(&path), &Default::default())
            .err()
            .unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        assert!(
            text.contains("discovery:")
                && !problems
                    .iter()
                    .any(|p| p.contains("unknown key") || p.contains("discovery")),
            "{problems:?}"
        );
    }
}

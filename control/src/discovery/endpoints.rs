//! Which gateways an EndpointSlice names: the admin URL of every address of every endpoint
//! that is ready and not terminating, on the slice's port picked by name or number.

use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The admin port: a slice port's name (a Service port name, `admin` by default) or number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSel {
    Name(String),
    Number(u16),
}

impl std::fmt::Display for PortSel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSel::Name(n) => write!(f, "port named {n:?}"),
            PortSel::Number(n) => write!(f, "port {n}"),
        }
    }
}

/// How a gateway's URL names its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostForm {
    /// The endpoint's address itself (`10.1.2.3`, `[fd00::3]`).
    Address,
    /// The name cluster DNS gives a headless Service's endpoint,
    /// `10-1-2-3.<service>.<namespace>.svc.<cluster domain>`: what a wildcard admin
    /// certificate (`*.<service>.<namespace>.svc.<cluster domain>`) names.
    ServiceDns { suffix: String },
}

/// How the URLs are formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlForm {
    pub scheme: &'static str,
    pub port: PortSel,
    pub host: HostForm,
}

/// Whether an endpoint takes pushes. Per the EndpointSlice API, an unset `ready` means ready
/// and an unset `terminating` means not terminating. A terminating gateway is leaving (it is
/// draining connections): pushing to it would only show a failing gateway once it is gone.
/// With `publishNotReadyAddresses` on the Service, `ready` is true for every pod that has an
/// address, so a new gateway gets its first table by push rather than waiting for its pull.
pub fn takes_pushes(conditions: Option<&EndpointConditions>) -> bool {
    conditions.is_none_or(|c| c.ready != Some(false) && c.terminating != Some(true))
}

/// The admin URLs `slice` names (sorted, no duplicates), or why it names none although it
/// has endpoints (its ports lack ours, an address type we do not read).
pub fn slice_urls(slice: &EndpointSlice, form: &UrlForm) -> Result<BTreeSet<String>, String> {
    let name = slice.metadata.name.as_deref().unwrap_or("?");
    let mut urls = BTreeSet::new();
    if slice.endpoints.is_empty() {
        return Ok(urls);
    }
    let port = slice_port(slice, &form.port).ok_or_else(|| {
        let listed: Vec<String> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}={}",
                    p.name.as_deref().unwrap_or(""),
                    p.port.map_or_else(|| "*".into(), |n| n.to_string())
                )
            })
            .collect();
        format!(
            "EndpointSlice {name}: no {} among its ports [{}]",
            form.port,
            listed.join(", ")
        )
    })?;
    let v6 = match slice.address_type.as_str() {
        "IPv4" => false,
        "IPv6" => true,
        other => {
            return Err(format!(
                "EndpointSlice {name}: address type {other:?} is not read (IPv4 and IPv6 are)"
            ))
        }
    };
    for endpoint in slice
        .endpoints
        .iter()
        .filter(|e| takes_pushes(e.conditions.as_ref()))
    {
        for address in &endpoint.addresses {
            let host = if v6 {
                address.parse::<Ipv6Addr>().ok().map(|ip| match &form.host {
                    HostForm::Address => format!("[{ip}]"),
                    HostForm::ServiceDns { suffix } => {
                        format!("{}.{suffix}", ip.to_string().replace(':', "-"))
                    }
                })
            } else {
                address.parse::<Ipv4Addr>().ok().map(|ip| match &form.host {
                    HostForm::Address => ip.to_string(),
                    HostForm::ServiceDns { suffix } => {
                        format!("{}.{suffix}", ip.to_string().replace('.', "-"))
                    }
                })
            };
            // The API server validates addresses; one it let through that we cannot read is
            // skipped rather than turned into a URL.
            if let Some(host) = host {
                urls.insert(format!("{}://{host}:{port}", form.scheme));
            }
        }
    }
    Ok(urls)
}

/// The slice's port for `sel`. A port listed without a number means "all ports" (the API's
/// convention), so a number is then taken as given.
fn slice_port(slice: &EndpointSlice, sel: &PortSel) -> Option<u16> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let number = |p: Option<i32>| p.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0);
    match sel {
        PortSel::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == name)
            .and_then(|p| number(p.port)),
        PortSel::Number(n) => ports
            .iter()
            .any(|p| p.port.is_none() || number(p.port) == Some(*n))
            .then_some(*n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("slice")
    }

    fn form(port: PortSel) -> UrlForm {
        UrlForm {
            scheme: "http",
            port,
            host: HostForm::Address,
        }
    }

    fn urls(s: &EndpointSlice, f: &UrlForm) -> Vec<String> {
        slice_urls(s, f).expect("urls").into_iter().collect()
    }

    #[test]
    fn ready_unset_and_terminating() {
        let s = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "gw-1"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"]},
                {"addresses": ["10.0.0.3"], "conditions": {}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.5"], "conditions": {"ready": true, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.6"], "conditions": {"ready": false, "serving": true, "terminating": false}},
                {"addresses": ["10.0.0.7", "10.0.0.1"], "conditions": {"ready": true, "terminating": false}},
            ]
        }));
        assert_eq!(
            urls(&s, &form(PortSel::Name("admin".into()))),
            [
                "http://10.0.0.1:9080",
                "http://10.0.0.2:9080",
                "http://10.0.0.3:9080",
                "http://10.0.0.7:9080"
            ]
        );
        assert_eq!(
            urls(&s, &form(PortSel::Number(8080)))[0],
            "http://10.0.0.1:8080"
        );
        let missing =
            slice_urls(&s, &form(PortSel::Name("metrics".into()))).expect_err("no such port");
        assert!(
            missing.contains("gw-1")
                && missing.contains("\"metrics\"")
                && missing.contains("admin=9080"),
            "{missing}"
        );
        assert!(slice_urls(&s, &form(PortSel::Number(7000))).is_err());
    }

    #[test]
    fn ipv6_is_bracketed_and_dns_names_are_dashed() {
        let s = slice(json!({
            "metadata": {"name": "gw-v6"}, "addressType": "IPv6",
            "ports": [{"name": "admin", "port": 9443}],
            "endpoints": [{"addresses": ["fd00:0:0::a"]}, {"addresses": ["not-an-ip"]}]
        }));
        let mut f = form(PortSel::Name("admin".into()));
        f.scheme = "https";
        assert_eq!(urls(&s, &f), ["https://[fd00::a]:9443"]);
        f.host = HostForm::ServiceDns {
            suffix: "realmgate-admin.edge.svc.cluster.local".into(),
        };
        assert_eq!(
            urls(&s, &f),
            ["https://fd00--a.realmgate-admin.edge.svc.cluster.local:9443"]
        );
        let v4 = slice(json!({
            "metadata": {"name": "gw"}, "addressType": "IPv4",
            "ports": [{"name": "admin", "port": 9080}],
            "endpoints": [{"addresses": ["10.1.2.3"]}]
        }));
        assert_eq!(
            urls(&v4, &f),
            ["https://10-1-2-3.realmgate-admin.edge.svc.cluster.local:9080"]
        );
    }

    #[test]
    fn empty_slices_all_ports_and_fqdn() {
        let empty =
            slice(json!({"metadata": {"name": "e"}, "addressType": "IPv4", "endpoints": []}));
        assert!(urls(&empty, &form(PortSel::Name("admin".into()))).is_empty());
        // A port without a number is "all ports": a number is taken as given, a name is not.
        let all = slice(json!({
            "metadata": {"name": "all"}, "addressType": "IPv4",
            "ports": [{}], "endpoints": [{"addresses": ["10.0.0.9"]}]
        }));
        assert_eq!(
            urls(&all, &form(PortSel::Number(9080))),
            ["http://10.0.0.9:9080"]
        );
        assert!(slice_urls(&all, &form(PortSel::Name("admin".into()))).is_err());
        let fqdn = slice(json!({
            "metadata": {"name": "f"}, "addressType": "FQDN",
            "ports": [{"name": "admin", "port": 9080}], "endpoints": [{"addresses": ["gw.example"]}]
        }));
        assert!(slice_urls(&fqdn, &form(PortSel::Name("admin".into())))
            .expect_err("FQDN")
            .contains("FQDN"));
    }
}

//! Human-readable output: aligned columns, and one-line summaries.

use crate::views::{DiscoveryView, GatewayView, KeyView, TenantView, UpstreamView};
use realmgate_table::TenantStatus;

/// Left-aligned columns separated by two spaces.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

pub fn status(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

pub fn tenants(list: &[TenantView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let provisioning = t.provisioning.as_ref().map_or_else(
                || "-".to_owned(),
                |p| {
                    let routed = if p.routed { "routed" } else { "not routed" };
                    format!("{} ({routed})", p.state.name())
                },
            );
            vec![
                t.id.clone(),
                status(t.status).to_owned(),
                provisioning,
                t.hosts.join(","),
                t.https.as_str().to_owned(),
                soonest_expiry(t),
                t.routes.len().to_string(),
                t.table_version.to_string(),
                t.display_name.clone(),
            ]
        })
        .collect();
    columns(
        &[
            "ID",
            "STATUS",
            "PROVISIONING",
            "HOSTS",
            "HTTPS",
            "CERT EXPIRY",
            "ROUTES",
            "VERSION",
            "NAME",
        ],
        &rows,
    )
}

/// The certificate of the tenant's that expires first, as `12d` (`-3d` once expired).
fn soonest_expiry(t: &TenantView) -> String {
    t.certificates
        .iter()
        .map(|c| c.days_left)
        .min()
        .map_or_else(|| "-".to_owned(), |d| format!("{d}d"))
}

pub fn tenant(t: &TenantView) -> String {
    let mut out = format!(
        "tenant {}  ({})\n  name:      {}\n  status:    {}\n  hosts:     {}\n  revision:  {}\n  version:   {} (the table version carrying its last change)\n  created:   {}\n  updated:   {}\n  routes:\n",
        t.id,
        status(t.status),
        t.display_name,
        status(t.status),
        t.hosts.join(", "),
        t.revision,
        t.table_version,
        t.created_at,
        t.updated_at
    );
    for r in &t.routes {
        out.push_str(&format!(
            "    {} -> {} ({})\n",
            r.prefix,
            r.upstream,
            r.auth.names().join("|")
        ));
    }
    if !t.catalog.is_empty() {
        out.push_str("  catalog:\n");
        for c in &t.catalog {
            out.push_str(&format!("    {} {:?} at {}\n", c.name, c.title, c.path));
        }
    }
    out.push_str(&format!("  https:     {}\n", t.https.as_str()));
    if let Some(h) = &t.hsts {
        out.push_str(&format!("  hsts:      {}\n", h.header_value()));
    }
    if !t.certificates.is_empty() || !t.https.is_off() {
        out.push_str("  certificates:\n");
        for c in &t.certificates {
            out.push_str(&format!(
                "    {} for {}: not after {} ({})\n",
                c.name,
                c.hosts.join(", "),
                c.not_after,
                expiry(&c.state, c.days_left)
            ));
        }
        if !t.hosts_without_certificate.is_empty() {
            out.push_str(&format!(
                "    none for {} (TLS handshakes for it fail unless the gateway has a fallback certificate)\n",
                t.hosts_without_certificate.join(", ")
            ));
        }
    }
    if let Some(shell) = &t.shell {
        out.push_str(&format!(
            "  shell:     {} ({}{})\n",
            if shell.enabled { "on" } else { "off" },
            shell
                .upstream
                .as_deref()
                .map_or_else(|| "built-in".to_owned(), |u| format!("page from {u}")),
            if shell.excludes.is_empty() {
                String::new()
            } else {
                format!("; not under {}", shell.excludes.join(", "))
            }
        ));
    }
    out
}

pub fn upstreams(list: &[UpstreamView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.spec.endpoints.join(","),
                u.tenants_using.to_string(),
                u.table_version.to_string(),
            ]
        })
        .collect();
    columns(&["NAME", "ENDPOINTS", "TENANTS", "VERSION"], &rows)
}

pub fn keys(list: &[KeyView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|k| {
            let state = match (&k.revoked_at, &k.expires_at) {
                (Some(at), _) => format!("revoked {at}"),
                (None, Some(at)) => format!("expires {at}"),
                (None, None) => "active".to_owned(),
            };
            vec![
                k.id.clone(),
                k.prefix.clone(),
                k.tenant.clone().unwrap_or_else(|| "(operator)".into()),
                k.namespaces.join(","),
                state,
                k.created_by.clone(),
            ]
        })
        .collect();
    columns(
        &[
            "ID",
            "PREFIX",
            "TENANT",
            "NAMESPACES",
            "STATE",
            "CREATED BY",
        ],
        &rows,
    )
}

/// `GET /v1/gateways`, as the CLI reads it.
#[derive(serde::Deserialize)]
pub(super) struct GatewayList {
    pub target_version: Option<u64>,
    pub gateways: Vec<GatewayView>,
    #[serde(default)]
    pub discovery: Option<DiscoveryView>,
}

impl GatewayList {
    pub fn raw(&self) -> serde_json::Value {
        let mut v =
            serde_json::json!({"target_version": self.target_version, "gateways": self.gateways});
        if let Some(d) = &self.discovery {
            v["discovery"] = serde_json::json!(d);
        }
        v
    }
}

pub fn gateways(list: &[GatewayView], discovery: Option<&DiscoveryView>) -> String {
    let found = discovery.map_or_else(String::new, |d| {
        let mut line = format!(
            "discovery: {} Service {}/{}: {}, {} gateway(s) in {} EndpointSlice(s)\n",
            d.provider, d.namespace, d.service, d.state, d.gateways, d.slices
        );
        for problem in d.error.iter().chain(&d.warnings) {
            line.push_str(&format!("  {problem}\n"));
        }
        line
    });
    if list.is_empty() {
        return found
            + "no gateways configured (realmctl serve --gateway URL, or --gateway-discovery kubernetes)\n";
    }
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|g| {
            vec![
                g.url.clone(),
                g.source.clone(),
                opt(g.applied_version),
                opt(g.target_version),
                if g.in_sync { "yes" } else { "no" }.to_owned(),
                g.last_result.clone().unwrap_or_else(|| "-".into()),
                g.last_attempt_at.clone().unwrap_or_else(|| "-".into()),
                g.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    found
        + &columns(
            &[
                "GATEWAY",
                "SOURCE",
                "APPLIED",
                "TARGET",
                "IN SYNC",
                "LAST RESULT",
                "LAST ATTEMPT",
                "ERROR",
            ],
            &rows,
        )
}

/// `expires in 87 days`, `EXPIRED 3 days ago`, `not valid yet`.
pub fn expiry(state: &str, days_left: i64) -> String {
    match state {
        "expired" => format!("EXPIRED {} day(s) ago", days_left.unsigned_abs()),
        "not_yet_valid" => "not valid yet".to_owned(),
        _ => format!("{days_left} day(s) left"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let out = columns(
            &["ID", "STATUS"],
            &[
                vec!["acme".into(), "active".into()],
                vec!["b".into(), "suspended".into()],
            ],
        );
        assert_eq!(out, "ID    STATUS\nacme  active\nb     suspended\n");
    }
}

//! Builders for registry records in tests.
use super::*;
use realmgate_table::{AuthSpec, Route, TenantStatus};

pub fn tenant(
    id: &str,
    hosts: &[&str],
    upstream: &str,
) -> (TenantId, TenantRecord, Vec<HostPattern>) {
    let patterns: Vec<HostPattern> = hosts
        .iter()
        .map(|h| HostPattern::parse(h).expect("fixture host"))
        .collect();
    let record = TenantRecord {
        wire: Tenant {
            id: id.to_owned(),
            hosts: patterns.iter().map(ToString::to_string).collect(),
            routes: vec![Route {
                prefix: "/".into(),
                upstream: upstream.into(),
                auth: AuthSpec::One("public".into()),
                namespace: None,
                forward_token: false,
            }],
            status: TenantStatus::Active,
            rate_limits: Default::default(),
            realm: None,
            display_name: None,
            catalog: Vec::new(),
            shell: None,
            ..Tenant::default()
        },
        display_name: id.to_owned(),
        catalog: Vec::new(),
        revision: 1,
        table_version: 1,
        created_at_ms: 1,
        updated_at_ms: 1,
        provision: crate::provision::Provision::ready(Vec::new()),
    };
    (TenantId::parse(id).expect("fixture id"), record, patterns)
}

/// A live key of `tenant` (none: fleet-wide) whose digest is `d` repeated, for `namespace`.
pub fn key(id: &str, tenant: Option<&str>, d: u8, namespace: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        digest: [d; 32],
        prefix: "rgk_abcd".into(),
        tenant: tenant.map(|t| TenantId::parse(t).expect("fixture id")),
        namespaces: vec![namespace.into()],
        expires_at_ms: None,
        rate_limit: None,
        created_at_ms: 1,
        created_by: "operator".into(),
        revoked_at_ms: None,
        table_version: 1,
    }
}

pub fn upstream(endpoints: &[&str]) -> UpstreamRecord {
    UpstreamRecord {
        spec: Upstream {
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            health_check: None,
            connect_timeout_ms: None,
            read_timeout_ms: None,
            write_timeout_ms: None,
            ..Upstream::default()
        },
        table_version: 1,
        updated_at_ms: 1,
    }
}

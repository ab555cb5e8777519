//! Which API keys enter the table.

use super::*;
use crate::model::fixtures;

pub(super) fn key(id: &str, tenant: Option<&str>, d: u8) -> KeyRecord {
    fixtures::key(id, tenant, d, "@acme")
}

#[test]
fn only_live_keys_of_existing_tenants_enter_the_table() {
    let mut m = Model::default();
    m.version = 3;
    m.upstreams.insert(
        UpstreamName::parse("app").expect("name"),
        fixtures::upstream(&["127.0.0.1:9001"]),
    );
    let (id, rec, hosts) = fixtures::tenant("acme", &["acme.test"], "app");
    m.put_tenant(id, rec, hosts);
    m.put_key(key("live", Some("acme"), 1));
    m.put_key(key("op", None, 2));
    m.put_key(KeyRecord {
        revoked_at_ms: Some(5),
        ..key("revoked", Some("acme"), 3)
    });
    m.put_key(KeyRecord {
        expires_at_ms: Some(1000),
        ..key("expired", Some("acme"), 4)
    });
    m.put_key(key("orphan", Some("gone"), 5));
    let future = now_ms() + 3_600_000;
    m.put_key(KeyRecord {
        expires_at_ms: Some(future),
        ..key("later", Some("acme"), 6)
    });
    let compiled = compile(&m, &SecretBox::random()).expect("compile");
    let realmgate_table::CheckedTable {
        table, key_expiry, ..
    } = realmgate_table::parse(&compiled.body()).expect("valid");
    let ids: Vec<&str> = table.api_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["later", "live", "op"]);
    assert_eq!(
        table.api_keys[1].digest,
        format!("sha256:{}", "01".repeat(32))
    );
    assert_eq!(key_expiry[0], Some(future / 1000));
    assert!(!String::from_utf8_lossy(&compiled.body()).contains("rgk_"));
}

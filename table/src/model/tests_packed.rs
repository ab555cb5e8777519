//! The model's packed tenants: every tenant comes back from its encoding as it went in, its
//! digest is still the SHA-256 of its canonical JSON, and a large table packed on every core
//! makes the same model as one tenant at a time.

use super::packed::{pack_all, Packed};
use super::tests::model_of;
use super::*;
use crate::binary::tests::{many, rich};
use sha2::{Digest, Sha256};

/// The digest as the delta contract defines it: SHA-256 of `tenant`, NUL, canonical JSON.
fn json_digest(t: &Tenant) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tenant\0");
    h.update(serde_json::to_vec(t).expect("serialises"));
    h.finalize().into()
}

/// The fixtures' tenants: every optional field set somewhere, suspended, plain ones.
fn fixture_tenants() -> Vec<Tenant> {
    let mut out = rich().tenants;
    out.extend(super::tests::base_table().tenants);
    out.extend(many(3).tenants);
    out.push(Tenant::test("bare"));
    out
}

#[test]
fn every_fixture_tenant_round_trips_with_its_json_digest() {
    for t in fixture_tenants() {
        let part = Packed::part(&t);
        assert_eq!(part.value.tenant(), t, "tenant {}", t.id);
        assert_eq!(part.digest.0, json_digest(&t), "tenant {}", t.id);
        // Smaller than the JSON it replaces.
        let json = serde_json::to_vec(&t).expect("serialises").len();
        assert!(part.value.len() < json, "{} < {json}", part.value.len());
    }
}

#[test]
fn the_model_answers_tenants_and_digests_as_before() {
    let table = rich();
    let m = model_of(&table);
    for t in &table.tenants {
        assert_eq!(m.tenant(&t.id).as_ref(), Some(t));
        let want = format!("sha256:{}", hex::encode(json_digest(t)));
        assert_eq!(m.tenant_digest(&t.id), Some(want));
    }
    assert_eq!(m.state_digest(), state_digest(&table));
    assert_eq!(m.to_table().tenants, table.tenants);
}

#[test]
fn packing_on_every_core_is_packing_one_by_one() {
    let table = many(5000);
    let parallel = pack_all(&table.tenants);
    assert_eq!(parallel.len(), table.tenants.len());
    for (t, p) in table.tenants.iter().zip(&parallel) {
        assert_eq!(*p, Packed::part(t), "tenant {}", t.id);
    }
    // The model of a large table (packed in shards) is the model built a tenant at a time.
    let m = model_of(&table);
    let mut one_by_one = Model::empty(table.version);
    let checked = crate::parse(&table.to_json()).expect("valid");
    for (name, spec) in &table.upstreams {
        one_by_one.insert_upstream(name, spec);
    }
    for (t, hosts) in table.tenants.iter().zip(&checked.hosts) {
        one_by_one.insert_tenant(t, hosts);
    }
    assert_eq!(m, one_by_one);
    assert_eq!(m.state_digest(), state_digest(&table));
}

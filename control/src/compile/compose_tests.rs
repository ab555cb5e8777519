//! Deltas composed from the kept history: from any base still held, a composed delta applied
//! to that base's table is the newest full table, and a gateway serving that base takes it;
//! the history stays within its limits; gateways on one base share one composition.

use super::tests::{add_tenant, delta, key, model, pool, tid, Run, NOW};
use super::*;
use crate::model::{fixtures, AssertionKeyRecord, KeyPhase};
use bytes::Bytes;
use realmgate_table::TenantStatus;

/// An assertion section with one signing key, sealed under `secrets`.
fn assertion_key(m: &mut Model, secrets: &SecretBox, rng: &mut fastrand::Rng) {
    let pem = loop {
        let seed: [u8; 32] = std::array::from_fn(|_| rng.u8(..));
        if let Some(pem) = realmgate_table::assertion::key_pem_from_bytes(&seed) {
            break pem;
        }
    };
    let kid = format!("k{}", rng.u32(..));
    let signing = realmgate_table::assertion::signing_key(&pem).expect("key");
    m.assertion.issuer = Some("https://realmctl.test".into());
    m.assertion.keys.clear();
    m.assertion.keys.insert(
        kid.clone(),
        AssertionKeyRecord {
            public: realmgate_table::assertion::public_jwk(&kid, &signing),
            key_sealed: secrets.seal_assertion_key(&kid, &pem).expect("sealed"),
            kid,
            phase: KeyPhase::Active,
            created_at_ms: 1,
            activate_at_ms: None,
            retire_at_ms: None,
            table_version: 1,
        },
    );
}

/// One random change of the kinds the registry makes: tenants created (some with ids used
/// before), deleted, suspended, unrouted; keys added, revoked, expiring; a pool added and
/// removed when unused; ACME answers; the assertion section set, rotated and removed.
fn change(m: &mut Model, secrets: &SecretBox, rng: &mut fastrand::Rng, digests: &mut u8, now: u64) {
    let id = format!("t{}", rng.usize(..14));
    let present = m.tenants.contains_key(&tid(&id));
    match rng.u8(..10) {
        0 | 1 if !present => {
            let on = if m.upstreams.contains_key(&pool("other")) && rng.bool() {
                "other"
            } else {
                "app"
            };
            add_tenant(m, &id, on);
        }
        0 | 1 => {
            m.remove_tenant(&tid(&id));
        }
        2 if present => {
            let t = m.tenants.get_mut(&tid(&id)).expect("present");
            t.wire.status = if rng.bool() {
                TenantStatus::Suspended
            } else {
                TenantStatus::Active
            };
        }
        3 if present => {
            let t = m.tenants.get_mut(&tid(&id)).expect("present");
            t.provision.routed = !t.provision.routed;
        }
        4 if *digests < 250 => {
            let owner = Some(id.as_str()).filter(|_| rng.bool());
            let mut k = key(&format!("k{digests}"), owner, *digests);
            *digests += 1;
            k.expires_at_ms = rng.bool().then(|| now + rng.u64(1..20_000));
            m.put_key(k);
        }
        5 => {
            let ids: Vec<String> = m.keys.keys().cloned().collect();
            if let Some(mut k) = rng.choice(ids).map(|i| m.keys[&i].clone()) {
                k.revoked_at_ms = Some(now);
                m.put_key(k);
            }
        }
        6 => {
            let other = pool("other");
            if !m.upstreams.contains_key(&other) {
                m.upstreams
                    .insert(other, fixtures::upstream(&["127.0.0.1:9002"]));
            } else if m
                .tenants
                .values()
                .all(|t| t.wire.routes.iter().all(|r| r.upstream != "other"))
            {
                m.upstreams.remove(&other);
            }
        }
        7 => {
            let token = format!("tok-{:016}", rng.u8(..4));
            if m.acme_challenges.remove(&token).is_none() {
                let expires = now / 1000 + rng.u64(1..30);
                m.acme_challenges
                    .insert(token.clone(), super::tests::challenge(&token, expires));
            }
        }
        8 if m.assertion.issuer.is_some() && rng.bool() => m.assertion.issuer = None,
        8 => assertion_key(m, secrets, rng),
        _ if present => {
            // Updated: another host.
            let hosts = [
                format!("{id}.test"),
                format!("www{}.{id}.test", rng.u8(..3)),
            ];
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let (id, rec, hosts) = fixtures::tenant(&id, &hosts, "app");
            m.put_tenant(id, rec, hosts);
        }
        _ => {}
    }
}

#[test]
fn random_changes_compose_from_every_base_kept() {
    for seed in 0..24 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let steps = rng.usize(3..12);
        let mut run = Run::with_limits(Limits {
            steps,
            ..Limits::default()
        });
        let mut m = model();
        let mut now = NOW;
        let mut digests = 110;
        run.compile(&m, now);
        for _ in 0..(steps * 2) {
            // The registry's counter may move more than once between compiles.
            m.version += rng.u64(1..3);
            now += rng.u64(0..4_000);
            for _ in 0..rng.usize(1..5) {
                change(&mut m, &run.secrets, &mut rng, &mut digests, now);
            }
            // `Run::compile` checks the delta from every earlier version.
            run.compile(&m, now);
        }
        assert_eq!(run.c.kept().1, steps, "seed {seed}");
    }
}

#[test]
fn created_then_deleted_in_range_is_nothing_unless_the_base_held_it() {
    let mut run = Run::new();
    let mut m = model();
    run.compile(&m, NOW);
    m.version = 2;
    add_tenant(&mut m, "brief", "app");
    m.put_key(key("brief-a", Some("brief"), 120));
    run.compile(&m, NOW);
    m.version = 3;
    m.remove_tenant(&tid("brief"));
    m.remove_tenant(&tid("t3"));
    let c = run.compile(&m, NOW);
    let d = delta(&c.delta_from(1).expect("composed"));
    assert_eq!(d.delete_tenants, ["t3"], "never held by 1: not named");
    assert!(d.tenants.is_empty() && d.api_keys.is_empty());
    assert_eq!(d.delete_api_keys, ["t3-a", "t3-b"]);
    let d = delta(&c.delta_from(2).expect("newest"));
    assert_eq!(d.delete_tenants, ["brief", "t3"]);
    assert_eq!(d.delete_api_keys, ["brief-a", "t3-a", "t3-b"]);
}

#[test]
fn deleted_then_created_again_in_range_is_the_new_part() {
    let mut run = Run::new();
    let mut m = model();
    run.compile(&m, NOW);
    m.version = 2;
    m.remove_tenant(&tid("t4"));
    run.compile(&m, NOW);
    m.version = 3;
    let (id, mut rec, hosts) = fixtures::tenant("t4", &["t4.test", "new.t4.test"], "app");
    rec.wire.status = TenantStatus::Suspended;
    m.put_tenant(id, rec, hosts);
    let c = run.compile(&m, NOW);
    let d = delta(&c.delta_from(1).expect("composed"));
    assert!(d.delete_tenants.is_empty(), "an upsert, not a delete");
    assert_eq!(d.tenants.len(), 1);
    assert_eq!(d.tenants[0].hosts, ["t4.test", "new.t4.test"]);
    assert_eq!(d.tenants[0].status, TenantStatus::Suspended);
}

#[test]
fn an_assertion_section_set_and_removed_in_range_is_nothing_to_a_base_without_one() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut run = Run::new();
    let mut m = model();
    run.compile(&m, NOW);
    m.version = 2;
    assertion_key(&mut m, &run.secrets, &mut rng);
    run.compile(&m, NOW);
    m.version = 3;
    m.assertion.issuer = None;
    let c = run.compile(&m, NOW);
    assert!(delta(&c.delta_from(1).expect("composed"))
        .assertion
        .is_none());
    let d = delta(&c.delta_from(2).expect("newest"));
    assert!(d.assertion.is_some_and(|a| a.set.is_none()), "removed");
}

#[test]
fn the_history_keeps_within_its_bytes_and_parts() {
    let one_tenant = {
        let mut run = Run::new();
        let mut m = model();
        run.compile(&m, NOW);
        m.version = 2;
        m.tenants.get_mut(&tid("t1")).expect("t1").wire.status = TenantStatus::Suspended;
        run.compile(&m, NOW);
        run.c.kept().3
    };
    // Room for five one-tenant steps.
    let mut run = Run::with_limits(Limits {
        // (A few bytes of slack: later versions take more digits.)
        bytes: one_tenant * 5 + 16,
        ..Limits::default()
    });
    let mut m = model();
    run.compile(&m, NOW);
    for v in 2..12 {
        m.version = v;
        let t = m.tenants.get_mut(&tid("t1")).expect("t1");
        t.wire.status = if v % 2 == 0 {
            TenantStatus::Suspended
        } else {
            TenantStatus::Active
        };
        run.compile(&m, NOW);
        let (_, steps, _, bytes) = run.c.kept();
        assert!(bytes <= one_tenant * 5 + 16 && steps == (v as usize - 1).min(5));
    }
    assert_eq!(run.c.kept().0, Some(6));
    // A bulk change larger than the whole budget: nothing older is kept, nor itself, and
    // the gateways at the version before it still get it as a delta.
    m.version = 12;
    for i in 0..10 {
        m.tenants
            .get_mut(&tid(&format!("t{i}")))
            .expect("t")
            .wire
            .status = TenantStatus::Suspended;
    }
    let c = run.compile(&m, NOW);
    assert_eq!(run.c.kept(), (None, 0, 0, 0));
    assert!(c.delta_from(11).is_some() && c.delta_from(10).is_none());
    m.version = 13;
    m.tenants.get_mut(&tid("t1")).expect("t1").wire.status = TenantStatus::Active;
    let c = run.compile(&m, NOW);
    assert!(c.delta_from(12).is_some());
    assert!(c.delta_from(11).is_none(), "the bulk step was not kept");
    // The parts limit likewise: at most three parts kept.
    let mut run = Run::with_limits(Limits {
        parts: 3,
        ..Limits::default()
    });
    let mut m = model();
    run.compile(&m, NOW);
    for v in 2..8 {
        m.version = v;
        add_tenant(&mut m, &format!("n{v}"), "app");
        run.compile(&m, NOW);
        assert!(run.c.kept().2 <= 3);
    }
    assert_eq!(run.c.kept().0, Some(4));
}

#[test]
fn gateways_on_one_base_share_one_composition() {
    let mut run = Run::new();
    let mut m = model();
    run.compile(&m, NOW);
    let mut last = None;
    for v in 2..8 {
        m.version = v;
        add_tenant(&mut m, &format!("n{v}"), "app");
        last = Some(run.c.compile_at(&m, &run.secrets, NOW).expect("compile"));
    }
    let c = last.expect("compiled");
    let barrier = std::sync::Barrier::new(8);
    let bodies: Vec<Bytes> = std::thread::scope(|s| {
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    c.delta_from(3).expect("a delta").body
                })
            })
            .collect();
        waiting
            .into_iter()
            .map(|h| h.join().expect("joined"))
            .collect()
    });
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(c.deltas.composed(), 1);
    // The delta from the version before was written with the version: nothing composed.
    assert!(c.delta_from(6).is_some() && c.delta_from(3).is_some());
    assert_eq!(c.deltas.composed(), 1);
    assert!(c.delta_from(2).is_some());
    assert_eq!(c.deltas.composed(), 2);
}

//! Assertion keys: made at first start, kept across starts, rotated (published, then
//! signing), retired by hand or after the grace period; the table carries them, validated.

use super::*;
use crate::provision::secrets::SecretBox;
use crate::registry::Registry;
use crate::service::Plan;
use realmgate_table::assertion::{Assertion, KeyState};

async fn control(secrets: SecretBox, delay_s: u64) -> (Arc<Control>, AssertionSettings) {
    let reg = Registry::in_memory().await.expect("registry");
    let c = Arc::new(
        Control::with_plan(reg, Plan::default(), secrets)
            .await
            .expect("control"),
    );
    let s = AssertionSettings {
        issuer: "fleet-1".into(),
        activation_delay: Duration::from_secs(delay_s),
        retire_after: Duration::from_secs(3600),
    };
    c.start_assertion(&s).await.expect("start");
    (c, s)
}

/// The compiled table's assertion section, validated as a gateway validates it.
fn section(c: &Control) -> Assertion {
    let compiled = c.compile().expect("compile");
    assert!(compiled.has_secrets, "the signing keys are secrets");
    let checked = realmgate_table::parse(&compiled.body()).expect("a valid table");
    checked.table.assertion.expect("an assertion section")
}

fn states(v: &AssertionKeysView) -> Vec<(String, KeyPhase)> {
    v.keys.iter().map(|k| (k.kid.clone(), k.state)).collect()
}

#[tokio::test]
async fn a_key_is_made_at_first_start_and_kept() {
    let (c, s) = control(SecretBox::random(), 0).await;
    let first = c.assertion_keys();
    assert_eq!(first.issuer.as_deref(), Some("fleet-1"));
    assert_eq!(first.keys.len(), 1);
    assert_eq!(first.keys[0].state, KeyPhase::Active);
    c.start_assertion(&s).await.expect("again");
    assert_eq!(states(&c.assertion_keys()), states(&first));
    let a = section(&c);
    assert_eq!(a.issuer, "fleet-1");
    assert_eq!(a.keys.len(), 1);
    assert_eq!(c.assertion_jwks(), wire::jwks(Some(&a)));
    // Redacted for operators, never in a Debug line.
    assert!(!format!("{a:?}").contains("PRIVATE"));
}

#[tokio::test]
async fn keys_that_cannot_be_opened_are_replaced() {
    let reg = Registry::in_memory().await.expect("registry");
    let c = Control::with_plan(reg, Plan::default(), SecretBox::random())
        .await
        .expect("control");
    c.start_assertion(&AssertionSettings::default())
        .await
        .expect("start");
    let old = c.assertion_keys().keys[0].kid.clone();
    // The same registry under another secrets key (an ephemeral one after a restart).
    let model = std::mem::take(&mut *c.write());
    let reg = std::mem::replace(
        &mut *c.lock_registry().await,
        Registry::in_memory().await.expect("r"),
    );
    let c2 = Control::with_plan(reg, Plan::default(), SecretBox::random())
        .await
        .expect("control");
    drop(model);
    c2.start_assertion(&AssertionSettings::default())
        .await
        .expect("start");
    let keys = c2.assertion_keys().keys;
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0].kid, old);
    assert_eq!(keys[0].state, KeyPhase::Active);
    assert_eq!(section(&c2).keys.len(), 1);
}

#[tokio::test]
async fn rotate_at_once_then_retire() {
    let (c, _) = control(SecretBox::random(), 0).await;
    let old = c.assertion_keys().keys[0].kid.clone();
    let v = c.rotate_assertion_key().await.expect("rotate");
    let new = v
        .keys
        .iter()
        .find(|k| k.kid != old)
        .expect("a new key")
        .kid
        .clone();
    let st = states(&v);
    assert!(st.contains(&(new.clone(), KeyPhase::Active)), "{st:?}");
    assert!(st.contains(&(old.clone(), KeyPhase::Published)), "{st:?}");
    assert!(v.keys.iter().any(|k| k.kid == old && k.retire_at.is_some()));
    let a = section(&c);
    assert_eq!(a.active().map(|k| k.kid.as_str()), Some(new.as_str()));
    assert_eq!(a.keys.len(), 2);
    // The signing key cannot be retired; the rotated-out one can.
    let err = c.retire_assertion_key(&new).await.expect_err("in use");
    assert!(
        matches!(
            err,
            ServiceError::Conflict {
                code: "assertion_key_in_use",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        c.retire_assertion_key("nope").await,
        Err(ServiceError::NotFound { .. })
    ));
    let v = c.retire_assertion_key(&old).await.expect("retire");
    assert_eq!(states(&v), vec![(new, KeyPhase::Active)]);
    assert_eq!(section(&c).keys.len(), 1);
}

#[tokio::test]
async fn a_rotated_in_key_is_published_before_it_signs() {
    let (c, _) = control(SecretBox::random(), 3600).await;
    let old = c.assertion_keys().keys[0].kid.clone();
    let v = c.rotate_assertion_key().await.expect("rotate");
    let pending = v.keys.iter().find(|k| k.kid != old).expect("new");
    assert_eq!(pending.state, KeyPhase::Pending);
    assert!(pending.activate_at.is_some());
    // Published in the table, not signing yet.
    let a = section(&c);
    assert_eq!(a.active().map(|k| k.kid.as_str()), Some(old.as_str()));
    assert!(a
        .keys
        .iter()
        .any(|k| k.kid == pending.kid && k.state == KeyState::Published));
    // One rotation at a time.
    let err = c.rotate_assertion_key().await.expect_err("in progress");
    assert!(matches!(
        err,
        ServiceError::Conflict {
            code: "rotation_in_progress",
            ..
        }
    ));
    // Nothing is due yet; the next change is the activation.
    let next = c.run_assertion_schedule().await.expect("schedule");
    assert!(next.is_some_and(|t| t > now_ms()));
    // At its time (the schedule is a pure function of the model and the clock): it signs,
    // the old key steps down, and an hour later leaves.
    let m = c.read();
    let at = m.assertion.keys[&pending.kid].activate_at_ms.expect("time");
    let (changed, gone) = due_changes(&m, at);
    assert!(gone.is_empty());
    let phases: Vec<(&str, KeyPhase)> = changed.iter().map(|k| (k.kid.as_str(), k.phase)).collect();
    assert!(
        phases.contains(&(pending.kid.as_str(), KeyPhase::Active)),
        "{phases:?}"
    );
    assert!(
        phases.contains(&(old.as_str(), KeyPhase::Published)),
        "{phases:?}"
    );
    let stepped = changed.iter().find(|k| k.kid == old).expect("old");
    assert_eq!(stepped.retire_at_ms, Some(at + 3_600_000));
    let mut later = Model::default();
    later.assertion.keys.insert(old.clone(), stepped.clone());
    let (_, gone) = due_changes(&later, at + 3_600_000);
    assert_eq!(gone, vec![old]);
}

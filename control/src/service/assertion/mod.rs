//! The fleet's identity assertion keys (P-256, ES256): one made at first start, sealed at
//! rest; a rotation publishes the new key first and lets it sign after the activation delay
//! (so apps that fetched the JWKS a moment ago still find it), the old key stays published
//! until retired by hand or after the grace period. Every key travels in the table; the
//! active one signs.

use super::{not_found, Control, ServiceError};
use crate::model::{AssertionKeyRecord, KeyPhase, Model};
use crate::provision::secrets::fill_random;
use crate::time::{now_ms, rfc3339};
use realmgate_table::assertion::{self as wire, Jwks};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// `assertion:` in realmctl's configuration.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    /// The assertions' `iss`, as apps are told to expect it.
    pub issuer: String,
    /// A rotated-in key is published this long before it signs.
    pub activation_delay: Duration,
    /// A rotated-out key stays published this long after it stopped signing.
    pub retire_after: Duration,
}

pub const DEFAULT_ISSUER: &str = "realmgate";
pub const DEFAULT_ACTIVATION_DELAY: Duration = Duration::from_secs(30);
pub const DEFAULT_RETIRE_AFTER: Duration = Duration::from_secs(3600);

impl Default for AssertionSettings {
    fn default() -> Self {
        AssertionSettings {
            issuer: DEFAULT_ISSUER.into(),
            activation_delay: DEFAULT_ACTIVATION_DELAY,
            retire_after: DEFAULT_RETIRE_AFTER,
        }
    }
}

/// What operators see of the keys (never a private part).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionKeysView {
    pub issuer: Option<String>,
    pub keys: Vec<AssertionKeyView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionKeyView {
    pub kid: String,
    pub state: KeyPhase,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<String>,
    pub table_version: u64,
}

impl Control {
    /// At start: take the settings, and (when this realmctl may write) drop keys that cannot
    /// be opened (another secrets key) and make an active key if there is none. A realmctl
    /// that does not hold the Lease yet leaves that to [`maintain`], once it does.
    pub async fn start_assertion(&self, s: &AssertionSettings) -> Result<(), ServiceError> {
        {
            let mut m = self.write();
            m.assertion.issuer = Some(s.issuer.clone());
            m.assertion.activation_delay_ms = s.activation_delay.as_millis() as u64;
            m.assertion.retire_after_ms = s.retire_after.as_millis() as u64;
        }
        if !self.fence().is_leading() {
            log::info!("assertion keys: checked once this realmctl may write (it holds the Lease)");
            return Ok(());
        }
        self.ensure_assertion_key().await
    }

    /// Drop keys that cannot be opened and make an active key if there is none; no write
    /// when there is nothing to do.
    pub async fn ensure_assertion_key(&self) -> Result<(), ServiceError> {
        let registry = self.lock_registry().await;
        let (gone, active) = {
            let m = self.read();
            let gone: Vec<String> = m
                .assertion
                .keys
                .values()
                .filter(|k| {
                    self.secret_box
                        .open_assertion_key(&k.kid, &k.key_sealed)
                        .is_err()
                })
                .map(|k| k.kid.clone())
                .collect();
            let active = m
                .assertion
                .keys
                .values()
                .any(|k| k.phase == KeyPhase::Active && !gone.contains(&k.kid));
            (gone, active)
        };
        for kid in &gone {
            log::warn!("assertion key {kid} cannot be opened with this secrets key; dropped");
        }
        if active && gone.is_empty() {
            return Ok(());
        }
        let new = if active {
            Vec::new()
        } else {
            vec![self.new_key(KeyPhase::Active, None)?]
        };
        let version = registry.save_assertion_keys(&new, &gone).await?;
        for k in &new {
            log::info!(
                "assertion key {} made, active (table version {version})",
                k.kid
            );
        }
        self.commit(version, |m| {
            for kid in &gone {
                m.assertion.keys.remove(kid);
            }
            for k in new {
                m.assertion.keys.insert(k.kid.clone(), k);
            }
        });
        Ok(())
    }

    /// A new key, published now and signing after the activation delay (at once when the
    /// delay is 0, the old key then published until the grace period ends).
    pub async fn rotate_assertion_key(&self) -> Result<AssertionKeysView, ServiceError> {
        let registry = self.lock_registry().await;
        let (delay, pending) = {
            let m = self.read();
            let pending = m
                .assertion
                .keys
                .values()
                .find(|k| k.phase == KeyPhase::Pending);
            (
                m.assertion.activation_delay_ms,
                pending.map(|k| k.kid.clone()),
            )
        };
        if let Some(kid) = pending {
            return Err(ServiceError::Conflict {
                code: "rotation_in_progress",
                message: format!("key {kid} is being rotated in already; it signs once its activation time comes"),
                details: json!({"kid": kid}),
            });
        }
        let now = now_ms();
        let new = self.new_key(KeyPhase::Pending, Some(now + delay))?;
        log::info!(
            "assertion key {} published, signs from {}",
            new.kid,
            rfc3339(now + delay)
        );
        let version = registry
            .save_assertion_keys(std::slice::from_ref(&new), &[])
            .await?;
        self.commit(version, |m| m.assertion.keys.insert(new.kid.clone(), new));
        drop(registry);
        if delay == 0 {
            self.run_assertion_schedule().await?;
        }
        Ok(self.assertion_keys())
    }

    /// Take a published (rotated-out) key out of the table now.
    pub async fn retire_assertion_key(&self, kid: &str) -> Result<AssertionKeysView, ServiceError> {
        let registry = self.lock_registry().await;
        let phase = self
            .read()
            .assertion
            .keys
            .get(kid)
            .map(|k| k.phase)
            .ok_or_else(|| not_found("assertion key", kid))?;
        if phase != KeyPhase::Published {
            return Err(ServiceError::Conflict {
                code: "assertion_key_in_use",
                message: format!(
                    "key {kid} is {}: only a rotated-out (published) key can be retired",
                    phase.name()
                ),
                details: json!({"kid": kid, "state": phase.name()}),
            });
        }
        let version = registry.save_assertion_keys(&[], &[kid.to_owned()]).await?;
        self.commit(version, |m| m.assertion.keys.remove(kid));
        log::info!("assertion key {kid} retired (table version {version})");
        Ok(self.assertion_keys())
    }

    /// Apply what is due: a pending key whose time came signs (the active one steps down to
    /// published), a published key past its grace period leaves. Returns when the next
    /// change is due (ms since the epoch), if any.
    pub async fn run_assertion_schedule(&self) -> Result<Option<u64>, ServiceError> {
        let registry = self.lock_registry().await;
        let now = now_ms();
        let (changed, gone) = due_changes(&self.read(), now);
        if !changed.is_empty() || !gone.is_empty() {
            let version = registry.save_assertion_keys(&changed, &gone).await?;
            for k in &changed {
                log::info!(
                    "assertion key {} is now {} (table version {version})",
                    k.kid,
                    k.phase.name()
                );
            }
            for kid in &gone {
                log::info!(
                    "assertion key {kid} retired after its grace period (table version {version})"
                );
            }
            self.commit(version, |m| {
                for kid in &gone {
                    m.assertion.keys.remove(kid);
                }
                for k in changed {
                    m.assertion.keys.insert(k.kid.clone(), k);
                }
            });
        }
        let m = self.read();
        Ok(m.assertion
            .keys
            .values()
            .filter_map(|k| match k.phase {
                KeyPhase::Pending => k.activate_at_ms,
                KeyPhase::Published => k.retire_at_ms,
                KeyPhase::Active => None,
            })
            .min())
    }

    pub fn assertion_keys(&self) -> AssertionKeysView {
        let m = self.read();
        let mut keys: Vec<AssertionKeyView> = m
            .assertion
            .keys
            .values()
            .map(|k| AssertionKeyView {
                kid: k.kid.clone(),
                state: k.phase,
                created_at: rfc3339(k.created_at_ms),
                activate_at: k
                    .activate_at_ms
                    .filter(|_| k.phase == KeyPhase::Pending)
                    .map(rfc3339),
                retire_at: k.retire_at_ms.map(rfc3339),
                table_version: k.table_version,
            })
            .collect();
        keys.sort_by_key(|k| (k.state != KeyPhase::Active, k.created_at.clone()));
        AssertionKeysView {
            issuer: m.assertion.issuer.clone(),
            keys,
        }
    }

    /// The public keys, as gateways serve them.
    pub fn assertion_jwks(&self) -> Jwks {
        let m = self.read();
        let mut keys: Vec<_> = m.assertion.keys.values().collect();
        keys.sort_by_key(|k| k.phase != KeyPhase::Active);
        Jwks {
            keys: keys.into_iter().map(|k| k.public.clone()).collect(),
        }
    }

    fn new_key(
        &self,
        phase: KeyPhase,
        activate_at_ms: Option<u64>,
    ) -> Result<AssertionKeyRecord, ServiceError> {
        let pem = loop {
            let mut seed = [0u8; 32];
            fill_random(&mut seed);
            if let Some(pem) = wire::key_pem_from_bytes(&seed) {
                break pem;
            }
        };
        let mut tag = [0u8; 4];
        fill_random(&mut tag);
        let now = now_ms();
        let kid = format!("{}-{}", now / 1000, hex::encode(tag));
        let key = wire::signing_key(&pem).map_err(ServiceError::Internal)?;
        let key_sealed = self
            .secret_box
            .seal_assertion_key(&kid, &pem)
            .ok_or_else(|| ServiceError::Internal("cannot seal an assertion key".into()))?;
        Ok(AssertionKeyRecord {
            public: wire::public_jwk(&kid, &key),
            kid,
            key_sealed,
            phase,
            created_at_ms: now,
            activate_at_ms,
            retire_at_ms: None,
            table_version: 0,
        })
    }
}

/// The keys whose phase changes at `now`, and those that leave.
fn due_changes(m: &Model, now: u64) -> (Vec<AssertionKeyRecord>, Vec<String>) {
    let a = &m.assertion;
    let mut changed = Vec::new();
    let rising = a
        .keys
        .values()
        .filter(|k| k.phase == KeyPhase::Pending && k.activate_at_ms.is_some_and(|t| t <= now))
        .max_by_key(|k| k.activate_at_ms);
    if let Some(new) = rising {
        for old in a.keys.values().filter(|k| k.phase == KeyPhase::Active) {
            changed.push(AssertionKeyRecord {
                phase: KeyPhase::Published,
                retire_at_ms: Some(now + a.retire_after_ms),
                ..old.clone()
            });
        }
        changed.push(AssertionKeyRecord {
            phase: KeyPhase::Active,
            ..new.clone()
        });
    }
    let gone = a
        .keys
        .values()
        .filter(|k| k.phase == KeyPhase::Published && k.retire_at_ms.is_some_and(|t| t <= now))
        .map(|k| k.kid.clone())
        .collect();
    (changed, gone)
}

/// Run the schedule for as long as realmctl runs: at each due time, and at least every
/// few seconds (a rotation made meanwhile is picked up then).
pub async fn maintain(control: Arc<Control>) {
    const MAX_SLEEP_MS: u64 = 5_000;
    loop {
        // Every change here is a registry write: only while this realmctl may write.
        control.fence().wait_leading().await;
        if let Err(e) = control.ensure_assertion_key().await {
            log::error!("assertion keys: {e}");
        }
        let next = match control.run_assertion_schedule().await {
            Ok(next) => next,
            Err(e) => {
                log::error!("assertion keys: {e}");
                None
            }
        };
        let wait = next.map_or(MAX_SLEEP_MS, |t| {
            t.saturating_sub(now_ms()).clamp(10, MAX_SLEEP_MS)
        });
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[cfg(test)]
mod tests;

//! Incremental tables, realmctl's side: from what the model recorded as written since the
//! last compile, the change that moves the gateways' table from the previous version to this
//! one ([`realmgate_table::delta::Delta`]), compiled in the size of the change. The changes
//! are kept ([`super::history`]), so a gateway behind by many versions is still sent a delta.
//!
//! Each part is emitted by the same functions the full compile uses, so a part in a delta is
//! byte for byte the part in the full table of the same version.

pub use super::history::DeltaBody;
use super::history::{self, Change, Deltas, History, Limits, Part, PartId, SectionChange, Step};
use super::{
    certificate_entry, challenge_enters, compile_at, full, key_enters, key_entry,
    provisioned_realm, tenant_entry, Compiled, Provisioned,
};
use crate::model::Model;
use crate::provision::secrets::SecretBox;
use realmgate_table::assertion::Assertion;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// Which parts the table of `version` holds (their identities only), and when the ones that
/// expire leave it.
struct Held {
    version: u64,
    upstreams: HashSet<String>,
    tenants: HashSet<String>,
    keys: HashSet<String>,
    /// Held keys with an expiry, by the instant (ms) they leave the table.
    key_expiry: BTreeSet<(u64, String)>,
    certificates: HashSet<String>,
    /// Held ACME answers and the instant (ms) each leaves the table (few: open orders).
    challenges: BTreeMap<String, u64>,
    assertion: Option<Assertion>,
    /// Held tenants whose realm carries a login client secret (the table then has secrets).
    secret_tenants: HashSet<String>,
}

impl Held {
    /// Whether the table carries secrets: a login client secret, a certificate's key or the
    /// assertion section's signing keys (as the full compile decides it).
    fn has_secrets(&self) -> bool {
        self.assertion.is_some() || !self.certificates.is_empty() || !self.secret_tenants.is_empty()
    }

    /// Record that the part is (`Some`) or is not in the table now, and what changed.
    fn set(&mut self, id: PartId, part: Option<Part>, parts: &mut BTreeMap<PartId, Change>) {
        let (set, name) = match &id {
            PartId::Upstream(n) => (&mut self.upstreams, n),
            PartId::Tenant(n) => (&mut self.tenants, n),
            PartId::ApiKey(n) => (&mut self.keys, n),
            PartId::Certificate(n) => (&mut self.certificates, n),
            PartId::Challenge(n) => {
                let existed = self.challenges.remove(n).is_some();
                if let Some(Part::Challenge(c)) = &part {
                    let at = realmgate_table::parse_expiry(&c.expires_at).unwrap_or(0);
                    self.challenges.insert(n.clone(), at.saturating_mul(1000));
                }
                record(id, existed, part, parts);
                return;
            }
        };
        let existed = if part.is_some() {
            !set.insert(name.clone())
        } else {
            set.remove(name)
        };
        record(id, existed, part, parts);
    }
}

fn record(id: PartId, existed: bool, part: Option<Part>, parts: &mut BTreeMap<PartId, Change>) {
    match part {
        Some(part) => {
            parts.insert(
                id,
                Change::Put {
                    existed,
                    part: Arc::new(part),
                },
            );
        }
        // Never held, still absent: nothing to say.
        None if !existed => {}
        None => {
            parts.insert(id, Change::Delete);
        }
    }
}

/// Compiles each version in full and as the change from the version before, kept in the
/// history the deltas from older versions are composed from. One lives in the task that
/// publishes tables, the only caller of [`DeltaCompiler::compile`].
pub struct DeltaCompiler {
    /// What the last compiled table holds; `None` before the first compile (or after a
    /// failed one): the next compile learns it from the whole model, and has no delta.
    held: Option<Held>,
    /// The last changes, oldest first; each one's base is the version before it. Shared with
    /// the compiled versions, which compose their deltas from it.
    history: Arc<Mutex<History>>,
    /// The last compiled table as the gateways check it (`realmgate_table::Model`): what
    /// gives each delta its state digest, advanced by every change in its size.
    table: Option<realmgate_table::Model>,
}

impl Default for DeltaCompiler {
    fn default() -> DeltaCompiler {
        DeltaCompiler::with_limits(Limits::default())
    }
}

impl DeltaCompiler {
    /// A compiler keeping at most `limits` of history.
    pub fn with_limits(limits: Limits) -> DeltaCompiler {
        DeltaCompiler {
            held: None,
            history: Arc::new(Mutex::new(History::new(limits))),
            table: None,
        }
    }

    /// Compile the model as it is: the full table (written out when first needed), and the
    /// change from the version before. Holds the model for reading throughout (its change
    /// records are taken).
    pub fn compile(
        &mut self,
        model: &Model,
        secrets: &SecretBox,
    ) -> Result<Compiled, serde_json::Error> {
        self.compile_at(model, secrets, crate::time::now_ms())
    }

    fn compile_at(
        &mut self,
        model: &Model,
        secrets: &SecretBox,
        now_ms: u64,
    ) -> Result<Compiled, serde_json::Error> {
        let Some(held) = self.held.as_mut() else {
            return self.compile_first(model, secrets, now_ms);
        };
        // The change alone: the full table is written out only when a gateway needs it.
        let mut step = step(model, secrets, now_ms, held);
        let (tenants, has_secrets) = (held.tenants.len(), held.has_secrets());
        let Some((state, table, newest)) = self.advance_table(&step) else {
            // The table model could not follow (a compiler bug, logged): this version goes
            // out in full, compiled from the model, and the deltas start again from it.
            self.clear_history();
            let (mut compiled, _) = match compile_at(model, secrets, now_ms) {
                Ok(c) => c,
                Err(e) => return Err(self.forget(e)),
            };
            self.table = table_model(&compiled);
            compiled.state_digest = self.table.as_ref().map(|t| t.state_digest());
            return Ok(compiled);
        };
        let newest = match history::body(newest) {
            Ok(d) => d,
            Err(e) => return Err(self.forget(e)),
        };
        step.bytes = newest.body.len();
        let evicted = self.lock_history().push(step);
        // Freed outside the lock: composing deltas for older versions goes on meanwhile.
        drop(evicted);
        let deltas = Deltas::new(
            model.version,
            state.clone(),
            newest,
            Arc::clone(&self.history),
        );
        Ok(Compiled {
            version: model.version,
            full: full::Full::from_model(table),
            tenants,
            has_secrets,
            deltas,
            state_digest: Some(state),
        })
    }

    /// The first compile (or the first after a failure): the full table, from the whole
    /// model; nothing to compare with, and what was written before it is in the table.
    fn compile_first(
        &mut self,
        model: &Model,
        secrets: &SecretBox,
        now_ms: u64,
    ) -> Result<Compiled, serde_json::Error> {
        drop(model.take_touched());
        let (mut compiled, realms) = match compile_at(model, secrets, now_ms) {
            Ok(c) => c,
            Err(e) => return Err(self.forget(e)),
        };
        self.held = Some(held_by(model, secrets, now_ms, &realms));
        self.clear_history();
        self.table = table_model(&compiled);
        compiled.state_digest = self.table.as_ref().map(|t| t.state_digest());
        Ok(compiled)
    }

    /// What the gateways hold is no longer known: start afresh with the next compile.
    fn forget(&mut self, e: serde_json::Error) -> serde_json::Error {
        self.held = None;
        self.clear_history();
        self.table = None;
        e
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clear_history(&self) {
        let evicted = self.lock_history().clear();
        drop(evicted);
    }

    /// Move the table model by `step`, as a gateway will; the state digest after it, a copy
    /// of the model (O(1)) to write the full table from, and the step as a delta carrying
    /// that digest. `None`: the model is out of step, or refuses the change (which would be a
    /// compiler bug): this version has no deltas, and the caller rebuilds the model from the
    /// full table.
    fn advance_table(
        &mut self,
        step: &Step,
    ) -> Option<(
        String,
        realmgate_table::Model,
        realmgate_table::delta::Delta,
    )> {
        let mut delta = step.delta();
        let table = self.table.as_mut()?;
        if table.version() != delta.base {
            return None;
        }
        match table.preview(&delta) {
            Ok((checked, state)) => {
                table.apply(&checked);
                delta.state_digest.clone_from(&state);
                Some((state, table.clone(), delta))
            }
            Err(e) => {
                log::error!(
                    "the delta to table version {} does not check against the previous table ({e}); sending the full table",
                    delta.version
                );
                None
            }
        }
    }

    /// The history's oldest base and how many steps, parts and bytes it keeps.
    #[cfg(test)]
    fn kept(&self) -> (Option<u64>, usize, usize, usize) {
        self.lock_history().kept()
    }
}

/// The table model of a full compile (parsed as a gateway parses it).
fn table_model(compiled: &Compiled) -> Option<realmgate_table::Model> {
    let body = compiled.full.get().map(|f| &f.body[..]).unwrap_or_default();
    match realmgate_table::parse(body) {
        Ok(checked) => Some(realmgate_table::Model::from_checked(&checked)),
        Err(problems) => {
            log::error!(
                "compiled table version {} does not parse: {} problem(s); no deltas",
                compiled.version,
                problems.len()
            );
            None
        }
    }
}

/// What the full table compiled at `now_ms` holds: learnt once, from the whole model.
fn held_by(model: &Model, secrets: &SecretBox, now_ms: u64, realms: &super::Realms) -> Held {
    let tenants: HashSet<String> = model
        .tenants
        .iter()
        .filter(|(id, r)| tenant_entry(r, realms.get(*id)).is_some())
        .map(|(id, _)| id.to_string())
        .collect();
    let mut held = Held {
        version: model.version,
        upstreams: model.upstreams.keys().map(ToString::to_string).collect(),
        keys: HashSet::new(),
        key_expiry: BTreeSet::new(),
        certificates: model
            .certificates
            .values()
            .filter(|c| certificate_entry(c, secrets).is_some())
            .map(|c| c.name.clone())
            .collect(),
        challenges: BTreeMap::new(),
        assertion: crate::assertion_section::assertion_section(model, secrets),
        secret_tenants: realms
            .iter()
            .filter(|(id, p)| has_secret(p) && tenants.contains(id.as_str()))
            .map(|(id, _)| id.to_string())
            .collect(),
        tenants,
    };
    for k in model.keys.values() {
        if key_enters(k, now_ms, |t| held.tenants.contains(t.as_str())) {
            held.keys.insert(k.id.clone());
            if let Some(at) = k.expires_at_ms {
                held.key_expiry.insert((at, k.id.clone()));
            }
        }
    }
    for c in model.acme_challenges.values() {
        if challenge_enters(c, now_ms) {
            let at = realmgate_table::parse_expiry(&c.expires_at).unwrap_or(0);
            held.challenges
                .insert(c.token.clone(), at.saturating_mul(1000));
        }
    }
    held
}

/// Whether a tenant's realm puts a secret in the table.
fn has_secret(p: &Provisioned) -> bool {
    matches!(p, Provisioned::Realm(r) if r.client_secret.is_some())
}

/// The change since `held` (the previous table), from what the model recorded as written
/// and what expired by `now_ms`; `held` becomes this version's.
fn step(model: &Model, secrets: &SecretBox, now_ms: u64, held: &mut Held) -> Step {
    let touched = model.take_touched();
    let mut parts = BTreeMap::new();
    for name in touched.upstreams {
        let part = model
            .upstreams
            .get(&name)
            .map(|r| Part::Upstream(r.spec.clone()));
        held.set(PartId::Upstream(name.to_string()), part, &mut parts);
    }
    let mut keys = touched.keys;
    for id in touched.tenants {
        let was = held.tenants.contains(id.as_str());
        let mut secret = false;
        let part = model.tenants.get(&id).and_then(|r| {
            let realm = provisioned_realm(r, secrets);
            let entry = tenant_entry(r, Some(&realm))?;
            secret = has_secret(&realm);
            Some(Part::Tenant(Box::new(entry.into_owned())))
        });
        if secret {
            held.secret_tenants.insert(id.to_string());
        } else {
            held.secret_tenants.remove(id.as_str());
        }
        let is = part.is_some();
        held.set(PartId::Tenant(id.to_string()), part, &mut parts);
        if was != is {
            // Keys enter the table with their tenant, and leave with it.
            keys.extend(model.keys_of(&id).map(|k| k.id.clone()));
        }
    }
    // Keys that expired since: the full table drops them as of now.
    while let Some((at, _)) = held.key_expiry.first() {
        if *at > now_ms {
            break;
        }
        if let Some((_, id)) = held.key_expiry.pop_first() {
            keys.insert(id);
        }
    }
    for id in keys {
        let record = model.keys.get(&id);
        if let Some(at) = record.and_then(|k| k.expires_at_ms) {
            held.key_expiry.remove(&(at, id.clone()));
        }
        let part = record
            .filter(|k| key_enters(k, now_ms, |t| held.tenants.contains(t.as_str())))
            .map(|k| {
                if let Some(at) = k.expires_at_ms {
                    held.key_expiry.insert((at, k.id.clone()));
                }
                Part::ApiKey(key_entry(k))
            });
        held.set(PartId::ApiKey(id), part, &mut parts);
    }
    for name in touched.certificates {
        let part = model
            .certificates
            .get(&name)
            .and_then(|c| certificate_entry(c, secrets))
            .map(Part::Certificate);
        held.set(PartId::Certificate(name), part, &mut parts);
    }
    let mut challenges = touched.acme_challenges;
    challenges.extend(
        held.challenges
            .iter()
            .filter(|(_, at)| **at <= now_ms)
            .map(|(t, _)| t.clone()),
    );
    for token in challenges {
        let part = model
            .acme_challenges
            .get(&token)
            .filter(|c| challenge_enters(c, now_ms))
            .map(|c| Part::Challenge(c.clone()));
        held.set(PartId::Challenge(token), part, &mut parts);
    }
    // A handful of keys: worked out afresh, and sent when it differs.
    let assertion = crate::assertion_section::assertion_section(model, secrets);
    let assertion = (assertion != held.assertion).then(|| {
        let existed = held.assertion.is_some();
        held.assertion.clone_from(&assertion);
        SectionChange {
            existed,
            set: assertion,
        }
    });
    let base = held.version;
    held.version = model.version;
    Step {
        base,
        version: model.version,
        parts,
        assertion,
        bytes: 0,
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "compose_tests.rs"]
mod compose_tests;

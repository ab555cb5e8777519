//! A delta's way into force: checked and built against the model and the snapshot in force
//! ([`Store::prepare`], which touches nothing in force), then journaled and swapped in
//! ([`Store::commit`]); what the build did to the shared caches is committed only then, so
//! a delta the journal refuses leaves them as they were. The model takes the change in
//! place, once it is journaled: nobody else holds its nodes, so none is copied and there is
//! no replaced model to free. Paced ([`crate::snapshot::pace`]).

use super::{Durable, Store};
use crate::snapshot::delta::{build_delta_pending, certificate_validity, Effects};
use crate::snapshot::journal::Journal;
use crate::snapshot::{pace, ApplyError, Snapshot};
use bytes::Bytes;
use realmgate_table::delta::{CheckedDelta, DeltaError};
use realmgate_table::model::Model;
use std::sync::Arc;
use std::time::Instant;

/// A delta checked and built against the table in force, not yet in force.
pub(super) struct Prepared {
    checked: CheckedDelta,
    snapshot: Snapshot,
    pub(super) effects: Effects,
}

impl Store {
    /// Apply a delta (a `realmgate_table::delta::Delta` document) to the table in force.
    /// Blocking, like [`Store::apply`]. Paced: on a core the proxy's workers share, it steps
    /// aside every [`pace::RUN`] of work, and yields a busy core or runs at idle priority as
    /// [`Store::with_pacing`] says.
    pub fn apply_delta(self: &Arc<Self>, raw: Bytes) -> Result<Arc<Snapshot>, ApplyError> {
        let result = pace::paced(self.pacing, || {
            let mut durable = self.lock();
            self.apply_delta_here(&mut durable, &raw, true)
        });
        match &result {
            Ok(_) => self.metrics.table_applies.inc(),
            Err(_) => self.metrics.table_rejections.inc(),
        }
        if result.is_ok() {
            self.compact_if_due();
        }
        result
    }

    /// Apply a delta under the apply lock (also the journal's replay at start, unpaced).
    pub(super) fn apply_delta_here(
        &self,
        durable: &mut Durable,
        raw: &Bytes,
        persist: bool,
    ) -> Result<Arc<Snapshot>, ApplyError> {
        let started = Instant::now();
        let prepared = {
            let (model, current) = self.in_force(durable, raw)?;
            self.prepare(model, &current, raw)?
        };
        self.commit(durable, prepared, raw, persist, started)
    }

    /// The model and snapshot the delta `raw` applies to.
    pub(super) fn in_force<'d>(
        &self,
        durable: &'d mut Durable,
        raw: &Bytes,
    ) -> Result<(&'d Model, Arc<Snapshot>), ApplyError> {
        let current = self.current.load_full();
        match (durable.model(), current) {
            (Some(model), Some(current)) => Ok((model, current)),
            // No table (or none that could be modelled): only a full table helps.
            (_, current) => {
                let delta = realmgate_table::parse_delta(raw).map_err(ApplyError::Invalid)?;
                Err(ApplyError::WrongBase {
                    current: current.map_or(0, |s| s.version),
                    base: delta.base,
                })
            }
        }
    }

    /// Parse and check `raw` against `model`, and build the snapshot after it from
    /// `current`. Touches nothing in force; the caches' part waits in [`Effects`].
    pub(super) fn prepare(
        &self,
        model: &Model,
        current: &Snapshot,
        raw: &Bytes,
    ) -> Result<Prepared, ApplyError> {
        let delta =
            realmgate_table::parse_delta_pausing(raw, pace::point).map_err(ApplyError::Invalid)?;
        pace::point();
        let checked = model
            .check_pausing(&delta, &mut pace::point)
            .map_err(|e| match e {
                DeltaError::WrongBase {
                    current,
                    offered_base,
                } => ApplyError::WrongBase {
                    current,
                    base: offered_base,
                },
                DeltaError::Invalid(p) => ApplyError::Invalid(p),
                DeltaError::DigestMismatch { expected, computed } => {
                    ApplyError::DigestMismatch { expected, computed }
                }
            })?;
        let problems = certificate_validity(&checked, &current.certs, crate::auth::unix_now());
        if !problems.is_empty() {
            return Err(ApplyError::Invalid(problems));
        }
        pace::point();
        let (snapshot, effects) = build_delta_pending(current, &checked, &self.deps())
            .map_err(|p| ApplyError::Invalid(vec![p]))?;
        Ok(Prepared {
            checked,
            snapshot,
            effects,
        })
    }

    /// Journal a prepared delta and put it in force; on failure nothing changes.
    pub(super) fn commit(
        &self,
        durable: &mut Durable,
        prepared: Prepared,
        raw: &Bytes,
        persist: bool,
        started: Instant,
    ) -> Result<Arc<Snapshot>, ApplyError> {
        let Prepared {
            checked,
            snapshot,
            effects,
        } = prepared;
        let deps = self.deps();
        if persist {
            if let Err(e) = self.journal(durable, checked.base, checked.version, raw) {
                effects.abort(&deps);
                return Err(e);
            }
        }
        pace::point();
        match durable.model_mut() {
            Some(model) => model.apply_pausing(&checked, &mut pace::point),
            // Prepared against it under this same lock: it is there. Were it not, deltas
            // would be refused until the next full table, as for a table not modelled.
            None => log::error!("the table's model went missing during a delta"),
        }
        pace::point();
        effects.commit(&deps);
        Ok(self.swap_in(snapshot, started, "delta"))
    }

    fn journal(
        &self,
        durable: &mut Durable,
        base: u64,
        version: u64,
        raw: &Bytes,
    ) -> Result<(), ApplyError> {
        if let Some(j) = durable.journal.as_ref() {
            if j.len() > self.compaction.hard_bytes() {
                return Err(ApplyError::JournalFull { bytes: j.len() });
            }
        }
        let journal = match durable.journal.as_mut() {
            Some(j) => j,
            None => durable
                .journal
                .insert(Journal::open(&self.state_dir, 0, 0).map_err(ApplyError::Persist)?),
        };
        journal
            .append(base, version, raw)
            .map_err(ApplyError::Persist)
    }
}

//! Compaction of the delta journal: when it has grown past its budget, the table in force is
//! written out as a new `table.json` on a background thread (from an O(1) clone of the
//! table's model, so deltas keep applying meanwhile), then the journal is cut down to the
//! deltas after it. A journal that still outgrows its hard bound (compaction failing, say on
//! a full disk) refuses further deltas: realmctl then sends a full table, which needs no
//! journal. Either way it stays bounded.

use super::journal;
use super::persist::{commit, remove_if_there, stage};
use super::store::{Store, BINARY_STATE_FILE, STATE_FILE};
use std::sync::Arc;

/// The name the compaction stages under (not the full apply's: both may run at once).
const STAGED: &str = "table.json.compacting";

impl Store {
    /// Start a compaction if the journal is over budget and none runs.
    pub(super) fn compact_if_due(self: &Arc<Self>) {
        let policy = self.compaction();
        let (model, generation) = {
            let mut d = self.lock();
            let due = d
                .journal
                .as_ref()
                .is_some_and(|j| policy.due(j.len(), j.records()));
            if !due || d.compacting {
                return;
            }
            let Some(model) = d.model().cloned() else {
                return;
            };
            d.compacting = true;
            (model, d.generation)
        };
        let store = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("table-compact".into())
            .spawn(move || {
                store.table_cpus().enter();
                let version = model.version();
                let result = store.compact(model, generation);
                store.lock().compacting = false;
                match result {
                    Ok(true) => log::info!(
                        "journal compacted: table.json now holds version {version}"
                    ),
                    Ok(false) => {}
                    Err(e) => log::error!(
                        "journal compaction to version {version} failed: {e}; the journal keeps every delta"
                    ),
                }
            });
        if spawned.is_err() {
            self.lock().compacting = false;
        }
    }

    /// Write `model` as `table.json`, then drop the journal's records up to its version.
    /// `Ok(false)`: a full table was stored meanwhile, which is newer; nothing replaced.
    fn compact(
        &self,
        model: realmgate_table::model::Model,
        generation: u64,
    ) -> Result<bool, String> {
        let bytes = serde_json::to_vec(&model.to_table())
            .map_err(|e| format!("write the table out: {e}"))?;
        let tmp = stage(self.state_dir(), STAGED, &bytes)?;
        let mut d = self.lock();
        if d.generation != generation {
            drop(d);
            let _ = std::fs::remove_file(&tmp);
            return Ok(false);
        }
        commit(self.state_dir(), &tmp, STATE_FILE)?;
        // A full table that came in the binary encoding is older now.
        remove_if_there(&self.state_dir().join(BINARY_STATE_FILE));
        // From here a restart reads the new table.json and skips the journal's records up to
        // it, so cutting them is only about space.
        match d.journal.as_mut() {
            Some(j) => j.rewrite_after(model.version())?,
            None => {
                let _ = std::fs::remove_file(self.state_dir().join(journal::JOURNAL_FILE));
            }
        }
        Ok(true)
    }
}

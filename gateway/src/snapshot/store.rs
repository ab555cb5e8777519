//! The store: the current snapshot behind an `ArcSwap`, and the two ways to change it, one
//! at a time — `apply` a full table (parse, validate, version-check, build, persist, swap) or
//! `apply_delta` a change to the table in force (checked against the table's model, built
//! with structural sharing, journaled, swapped). Restart replays the journal after the stored
//! table; compaction ([`super::compact`]) keeps the journal bounded.

use super::build::{parse_newer, BuildDeps, Encoding};
pub use super::error::{describe, ApplyError};
use super::journal::{self, Compaction, Journal};
use super::persist::{commit, remove_if_there, stage};
use super::retire::Retirer;
use super::Snapshot;
use crate::auth::Realms;
use crate::limits::Limiters;
use crate::metrics::Metrics;
use crate::tls::resolve::CertSource;
use crate::upstream::PoolCache;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use realmgate_table::model::Model;
use realmgate_table::{CheckedCert, CheckedTable};
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

/// File name of the persisted table inside the state directory.
pub const STATE_FILE: &str = "table.json";
/// The persisted table when it came in the binary encoding (stored as received, so a
/// restart decodes it as fast as the push did). At most one of the two exists, but for a
/// crash between storing one and removing the other: then the newer version is loaded.
pub const BINARY_STATE_FILE: &str = "table.bin";

impl Encoding {
    /// The state file a table of this encoding is stored in.
    pub fn state_file(self) -> &'static str {
        match self {
            Encoding::Json => STATE_FILE,
            Encoding::Binary => BINARY_STATE_FILE,
        }
    }
}

/// Holds the current snapshot and applies new tables, one at a time.
pub struct Store {
    current: ArcSwapOption<Snapshot>,
    pools: PoolCache,
    /// Rate counters, shared by every table this process serves.
    limiters: Limiters,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    /// Realms of the current table (kept warm across versions).
    realms: Realms,
    /// Serialises changes: version check, compile, persist and swap happen as one step. It
    /// guards the table's model and the journal.
    apply_lock: std::sync::Mutex<Durable>,
    compaction: Compaction,
    /// Frees replaced snapshots once no request holds them, off the proxy's workers.
    retired: Retirer<Snapshot>,
    /// How a delta's apply shares its core: yielding a busy one, or at the idle priority
    /// ([`super::pace`]).
    pacing: super::pace::Pacing,
    /// Where a pushed or pulled full table is applied: the worker and the table CPUs, when
    /// table work has CPUs of its own (its thread is on them); none named: where it is.
    full_cpus: super::cpus::Cpus,
}

/// What changes with the table under the apply lock, besides the snapshot.
#[derive(Default)]
pub(super) struct Durable {
    /// The table in force as parts and indices: what a delta is checked against, and what
    /// the full document is written from. After a full table it is made on another thread,
    /// off the push's path; [`Durable::model`] waits for it.
    model: TableModel,
    /// Open once a delta was journaled or replayed.
    pub(super) journal: Option<Journal>,
    /// Moves with every full table stored, so a compaction started before one never
    /// replaces it with an older document.
    pub(super) generation: u64,
    /// A compaction is running.
    pub(super) compacting: bool,
}

/// The table's model: ready, being made from the full table just applied, or none.
#[derive(Default)]
enum TableModel {
    #[default]
    None,
    Ready(Box<Model>),
    Making(std::thread::JoinHandle<Option<Model>>),
}

impl Durable {
    /// The model of the table in force, waiting for it if it is still being made.
    pub(super) fn model(&mut self) -> Option<&Model> {
        if let TableModel::Making(_) = self.model {
            if let TableModel::Making(h) = std::mem::take(&mut self.model) {
                match h.join() {
                    Ok(Some(m)) => self.model = TableModel::Ready(Box::new(m)),
                    _ => log::error!(
                        "the table in force could not be modelled: deltas are refused until the next full table"
                    ),
                }
            }
        }
        match &self.model {
            TableModel::Ready(m) => Some(m),
            _ => None,
        }
    }

    /// The model to apply a delta to in place: [`Durable::model`] made it ready before.
    pub(super) fn model_mut(&mut self) -> Option<&mut Model> {
        match &mut self.model {
            TableModel::Ready(m) => Some(m),
            _ => None,
        }
    }

    /// Make the model of the full table just checked and built, in the background (and free
    /// the checked table there too). The previous model is freed off this path as well: at a
    /// million tenants that takes longer than the rest of the swap.
    fn make_model(&mut self, checked: CheckedTable) {
        if let TableModel::Ready(previous) = std::mem::take(&mut self.model) {
            drop_elsewhere("model-drop", previous);
        }
        let made = std::thread::Builder::new()
            .name("table-model".into())
            .spawn(move || Some(Model::from_checked(&checked)));
        self.model = match made {
            Ok(h) => TableModel::Making(h),
            Err(_) => TableModel::None,
        };
    }
}

impl Store {
    pub fn new(state_dir: PathBuf, metrics: Arc<Metrics>) -> Store {
        Store {
            current: ArcSwapOption::empty(),
            pools: PoolCache::default(),
            limiters: Limiters::default(),
            state_dir,
            metrics,
            realms: Realms::default(),
            apply_lock: std::sync::Mutex::new(Durable::default()),
            compaction: Compaction::default(),
            retired: Retirer::default(),
            pacing: super::pace::Pacing::default(),
            full_cpus: super::cpus::Cpus::default(),
        }
    }

    /// How a delta's apply shares its core with the traffic (none of this by default: it is
    /// then only paced).
    pub fn with_pacing(mut self, pacing: super::pace::Pacing) -> Store {
        self.pacing = pacing;
        self.retired.set_cpus(pacing.cpus);
        self
    }

    /// Apply full tables on these CPUs (the worker and the table CPUs, taken at start): the
    /// thread that takes a push is on the table CPUs, and the parallel parse it starts would
    /// inherit only those.
    pub fn with_full_cpus(mut self, cpus: super::cpus::Cpus) -> Store {
        self.full_cpus = cpus;
        self
    }

    /// Compact the journal on this budget instead of the default one.
    pub fn with_compaction(mut self, compaction: Compaction) -> Store {
        self.compaction = compaction;
        self
    }

    /// Where table work runs (`gateway.table_cpus`).
    pub fn table_cpus(&self) -> super::cpus::Cpus {
        self.pacing.cpus
    }

    pub(super) fn compaction(&self) -> Compaction {
        self.compaction
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Durable> {
        self.apply_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The full table in force as a document (what `GET /v1/table?full=1` shows, before
    /// redaction): the one received, or, after deltas, the model written out.
    pub fn document(&self) -> Option<Bytes> {
        let model = self.lock().model()?.clone();
        serde_json::to_vec(&model.to_table()).ok().map(Bytes::from)
    }

    /// The state digest of the table in force (`None` without one). Blocking: a full table
    /// just applied may still be being modelled.
    pub fn state_digest(&self) -> Option<String> {
        let mut d = self.lock();
        let version = self.current.load().as_ref().map(|s| s.version)?;
        d.model()
            .filter(|m| m.version() == version)
            .map(Model::state_digest)
    }

    /// The snapshot requests use; `None` before the first table.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Run `f` on the snapshot in force without taking a reference count (the handshake's
    /// certificate lookup).
    pub fn with_current<R>(&self, f: impl FnOnce(Option<&Snapshot>) -> R) -> R {
        f(self.current.load().as_deref())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Parse, validate, version-check, compile, persist, swap. Blocking (CPU and fsync): call
    /// from a blocking context.
    pub fn apply(&self, raw: Bytes) -> Result<Arc<Snapshot>, ApplyError> {
        self.apply_encoded(raw, Encoding::Json)
    }

    /// [`Store::apply`] of a table in the binary encoding (`realmgate_table::binary`).
    pub fn apply_binary(&self, raw: Bytes) -> Result<Arc<Snapshot>, ApplyError> {
        self.apply_encoded(raw, Encoding::Binary)
    }

    /// [`Store::apply`] of a table in either encoding.
    pub fn apply_encoded(
        &self,
        raw: Bytes,
        encoding: Encoding,
    ) -> Result<Arc<Snapshot>, ApplyError> {
        let result = self.full_cpus.within(|| {
            let mut durable = self.lock();
            self.apply_locked(&mut durable, raw, encoding, true)
        });
        match &result {
            Ok(_) => self.metrics.table_applies.inc(),
            Err(_) => self.metrics.table_rejections.inc(),
        }
        result
    }

    /// Load the persisted table at start, if there is one, then the deltas journaled after
    /// it. A torn or unusable journal tail (a crash mid-write) is cut off and said so: the
    /// gateway starts from the last good state.
    pub fn load_state(&self) -> Result<Option<u64>, String> {
        let Some((path, raw, encoding)) = self.stored_table()? else {
            return Ok(None);
        };
        let mut durable = self.lock();
        match self.apply_locked(&mut durable, raw, encoding, false) {
            Ok(s) => {
                let version = self.replay(&mut durable, s.version)?;
                Ok(Some(version))
            }
            Err(ApplyError::Invalid(problems)) => Err(format!(
                "{}: stored table is invalid: {}",
                path.display(),
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Err(e) => Err(format!("{}: {}", path.display(), describe(&e))),
        }
    }

    /// The stored table: `table.json` or `table.bin`, whichever exists; both only after a
    /// crash between storing one and removing the other, and then the newer version.
    fn stored_table(&self) -> Result<Option<(PathBuf, Bytes, Encoding)>, String> {
        let mut found = Vec::new();
        for encoding in [Encoding::Json, Encoding::Binary] {
            let path = self.state_dir.join(encoding.state_file());
            match std::fs::read(&path) {
                Ok(raw) => found.push((path, Bytes::from(raw), encoding)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        if found.len() > 1 {
            log::warn!(
                "{} and {} both exist (a crash while a table was stored): loading the newer",
                STATE_FILE,
                BINARY_STATE_FILE
            );
        }
        Ok(found
            .into_iter()
            .max_by_key(|(_, raw, encoding)| stored_version(raw, *encoding)))
    }

    /// Replay the journal after the stored table (at `stored`); returns the version in force.
    fn replay(&self, durable: &mut Durable, stored: u64) -> Result<u64, String> {
        let contents = journal::read(&self.state_dir)?;
        let mut good_len = 0u64;
        let mut kept = 0usize;
        let mut version = stored;
        let mut offset = 0u64;
        let mut stop: Option<String> = contents.torn.clone();
        for record in &contents.records {
            let len = journal::encode(record.base, record.version, &[]).len() as u64
                + record.payload.len() as u64;
            offset += len;
            if record.version <= stored {
                // Already in the stored table (a compaction ended between its two steps).
                good_len = offset;
                kept += 1;
                continue;
            }
            let raw = Bytes::from(record.payload.clone());
            match self.apply_delta_here(durable, &raw, false) {
                Ok(s) => {
                    version = s.version;
                    good_len = offset;
                    kept += 1;
                }
                Err(e) => {
                    stop = Some(format!(
                        "the delta to version {} does not apply: {}",
                        record.version,
                        describe(&e)
                    ));
                    break;
                }
            }
        }
        if let Some(why) = stop {
            log::warn!(
                "{}: {why}; the rest of the journal is cut off and the gateway starts from version {version}, the last good state",
                self.state_dir.join(journal::JOURNAL_FILE).display()
            );
        } else if kept > 0 {
            log::info!("replayed {kept} journaled deltas: table version {version} in force");
        }
        durable.journal = Some(Journal::open(&self.state_dir, good_len, kept)?);
        Ok(version)
    }

    fn deps(&self) -> BuildDeps<'_> {
        BuildDeps {
            pools: &self.pools,
            limiters: &self.limiters,
            metrics: &self.metrics,
            realms: &self.realms,
        }
    }

    fn apply_locked(
        &self,
        durable: &mut Durable,
        raw: Bytes,
        encoding: Encoding,
        persist: bool,
    ) -> Result<Arc<Snapshot>, ApplyError> {
        let started = Instant::now();
        let file = encoding.state_file();
        // Hash the document and stage its file on the other core while this one parses,
        // validates and compiles; the file only replaces the stored table once all passed.
        let (side, built) = std::thread::scope(|scope| {
            let side = scope.spawn(|| {
                let digest = realmgate_table::digest(&raw);
                let staged = persist.then(|| stage(&self.state_dir, file, &raw));
                (digest, staged)
            });
            let current = self.current.load();
            let deps = self.deps();
            let built = parse_newer(
                &raw,
                encoding,
                current.as_deref(),
                crate::auth::unix_now(),
                &deps,
            );
            let built_at = started.elapsed();
            (side.join(), built.map(|b| (b, built_at)))
        });
        let (digest, staged) =
            side.map_err(|_| ApplyError::Persist("staging thread panicked".into()))?;
        let ((mut snapshot, checked), built_at) = match built {
            Ok(s) => s,
            Err(e) => {
                if let Some(Ok(tmp)) = staged {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(e.into());
            }
        };
        snapshot.digest = digest;
        if let Some(staged) = staged {
            staged
                .and_then(|tmp| commit(&self.state_dir, &tmp, file))
                .map_err(ApplyError::Persist)?;
            // The other encoding's file, if any, is older now.
            let other = match encoding {
                Encoding::Json => BINARY_STATE_FILE,
                Encoding::Binary => STATE_FILE,
            };
            remove_if_there(&self.state_dir.join(other));
            durable.generation += 1;
            // The stored table holds every delta before it.
            let cleared = match durable.journal.as_mut() {
                Some(j) => j.clear(),
                None => {
                    remove_if_there(&self.state_dir.join(journal::JOURNAL_FILE));
                    Ok(())
                }
            };
            if let Err(e) = cleared {
                // Replaying it later is harmless: every record is at or below this version.
                log::warn!("{e}");
            }
        }
        log::debug!(
            "full table version {}: checked and built in {built_at:?}, stored by {:?}",
            snapshot.version,
            started.elapsed()
        );
        // The model for deltas is made from this same parse, after the swap.
        durable.make_model(checked);
        Ok(self.swap_in(snapshot, started, "table"))
    }

    /// Put a built snapshot in force: swap, metrics, log; the old one is freed off this path.
    fn swap_in(&self, snapshot: Snapshot, started: Instant, what: &str) -> Arc<Snapshot> {
        let snapshot = Arc::new(snapshot);
        let previous = self.current.swap(Some(Arc::clone(&snapshot)));
        self.metrics
            .table_version
            .set(i64::try_from(snapshot.version).unwrap_or(i64::MAX));
        self.metrics.table_applied_at.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let certs_changed = previous
            .as_ref()
            .is_none_or(|p| !p.certs.same_as(&snapshot.certs));
        if certs_changed {
            self.metrics.certificate_expiry(
                snapshot
                    .certs
                    .sorted()
                    .into_iter()
                    .map(|c| (&*c.name, c.cert.not_after)),
            );
        }
        log::info!(
            "table version {} in force ({what}): {} tenants, {} pools, {} API keys, {} certificates, built in {:?}",
            snapshot.version,
            snapshot.tenant_count(),
            snapshot.pool_count(),
            snapshot.keys.len(),
            snapshot.certs.len(),
            started.elapsed()
        );
        // Freeing a table takes a while: not on the push path, nor on a request's worker.
        if let Some(previous) = previous {
            self.retired.retire(previous);
        }
        snapshot
    }
}

/// Free `value` on a thread of its own (here, if none can be started).
fn drop_elsewhere<T: Send + 'static>(name: &str, value: T) {
    let _ = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || drop(value));
}

/// The version a stored table claims, read cheaply (0 if it cannot be read: the other one
/// is then loaded, and checked like any table).
fn stored_version(raw: &[u8], encoding: Encoding) -> u64 {
    #[derive(serde::Deserialize)]
    struct Version {
        version: u64,
    }
    match encoding {
        Encoding::Json => serde_json::from_slice::<Version>(raw).map_or(0, |v| v.version),
        Encoding::Binary => realmgate_table::binary::version(raw).unwrap_or(0),
    }
}

/// The handshake's certificate source: the snapshot in force, read without a reference count.
impl CertSource for Store {
    fn lookup(&self, name: &str) -> Option<Arc<CheckedCert>> {
        self.with_current(|s| s.and_then(|s| s.certs.lookup(name)).cloned())
    }
}

mod deltas;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_binary;

//! The store: the current snapshot behind an `ArcSwap`, and `apply` — parse, validate,
//! version-check, build, persist, swap — one table at a time.

use super::build::{parse_newer, BuildDeps, Rejected};
use super::persist::{commit, stage};
use super::Snapshot;
use crate::auth::Realms;
use crate::limits::Limiters;
use crate::metrics::Metrics;
use crate::tls::resolve::CertSource;
use crate::upstream::PoolCache;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use realmgate_table::{CheckedCert, Problem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// File name of the persisted table inside the state directory.
pub const STATE_FILE: &str = "table.json";

/// Why a table was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// 422: every problem found.
    Invalid(Vec<Problem>),
    /// 409: not newer than what is served.
    NotNewer { current: u64, offered: u64 },
    /// 500: could not be persisted; the previous table stays.
    Persist(String),
}

impl From<Rejected> for ApplyError {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Invalid(p) => ApplyError::Invalid(p),
            Rejected::NotNewer { current, offered } => ApplyError::NotNewer { current, offered },
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
    /// Serialises apply: version check, compile, persist and swap happen as one step.
    apply_lock: std::sync::Mutex<()>,
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
            apply_lock: std::sync::Mutex::new(()),
        }
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
        let _guard = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.apply_locked(raw, true);
        match &result {
            Ok(_) => self.metrics.table_applies.inc(),
            Err(_) => self.metrics.table_rejections.inc(),
        }
        result
    }

    /// Load the persisted table at start, if there is one.
    pub fn load_state(&self) -> Result<Option<u64>, String> {
        let path = self.state_dir.join(STATE_FILE);
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let _guard = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        match self.apply_locked(Bytes::from(raw), false) {
            Ok(s) => Ok(Some(s.version)),
            Err(ApplyError::Invalid(problems)) => Err(format!(
                "{}: stored table is invalid: {}",
                path.display(),
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Err(e) => Err(format!("{}: {e:?}", path.display())),
        }
    }

    fn apply_locked(&self, raw: Bytes, persist: bool) -> Result<Arc<Snapshot>, ApplyError> {
        let started = Instant::now();
        // Hash the document and stage its file on the other core while this one parses,
        // validates and compiles; the file only replaces the stored table once all passed.
        let (side, built) = std::thread::scope(|scope| {
            let side = scope.spawn(|| {
                let digest = realmgate_table::digest(&raw);
                let staged = persist.then(|| stage(&self.state_dir, STATE_FILE, &raw));
                (digest, staged)
            });
            let current = self.current.load();
            let deps = BuildDeps {
                pools: &self.pools,
                limiters: &self.limiters,
                metrics: &self.metrics,
                realms: &self.realms,
            };
            let built = parse_newer(&raw, current.as_deref(), crate::auth::unix_now(), &deps);
            (side.join(), built)
        });
        let (digest, staged) =
            side.map_err(|_| ApplyError::Persist("staging thread panicked".into()))?;
        let mut snapshot = match built {
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
                .and_then(|tmp| commit(&self.state_dir, &tmp, STATE_FILE))
                .map_err(ApplyError::Persist)?;
        }
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
        self.metrics.certificate_expiry(
            snapshot
                .certs
                .sorted()
                .into_iter()
                .map(|c| (&*c.name, c.cert.not_after)),
        );
        log::info!(
            "table version {} in force: {} tenants, {} pools, {} API keys, {} certificates, {} bytes, built in {:?}",
            snapshot.version,
            snapshot.tenants.len(),
            snapshot.pools.len(),
            snapshot.keys.len(),
            snapshot.certs.len(),
            snapshot.raw.as_ref().map_or(0, Bytes::len),
            started.elapsed()
        );
        // Freeing a large table takes a while: do it off the push path. Requests still
        // holding it keep it alive until they finish either way.
        if let Some(previous) = previous {
            let _ = std::thread::Builder::new()
                .name("table-drop".into())
                .spawn(move || drop(previous));
        }
        Ok(snapshot)
    }
}

/// The handshake's certificate source: the snapshot in force, read without a reference count.
impl CertSource for Store {
    fn lookup(&self, name: &str) -> Option<Arc<CheckedCert>> {
        self.with_current(|s| s.and_then(|s| s.certs.lookup(name)).cloned())
    }
}

#[cfg(test)]
mod tests;

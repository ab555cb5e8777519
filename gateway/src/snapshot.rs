//! The live routing table: a compiled, pre-indexed snapshot behind an `ArcSwap`. Tables are
//! parsed, validated and compiled off the hot path, persisted, then swapped in atomically; a
//! request holds one snapshot from its first filter to its last.

use crate::auth::api_key::Keys;
use crate::auth::{Policy, RealmRt, Realms};
use crate::limits::{Limiters, TenantLimits};
use crate::metrics::{Metrics, TenantCounters};
use crate::route::{Namespace, PoolIdx, Route, Routes};
use crate::shell::ShellRt;
use crate::tenant::{HostIndex, TenantIdx};
use crate::upstream::{Pool, PoolCache};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderValue;
use realmgate_table::{CheckedTable, Problem};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// File name of the persisted table inside the state directory.
pub const STATE_FILE: &str = "table.json";

/// One compiled table.
pub struct Snapshot {
    pub version: u64,
    pub digest: String,
    /// The document as received, served by `GET /v1/table?full=1`.
    pub raw: Bytes,
    pub hosts: HostIndex,
    pub tenants: Box<[TenantRt]>,
    pub pools: Box<[Arc<Pool>]>,
    /// API keys by digest.
    pub keys: Keys,
}

/// A tenant as the request path needs it.
pub struct TenantRt {
    pub id: Box<str>,
    /// `x-realmgate-tenant` value, built once.
    pub header: HeaderValue,
    pub routes: Routes,
    pub suspended: bool,
    pub counters: Arc<TenantCounters>,
    pub limits: TenantLimits,
    /// The tenant's identity realm, shared with other table versions of the same settings.
    pub realm: Option<Arc<RealmRt>>,
    /// The app shell, when enabled: the only shell state a request of another tenant touches
    /// is this `None`.
    pub shell: Option<Box<ShellRt>>,
}

impl Snapshot {
    pub fn tenant(&self, idx: TenantIdx) -> &TenantRt {
        &self.tenants[idx as usize]
    }

    pub fn pool(&self, idx: PoolIdx) -> &Arc<Pool> {
        &self.pools[idx as usize]
    }
}

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
            let built = self.parse_and_compile(&raw);
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
                return Err(e);
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
        log::info!(
            "table version {} in force: {} tenants, {} pools, {} API keys, {} bytes, built in {:?}",
            snapshot.version,
            snapshot.tenants.len(),
            snapshot.pools.len(),
            snapshot.keys.len(),
            snapshot.raw.len(),
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

    fn parse_and_compile(&self, raw: &Bytes) -> Result<Snapshot, ApplyError> {
        let checked = realmgate_table::parse(raw).map_err(ApplyError::Invalid)?;
        if let Some(cur) = self.current.load().as_ref() {
            if checked.table.version <= cur.version {
                return Err(ApplyError::NotNewer {
                    current: cur.version,
                    offered: checked.table.version,
                });
            }
        }
        self.compile(checked, raw.clone())
    }

    fn compile(&self, checked: CheckedTable, raw: Bytes) -> Result<Snapshot, ApplyError> {
        let CheckedTable {
            table,
            hosts,
            key_expiry,
        } = checked;
        let pool_index: HashMap<&str, PoolIdx> = table
            .upstreams
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i as PoolIdx))
            .collect();
        let pools = self
            .pools
            .resolve(table.upstreams.iter())
            .map_err(|e| ApplyError::Invalid(vec![Problem::new("upstreams", e)]))?;
        let labels = self
            .metrics
            .tenant_labels(table.tenants.iter().map(|t| t.id.as_str()));
        let realms = self
            .realms
            .compile(table.tenants.iter().map(|t| t.realm.as_ref()));
        // Consume the parsed table: ids and prefixes move into the snapshot, not copied.
        let version = table.version;
        let limiters = &self.limiters;
        let tenants: Box<[TenantRt]> = table
            .tenants
            .into_iter()
            .zip(labels)
            .zip(realms)
            .map(|((t, counters), realm)| {
                let shell = ShellRt::compile(&t, &pool_index);
                let routes = t
                    .routes
                    .into_iter()
                    .map(|r| Route {
                        // Validation guarantees the upstream exists.
                        pool: pool_index.get(r.upstream.as_str()).copied().unwrap_or(0),
                        policy: Policy::from_route(&r),
                        prefix: r.prefix.into_boxed_str(),
                        namespace: r.namespace.map(|ns| Namespace {
                            // Namespaces are validated to [@a-z0-9._-].
                            header: HeaderValue::from_str(&ns)
                                .unwrap_or(HeaderValue::from_static("")),
                            name: ns.into_boxed_str(),
                        }),
                    })
                    .collect();
                TenantRt {
                    limits: TenantLimits::compile(limiters, &t.id, &t.rate_limits),
                    // Tenant ids are validated to [a-z0-9-], always a valid header value.
                    header: HeaderValue::from_str(&t.id).unwrap_or(HeaderValue::from_static("")),
                    id: t.id.into_boxed_str(),
                    routes: Routes::new(routes),
                    suspended: !t.status.is_active(),
                    counters,
                    realm,
                    shell,
                }
            })
            .collect();
        let tenant_index: HashMap<&str, TenantIdx> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (&*t.id, i as TenantIdx))
            .collect();
        let keys = Keys::build(table.api_keys, &key_expiry, limiters, |id| {
            tenant_index.get(id).copied()
        });
        drop(tenant_index);
        Ok(Snapshot {
            version,
            digest: String::new(),
            raw,
            hosts: HostIndex::build(hosts),
            tenants,
            pools: pools.into_boxed_slice(),
            keys,
        })
    }
}

/// First half of an atomic replace: write `.<name>.tmp` in `dir` (mode 0600) and fsync it.
fn stage(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| err("create", e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    // Owner-only: a table may hold login client secrets (`realm.client_secret`). A leftover
    // temp file would keep its mode, so it goes first.
    let _ = std::fs::remove_file(&tmp);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
    }
    .map_err(|e| err("create temp file in", e))?;
    f.write_all(bytes)
        .map_err(|e| err("write temp file in", e))?;
    f.sync_all().map_err(|e| err("fsync temp file in", e))?;
    Ok(tmp)
}

/// Second half: rename over `name` and fsync the directory, so a crash leaves either the old
/// or the new file, never a torn one.
fn commit(dir: &Path, tmp: &Path, name: &str) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::rename(tmp, dir.join(name)).map_err(|e| err("rename in", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("fsync", e))
}

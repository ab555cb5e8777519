//! The kept history of table changes, realmctl's side of incremental tables: each compile
//! records only its own step (the change from the version before), a bounded run of steps is
//! kept, and the delta from any version still in the run is composed when a gateway serving it
//! first needs it — once per base and version, however many gateways wait on it.
//!
//! A composed delta holds, for each part, the part as the newest step in its range wrote it:
//! the part byte for byte as the full table of the target version holds it (`compile::delta`).

use bytes::Bytes;
use realmgate_table::assertion::Assertion;
use realmgate_table::delta::{AssertionChange, Delta};
use realmgate_table::{AcmeChallenge, ApiKey, Certificate, Tenant, Upstream};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A delta ready to push: the document for `PATCH /v1/table` on a gateway serving `base`.
#[derive(Debug, Clone)]
pub struct DeltaBody {
    pub base: u64,
    pub body: Bytes,
    /// Parts upserted or deleted.
    pub parts: usize,
}

/// How much history is kept; a gateway serving a version older than the oldest step kept (or
/// a version realmctl never compiled) gets the full table.
///
/// - `steps`: 16 384 versions. With the 1 ms debounce a busy registry makes a version per
///   change, so at 1 000 changes/s that is 16 s of changes; at the 300 changes/s measured at a
///   million tenants, 55 s — longer than a full push of a million-tenant table takes (the time
///   a gateway that was sent the full table falls behind by). A one-tenant step costs about a
///   kilobyte here (the tenant, its map entry, the step): 16 MiB at most for small steps.
/// - `bytes`: 64 MiB of steps as they travel (each step's delta document, a fair measure of the
///   parts it holds). A bulk change (a million tenants suspended at once: ~180 MiB) evicts
///   everything older, itself included: its own delta still goes to gateways at the version
///   before it, and one further behind takes the full table (which that change nearly is).
/// - `parts`: 262 144 parts in all, so composing the longest delta kept stays a fraction of a
///   second (on a blocking thread) and its document well under what the full table of a
///   million tenants costs a gateway to apply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub steps: usize,
    pub bytes: usize,
    pub parts: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            steps: 16_384,
            bytes: 64 << 20,
            parts: 262_144,
        }
    }
}

/// A part of the table by its identity (the order is the order parts are written in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PartId {
    Upstream(String),
    Tenant(String),
    ApiKey(String),
    Certificate(String),
    Challenge(String),
}

pub(super) enum Part {
    Upstream(Upstream),
    Tenant(Box<Tenant>),
    ApiKey(ApiKey),
    Certificate(Certificate),
    Challenge(AcmeChallenge),
}

#[derive(Clone)]
pub(super) enum Change {
    /// The part as it is now; `existed`: the base table held it (a replacement).
    Put {
        existed: bool,
        part: Arc<Part>,
    },
    Delete,
}

/// The assertion section became `set`; `existed`: the base table had one (a gateway refuses
/// to remove a section it does not have).
#[derive(Clone)]
pub(super) struct SectionChange {
    pub existed: bool,
    pub set: Option<Assertion>,
}

/// The change from one version to the next.
pub(super) struct Step {
    pub base: u64,
    pub version: u64,
    pub parts: BTreeMap<PartId, Change>,
    /// `Some`: the assertion section changed.
    pub assertion: Option<SectionChange>,
    /// The size of its delta document: what it counts for against [`Limits::bytes`].
    pub bytes: usize,
}

impl Step {
    /// Its parts, the assertion section counting as one.
    fn size(&self) -> usize {
        self.parts.len() + usize::from(self.assertion.is_some())
    }

    /// The step alone as a delta (without its state digest).
    pub fn delta(&self) -> Delta {
        let assertion = self.assertion.as_ref().map(|a| a.set.clone());
        wire(self.base, self.version, &self.parts, assertion)
    }
}

/// The steps kept, oldest first, each one's base the version before it; shared by the
/// compiler (which adds and evicts) and every compiled version (which composes from it).
pub(super) struct History {
    steps: VecDeque<Arc<Step>>,
    parts: usize,
    bytes: usize,
    limits: Limits,
}

impl History {
    pub fn new(limits: Limits) -> History {
        History {
            steps: VecDeque::new(),
            parts: 0,
            bytes: 0,
            limits,
        }
    }

    /// Add the newest step and evict the oldest ones past the limits; returns what was
    /// evicted, for the caller to drop outside the lock (a bulk step takes a while to free).
    #[must_use]
    pub fn push(&mut self, step: Step) -> Vec<Arc<Step>> {
        let mut evicted = Vec::new();
        if self.steps.back().is_some_and(|s| s.version != step.base) {
            // Not the next version (cannot happen: the compiler clears first): start over.
            evicted = self.clear();
        }
        self.parts += step.size();
        self.bytes += step.bytes;
        self.steps.push_back(Arc::new(step));
        while self.steps.len() > self.limits.steps
            || self.parts > self.limits.parts
            || self.bytes > self.limits.bytes
        {
            let Some(old) = self.steps.pop_front() else {
                break;
            };
            self.parts -= old.size();
            self.bytes -= old.bytes;
            evicted.push(old);
        }
        evicted
    }

    /// Forget every step; returns them, as [`History::push`] does.
    #[must_use]
    pub fn clear(&mut self) -> Vec<Arc<Step>> {
        (self.parts, self.bytes) = (0, 0);
        self.steps.drain(..).collect()
    }

    /// Where the steps from `base` to `version` lie; `None` if the history no longer (or
    /// never) held them.
    fn span(&self, base: u64, version: u64) -> Option<std::ops::RangeInclusive<usize>> {
        let first = self.steps.binary_search_by_key(&base, |s| s.base).ok()?;
        let last = self
            .steps
            .binary_search_by_key(&version, |s| s.version)
            .ok()?;
        (first <= last).then_some(first..=last)
    }

    /// The steps from `base` to `version`.
    fn range(&self, base: u64, version: u64) -> Option<Vec<Arc<Step>>> {
        Some(
            self.steps
                .range(self.span(base, version)?)
                .cloned()
                .collect(),
        )
    }

    /// How many parts the steps from `base` to `version` hold.
    fn parts(&self, base: u64, version: u64) -> Option<usize> {
        Some(
            self.steps
                .range(self.span(base, version)?)
                .map(|s| s.size())
                .sum(),
        )
    }

    /// The oldest base kept, and how many steps, parts and bytes are kept.
    #[cfg(test)]
    pub fn kept(&self) -> (Option<u64>, usize, usize, usize) {
        let oldest = self.steps.front().map(|s| s.base);
        (oldest, self.steps.len(), self.parts, self.bytes)
    }
}

/// Lock a mutex whose holder may have panicked: what it guards stays consistent (every
/// change to it is a single push or pop).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Composed deltas kept per version: a gateway is at one base at a time, and a few gateways
/// behind at once are at a few bases; an evicted one is composed again if asked for.
const CACHED: usize = 8;

/// A composition that reaches at most this many parts runs where it is asked for; a larger
/// one runs on a blocking thread.
pub const INLINE_PARTS: usize = 256;

type Cell = Arc<OnceLock<Option<DeltaBody>>>;

/// The deltas to one compiled version: from the version just before (written when it was
/// compiled), and from any base still in the history (composed on first use).
#[derive(Default)]
pub struct Deltas {
    version: u64,
    /// The table's state digest after the change, whatever the base.
    state: String,
    newest: Option<DeltaBody>,
    history: Option<Arc<Mutex<History>>>,
    cache: Mutex<VecDeque<(u64, Cell)>>,
    composed: AtomicUsize,
}

impl std::fmt::Debug for Deltas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deltas")
            .field("version", &self.version)
            .field("newest", &self.newest.as_ref().map(|d| d.base))
            .finish_non_exhaustive()
    }
}

impl Deltas {
    pub(super) fn new(
        version: u64,
        state: String,
        newest: DeltaBody,
        history: Arc<Mutex<History>>,
    ) -> Deltas {
        Deltas {
            version,
            state,
            newest: Some(newest),
            history: Some(history),
            ..Deltas::default()
        }
    }

    /// The delta from the version before alone (no history), for tests of the push.
    #[cfg(test)]
    pub fn only(version: u64, newest: DeltaBody) -> Deltas {
        Deltas {
            version,
            newest: Some(newest),
            ..Deltas::default()
        }
    }

    /// The delta from the version compiled just before this one, if there is one.
    pub fn first(&self) -> Option<&DeltaBody> {
        self.newest.as_ref()
    }

    /// How many deltas were composed for this version (a cached one counts once).
    pub fn composed(&self) -> usize {
        self.composed.load(Ordering::Relaxed)
    }

    /// The delta from `base` if it is ready (the newest one, or composed already): `None` if
    /// it must be composed (or `base` is not in the history).
    pub fn ready(&self, base: u64) -> Option<Option<DeltaBody>> {
        if let Some(d) = self.newest.as_ref().filter(|d| d.base == base) {
            return Some(Some(d.clone()));
        }
        let cache = lock(&self.cache);
        let (_, cell) = cache.iter().find(|(b, _)| *b == base)?;
        cell.get().cloned()
    }

    /// How many parts the delta from `base` composes, if `base` is in the history.
    pub fn parts_from(&self, base: u64) -> Option<usize> {
        let history = self.history.as_ref()?;
        lock(history).parts(base, self.version)
    }

    /// The delta from `base`, composed now if it was not yet: blocking (O(parts in the
    /// range)). `None`: `base` is not a version the history still holds (or the composed
    /// delta does not serialise, which would be a bug, logged): send the full table.
    pub fn from_base(&self, base: u64) -> Option<DeltaBody> {
        if let Some(ready) = self.ready(base) {
            return ready;
        }
        let history = self.history.as_ref()?;
        // Taken under the lock, composed after it: the compiler is not held up.
        let steps = lock(history).range(base, self.version)?;
        let cell = {
            let mut cache = lock(&self.cache);
            match cache.iter().find(|(b, _)| *b == base) {
                Some((_, cell)) => Arc::clone(cell),
                None => {
                    let cell = Cell::default();
                    cache.push_back((base, Arc::clone(&cell)));
                    if cache.len() > CACHED {
                        cache.pop_front();
                    }
                    cell
                }
            }
        };
        // Gateways on the same base wait here for the one composition.
        cell.get_or_init(|| {
            self.composed.fetch_add(1, Ordering::Relaxed);
            self.compose(&steps)
        })
        .clone()
    }

    fn compose(&self, steps: &[Arc<Step>]) -> Option<DeltaBody> {
        let base = steps.first()?.base;
        let mut delta = compose(steps);
        delta.state_digest.clone_from(&self.state);
        match body(delta) {
            Ok(d) => Some(d),
            Err(e) => {
                log::error!(
                    "the delta from table version {base} to {} does not serialise ({e}); sending the full table",
                    self.version
                );
                None
            }
        }
    }
}

/// A delta as it travels, with the count of its parts.
pub(super) fn body(delta: Delta) -> Result<DeltaBody, serde_json::Error> {
    Ok(DeltaBody {
        base: delta.base,
        parts: parts(&delta),
        body: Bytes::from(serde_json::to_vec(&delta)?),
    })
}

/// Successive steps as one delta: for each part the newest step's word on it, and whether
/// the base held it decides what a part both created and deleted in the range becomes (a
/// delete if the base held it, nothing otherwise). The assertion section likewise: the
/// newest change to it wins, and removing one the base did not have is nothing.
fn compose(steps: &[Arc<Step>]) -> Delta {
    let mut parts: BTreeMap<PartId, Change> = BTreeMap::new();
    let mut assertion: Option<SectionChange> = None;
    for step in steps {
        for (id, change) in &step.parts {
            let merged = match (parts.remove(id), change) {
                (None, c) => Some(c.clone()),
                (Some(Change::Put { existed, .. }), Change::Put { part, .. }) => {
                    Some(Change::Put {
                        existed,
                        part: Arc::clone(part),
                    })
                }
                // Added after the base and gone again: the base never held it.
                (Some(Change::Put { existed: false, .. }), Change::Delete) => None,
                (Some(Change::Put { existed: true, .. } | Change::Delete), Change::Delete) => {
                    Some(Change::Delete)
                }
                (Some(Change::Delete), Change::Put { part, .. }) => Some(Change::Put {
                    existed: true,
                    part: Arc::clone(part),
                }),
            };
            if let Some(m) = merged {
                parts.insert(id.clone(), m);
            }
        }
        if let Some(a) = &step.assertion {
            assertion = Some(SectionChange {
                existed: assertion.map_or(a.existed, |first| first.existed),
                set: a.set.clone(),
            });
        }
    }
    let assertion = assertion
        .filter(|a| a.existed || a.set.is_some())
        .map(|a| a.set);
    let (base, version) = match (steps.first(), steps.last()) {
        (Some(first), Some(last)) => (first.base, last.version),
        _ => (0, 0),
    };
    wire(base, version, &parts, assertion)
}

fn parts(d: &Delta) -> usize {
    d.upstreams.len()
        + d.delete_upstreams.len()
        + d.tenants.len()
        + d.delete_tenants.len()
        + d.api_keys.len()
        + d.delete_api_keys.len()
        + d.certificates.len()
        + d.delete_certificates.len()
        + d.acme_challenges.len()
        + d.delete_acme_challenges.len()
        + usize::from(d.assertion.is_some())
}

/// The delta as it travels. `state_digest` is left empty here: it is the table's digest
/// after the change, the same whatever the base (the caller sets it).
fn wire(
    base: u64,
    version: u64,
    parts: &BTreeMap<PartId, Change>,
    assertion: Option<Option<Assertion>>,
) -> Delta {
    let mut d = Delta {
        base,
        version,
        assertion: assertion.map(|set| AssertionChange { set }),
        ..Delta::default()
    };
    for (id, change) in parts {
        match (id, change) {
            (id, Change::Put { part, .. }) => match (id, &**part) {
                (PartId::Upstream(n), Part::Upstream(u)) => {
                    d.upstreams.insert(n.clone(), u.clone());
                }
                (_, Part::Tenant(t)) => d.tenants.push((**t).clone()),
                (_, Part::ApiKey(k)) => d.api_keys.push(k.clone()),
                (_, Part::Certificate(c)) => d.certificates.push(c.clone()),
                (_, Part::Challenge(c)) => d.acme_challenges.push(c.clone()),
                (_, Part::Upstream(_)) => {}
            },
            (PartId::Upstream(n), Change::Delete) => d.delete_upstreams.push(n.clone()),
            (PartId::Tenant(n), Change::Delete) => d.delete_tenants.push(n.clone()),
            (PartId::ApiKey(n), Change::Delete) => d.delete_api_keys.push(n.clone()),
            (PartId::Certificate(n), Change::Delete) => d.delete_certificates.push(n.clone()),
            (PartId::Challenge(n), Change::Delete) => d.delete_acme_challenges.push(n.clone()),
        }
    }
    d
}

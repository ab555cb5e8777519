//! The full table document of a compiled version, built only when something needs it (a
//! gateway too far behind for a delta, a fallback, a pull without a base, an operator's GET)
//! and then kept with its version. A version reached by deltas keeps the table as the
//! gateways check it (`realmgate_table::Model`, a persistent structure: the copy is O(1)),
//! and writes it out on first use: the same bytes as the full compile of that version.

use bytes::Bytes;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The document `PUT /v1/table` carries, and its digest.
#[derive(Debug, Clone)]
pub struct FullTable {
    pub body: Bytes,
    /// `sha256:<hex>` of `body`, as the gateways report it.
    pub digest: String,
}

impl FullTable {
    pub fn new(body: Bytes) -> FullTable {
        FullTable {
            digest: realmgate_table::digest(&body),
            body,
        }
    }
}

/// Why the full table could not be written out (a bug: the model holds only parts that
/// serialised once already).
#[derive(Debug, thiserror::Error)]
#[error("the full table of version {version} cannot be written: {source}")]
pub struct FullError {
    pub version: u64,
    source: serde_json::Error,
}

/// A version's full table: built, or the model to build it from.
pub struct Full {
    built: OnceLock<FullTable>,
    /// Taken when the table is built (one build at a time: a million tenants take a while,
    /// and every gateway that needs it waits for the one build).
    source: Mutex<Option<realmgate_table::Model>>,
}

impl std::fmt::Debug for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Full")
            .field("built", &self.built.get().map(|t| t.body.len()))
            .finish_non_exhaustive()
    }
}

impl Full {
    /// A table already written out (the first compile, or a fallback from the deltas).
    pub fn ready(body: Bytes) -> Full {
        Full {
            built: OnceLock::from(FullTable::new(body)),
            source: Mutex::new(None),
        }
    }

    /// A table to write out from `model` when first asked for.
    pub fn from_model(model: realmgate_table::Model) -> Full {
        Full {
            built: OnceLock::new(),
            source: Mutex::new(Some(model)),
        }
    }

    /// The table if it was built already.
    pub fn get(&self) -> Option<&FullTable> {
        self.built.get()
    }

    /// The table, built now if it was not: blocking (O(table)), so call it off the async
    /// runtime's threads unless [`Full::get`] has it.
    pub fn build(&self, version: u64) -> Result<&FullTable, FullError> {
        if let Some(t) = self.built.get() {
            return Ok(t);
        }
        let mut source = self.source.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = self.built.get() {
            // Built by the caller we waited for.
            return Ok(t);
        }
        let model = source.as_ref().ok_or(FullError {
            version,
            source: serde::ser::Error::custom("no model to build it from"),
        })?;
        let table = model.to_table();
        // Roughly 100 bytes per tenant; one allocation for typical tables.
        let mut buf = Vec::with_capacity(256 + table.tenants.len() * 128);
        serde_json::to_writer(&mut buf, &table).map_err(|source| FullError { version, source })?;
        drop(table);
        *source = None;
        Ok(self.built.get_or_init(|| FullTable::new(Bytes::from(buf))))
    }
}

//! Why a table or delta was not applied ([`ApplyError`], each with its HTTP status), and
//! the one line a refusal is logged as.

use super::build::Rejected;
use realmgate_table::Problem;

/// Why a table was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// 422: every problem found.
    Invalid(Vec<Problem>),
    /// 409: not newer than what is served.
    NotNewer { current: u64, offered: u64 },
    /// 409: a delta for another base than the version in force (0: no table yet).
    WrongBase { current: u64, base: u64 },
    /// 409: applied to the table in force, the delta gives another state than realmctl's.
    DigestMismatch { expected: String, computed: String },
    /// 409: the journal is at its hard bound (compaction is failing): send a full table.
    JournalFull { bytes: u64 },
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

/// One line for a refusal, for logs (never a secret: problems name paths and rules).
pub fn describe(e: &ApplyError) -> String {
    match e {
        ApplyError::Invalid(p) => p
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        ApplyError::NotNewer { current, offered } => {
            format!("version {offered} is not newer than {current}")
        }
        ApplyError::WrongBase { current, base } => {
            format!("made for version {base}, but version {current} is in force")
        }
        ApplyError::DigestMismatch { expected, computed } => {
            format!("gives state {computed}, not {expected}")
        }
        ApplyError::JournalFull { bytes } => {
            format!("the journal holds {bytes} bytes, its bound: a full table is needed")
        }
        ApplyError::Persist(e) => e.clone(),
    }
}

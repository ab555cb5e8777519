//! What validation reports: one thing wrong, where (a JSON path) and what.

use std::fmt;

/// One thing wrong with a table: where (a JSON path like `tenants[1].hosts[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

impl Problem {
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            at: at.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from a containing document: `hosts[0]` under `tenants[2]` is
    /// `tenants[2].hosts[0]`.
    pub fn under(mut self, prefix: &str) -> Self {
        self.at = if self.at.is_empty() {
            prefix.to_owned()
        } else if prefix.is_empty() {
            self.at
        } else {
            format!("{prefix}.{}", self.at)
        };
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

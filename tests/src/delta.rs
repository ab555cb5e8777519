//! Deltas for the gateway's `PATCH /v1/table`, built against a table the test keeps: each
//! [`Deltas::delta`] names its base, upserts and deletions, and the state digest the table
//! will have (computed by the contract crate from the table after the change), and moves the
//! kept table on, so a test can push a long chain and know what each version holds.

use realmgate_table::delta::Delta;
use realmgate_table::{Model, Tenant};
use serde_json::Value;

/// The table a chain of deltas has reached, as the contract's model (so each next delta's
/// state digest costs the size of the change, as it does at realmctl).
#[derive(Debug, Clone)]
pub struct Deltas {
    model: Model,
}

/// One change to make in the next delta.
#[derive(Debug, Clone)]
pub enum Change {
    Upsert(Box<Tenant>),
    Delete(&'static str),
    DeleteOwned(String),
}

impl Deltas {
    /// Start from a full table as pushed (the JSON the `Table` builder makes).
    pub fn from_full(table: &Value) -> Deltas {
        let bytes = serde_json::to_vec(table).expect("table JSON");
        let checked = realmgate_table::parse(&bytes).expect("a valid full table");
        Deltas {
            model: Model::from_checked(&checked),
        }
    }

    pub fn version(&self) -> u64 {
        self.model.version()
    }

    /// The kept table's state digest (what the gateway reports as `state_digest`).
    pub fn state_digest(&self) -> String {
        self.model.state_digest()
    }

    /// The full table the chain has reached, as a document.
    pub fn full(&self) -> Value {
        serde_json::to_value(self.model.to_table()).expect("table JSON")
    }

    /// The delta from the kept table to the next version with `changes`, and the kept table
    /// moved on (as if the gateway accepted it). A delta the contract refuses goes out with
    /// an empty state digest and leaves the kept table as it was.
    pub fn delta(&mut self, changes: &[Change]) -> Value {
        let base = self.model.version();
        let mut d = Delta {
            base,
            version: base + 1,
            ..Delta::default()
        };
        for c in changes {
            match c {
                Change::Upsert(t) => d.tenants.push((**t).clone()),
                Change::Delete(id) => d.delete_tenants.push((*id).to_owned()),
                Change::DeleteOwned(id) => d.delete_tenants.push(id.clone()),
            }
        }
        if let Ok((checked, state)) = self.model.preview(&d) {
            self.model.apply(&checked);
            d.state_digest = state;
        }
        serde_json::to_value(&d).expect("delta JSON")
    }

    /// Like [`Deltas::delta`], leaving the kept table as it was (for deltas meant to be
    /// refused).
    pub fn peek(&self, changes: &[Change]) -> Value {
        self.clone().delta(changes)
    }
}

/// A public tenant with these hosts, every path to `upstream`.
pub fn tenant(id: &str, hosts: &[&str], upstream: &str) -> Box<Tenant> {
    let mut t = Tenant::test(id);
    for h in hosts {
        t = t.host(h);
    }
    Box::new(t.route("/", upstream, "public"))
}

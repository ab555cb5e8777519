//! Deltas for the gateway's `PATCH /v1/table`, built against a table the test keeps: each
//! [`Deltas::delta`] names its base, upserts and deletions, and the state digest the table
//! will have (computed by the contract crate from the table after the change), and moves the
//! kept table on, so a test can push a long chain and know what each version holds.

use realmgate_table::delta::Delta;
use realmgate_table::{Table, Tenant};
use serde_json::Value;

/// The table a chain of deltas has reached.
#[derive(Debug, Clone)]
pub struct Deltas {
    table: Table,
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
        Deltas {
            table: serde_json::from_value(table.clone()).expect("a full table"),
        }
    }

    pub fn version(&self) -> u64 {
        self.table.version
    }

    /// The kept table's state digest (what the gateway reports as `state_digest`).
    pub fn state_digest(&self) -> String {
        realmgate_table::model::state_digest(&self.table)
    }

    /// The full table the chain has reached, as a document.
    pub fn full(&self) -> Value {
        serde_json::to_value(&self.table).expect("table JSON")
    }

    /// The delta from the kept table to the next version with `changes`, and the kept table
    /// moved on (as if the gateway accepted it).
    pub fn delta(&mut self, changes: &[Change]) -> Value {
        let base = self.table.version;
        let mut d = Delta {
            base,
            version: base + 1,
            ..Delta::default()
        };
        for c in changes {
            match c {
                Change::Upsert(t) => {
                    self.table.tenants.retain(|x| x.id != t.id);
                    self.table.tenants.push((**t).clone());
                    d.tenants.push((**t).clone());
                }
                Change::Delete(id) => self.delete(&mut d, id),
                Change::DeleteOwned(id) => self.delete(&mut d, id),
            }
        }
        self.table.version = d.version;
        d.state_digest = self.state_digest();
        serde_json::to_value(&d).expect("delta JSON")
    }

    /// Like [`Deltas::delta`], leaving the kept table as it was (for deltas meant to be
    /// refused).
    pub fn peek(&self, changes: &[Change]) -> Value {
        self.clone().delta(changes)
    }

    fn delete(&mut self, d: &mut Delta, id: &str) {
        self.table.tenants.retain(|x| x.id != id);
        d.delete_tenants.push(id.to_owned());
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

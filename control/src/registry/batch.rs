//! Where a registry write runs: in a transaction of its own, or — while a group commit is open
//! (`service::batch`) — in a savepoint of the transaction the group shares, so one failing
//! change is undone alone and the rest commit together with one fsync.

use super::{Registry, RegistryError};
use libsql::{Connection, Transaction};
use std::future::Future;

/// The transaction a group of changes shares.
pub(super) struct OpenBatch {
    tx: Transaction,
    /// Why the transaction can no longer be committed (a savepoint that could not be undone):
    /// the group then fails as a whole.
    broken: std::sync::OnceLock<String>,
}

impl Registry {
    /// Open a transaction that the following writes share, each in a savepoint, until
    /// [`Registry::commit_batch`] or [`Registry::rollback_batch`]. Fenced like a write.
    pub async fn begin_batch(&mut self) -> Result<(), RegistryError> {
        if self.batch.is_some() {
            return Err(RegistryError::Batch("a batch is already open".into()));
        }
        self.fenced()?;
        let tx = self.conn.transaction().await?;
        self.batch = Some(OpenBatch {
            tx,
            broken: std::sync::OnceLock::new(),
        });
        Ok(())
    }

    /// Whether writes now go into a shared transaction.
    pub fn batch_open(&self) -> bool {
        self.batch.is_some()
    }

    /// Commit the shared transaction: every write since [`Registry::begin_batch`], in one
    /// commit. The fence is checked just before. On any failure nothing of the batch stays.
    pub async fn commit_batch(&mut self) -> Result<(), RegistryError> {
        let Some(open) = self.batch.take() else {
            return Ok(());
        };
        let ready = match open.broken.get() {
            Some(why) => Err(RegistryError::Batch(why.clone())),
            // The Lease may have been lost while the batch was written.
            None => self.fenced(),
        };
        if let Err(e) = ready {
            if let Err(rb) = open.tx.rollback().await {
                log::error!("registry: rollback of a batch failed: {rb}");
            }
            return Err(e);
        }
        if let Err(e) = open.tx.commit().await {
            // A failed COMMIT may leave the transaction open (a full disk): end it.
            if !self.conn.is_autocommit() {
                if let Err(rb) = self.conn.execute("ROLLBACK", ()).await {
                    log::error!("registry: rollback after a failed commit failed: {rb}");
                }
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Undo every write of the open batch, if one is open (or of a transaction an
    /// interrupted commit left open).
    pub async fn rollback_batch(&mut self) {
        let undone = match self.batch.take() {
            Some(open) => open.tx.rollback().await,
            None if !self.conn.is_autocommit() => self.conn.execute("ROLLBACK", ()).await.map(drop),
            None => Ok(()),
        };
        if let Err(rb) = undone {
            log::error!("registry: rollback of a batch failed: {rb}");
        }
    }

    /// Run `body` in a transaction after bumping the table version; commit both or neither.
    /// `body` gets a handle on the same connection, inside the open transaction. In an open
    /// batch, the transaction is a savepoint of the batch's.
    pub(super) async fn write<F, Fut>(&self, body: F) -> Result<u64, RegistryError>
    where
        F: FnOnce(Connection, u64) -> Fut,
        Fut: Future<Output = Result<(), libsql::Error>>,
    {
        if self.batch.is_some() {
            return self
                .savepoint(|| async {
                    let version = bump_version(&self.conn).await?;
                    body(self.conn.clone(), version).await?;
                    Ok::<_, libsql::Error>(version)
                })
                .await;
        }
        self.fenced()?;
        let tx = self.conn.transaction().await?;
        let result = async {
            let version = bump_version(&tx).await?;
            body(self.conn.clone(), version).await?;
            Ok::<_, libsql::Error>(version)
        }
        .await
        .map_err(RegistryError::from)
        // Again just before commit: the Lease may have been lost while the body ran.
        .and_then(|version| self.fenced().map(|()| version));
        match result {
            Ok(version) => {
                tx.commit().await?;
                Ok(version)
            }
            Err(e) => {
                if let Err(rb) = tx.rollback().await {
                    log::error!("registry: rollback failed: {rb}");
                }
                Err(e)
            }
        }
    }

    /// Run `body` in a savepoint of the open batch (fenced first): kept if it succeeds,
    /// undone alone if it fails. A savepoint that cannot be undone breaks the batch.
    pub(super) async fn savepoint<T, E, F, Fut>(&self, body: F) -> Result<T, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<RegistryError>,
    {
        self.fenced()?;
        self.conn.execute("SAVEPOINT change", ()).await?;
        let failure: RegistryError = match body().await {
            Ok(v) => match self.conn.execute("RELEASE change", ()).await {
                Ok(_) => return Ok(v),
                Err(e) => e.into(),
            },
            Err(e) => e.into(),
        };
        let undone = async {
            self.conn.execute("ROLLBACK TO change", ()).await?;
            self.conn.execute("RELEASE change", ()).await
        };
        if let Err(rb) = undone.await {
            log::error!(
                "registry: cannot undo a failed change in a batch ({rb}); failing the batch"
            );
            if let Some(open) = &self.batch {
                let _ = open
                    .broken
                    .set(format!("a failed change could not be undone: {rb}"));
            }
        }
        Err(failure)
    }
}

async fn bump_version(conn: &Connection) -> Result<u64, libsql::Error> {
    let mut rows = conn
        .query(
            "UPDATE meta SET value = value + 1 WHERE key = 'table_version' RETURNING value",
            (),
        )
        .await?;
    let row = rows
        .next()
        .await?
        .ok_or(libsql::Error::QueryReturnedNoRows)?;
    let version: i64 = row.get(0)?;
    Ok(u64::try_from(version).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::super::{Registry, RegistryError};
    use crate::leadership::{Fence, Leadership};
    use crate::model::fixtures;

    /// In a batch, a write that fails (a host already held) is undone alone: the writes
    /// around it commit, each with its own version, and the failed one took none.
    #[tokio::test]
    async fn a_failed_write_in_a_batch_is_undone_alone() {
        let mut reg = Registry::in_memory().await.expect("open");
        let v = reg.ensure_version().await.expect("version");
        let (_, a, _) = fixtures::tenant("a", &["shared.test"], "app");
        let (_, b, _) = fixtures::tenant("b", &["shared.test", "b.test"], "app");
        let (_, c, _) = fixtures::tenant("c", &["c.test"], "app");
        reg.begin_batch().await.expect("begin");
        assert_eq!(reg.save_tenant(&a).await.expect("a"), v + 1);
        assert!(reg.save_tenant(&b).await.is_err(), "primary key on host");
        assert_eq!(reg.save_tenant(&c).await.expect("c"), v + 2);
        reg.commit_batch().await.expect("commit");
        let model = reg.load().await.expect("load");
        let ids: Vec<&str> = model.tenants.keys().map(|t| t.as_str()).collect();
        assert_eq!((model.version, ids), (v + 2, vec!["a", "c"]));
    }

    /// The fence is checked just before COMMIT: a Lease lost after the writes undoes them all.
    #[tokio::test]
    async fn a_lease_lost_before_commit_undoes_the_batch() {
        let mut reg = Registry::in_memory().await.expect("open");
        let (fence, lease) = Fence::closed("starting");
        lease.set(Leadership::Leading);
        reg.set_fence(fence);
        let v = reg.ensure_version().await.expect("version");
        let (_, a, _) = fixtures::tenant("a", &["a.test"], "app");
        reg.begin_batch().await.expect("begin");
        reg.save_tenant(&a).await.expect("a");
        lease.set(Leadership::not_leading("lost"));
        let e = reg.commit_batch().await.expect_err("fenced");
        assert!(matches!(e, RegistryError::NotLeader(_)), "{e}");
        assert!(!reg.batch_open());
        let model = reg.load().await.expect("load");
        assert_eq!((model.version, model.tenants.len()), (v, 0));
    }
}

//! Committing a batch: the audit entries queued since the last commit are written first in it,
//! then its one COMMIT, then the model and the callers hear of it. [`commit_when_due`] is the
//! task of realmctl's own that commits what no caller is left to commit, at the batch's bound.

use super::{Batch, Finish, Staged, Writer, Written};
use crate::registry::RegistryError;
use crate::service::Core;
use std::sync::Weak;
use std::time::Instant;

/// Commit every batch (and every queued audit entry) by its due time (open + `max_open`),
/// whoever else is there: a change's callers may all have gone away, and an entry's call is
/// answered before its commit. Ends when the core is dropped.
pub async fn commit_when_due(core: Weak<Core>) {
    let Some(alarm) = core.upgrade().map(|c| c.registry.alarm.clone()) else {
        return;
    };
    loop {
        let due = match core.upgrade() {
            Some(c) => c.next_due(),
            None => return,
        };
        let Some(due) = due else {
            alarm.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            // Something new to wait for (an earlier due time, or the core gone).
            () = alarm.notified() => continue,
        }
        let Some(c) = core.upgrade() else { return };
        if c.next_due().is_none_or(|d| d > Instant::now()) {
            // Committed meanwhile (or something younger is open): wait again.
            continue;
        }
        // Counted among the waiters, so changes staged meanwhile leave their batch to it:
        // like every caller that takes the lock, it commits what is open.
        let mut w = c.registry.acquire().await;
        c.settle(&mut w).await;
        c.flush(&mut w).await;
    }
}

impl Core {
    /// The earliest time the open batch or a queued audit entry must be committed by.
    fn next_due(&self) -> Option<Instant> {
        let max_open = self.registry.limits().max_open;
        let opened = self.registry.batch_opened();
        match (opened, self.audits.since()) {
            (Some(a), Some(b)) => Some(a.min(b) + max_open),
            (a, b) => a.or(b).map(|t| t + max_open),
        }
    }

    /// Open a batch unless one is open.
    pub(super) async fn open_batch(&self, w: &mut Writer) -> Result<(), RegistryError> {
        if w.batch.is_some() {
            return Ok(());
        }
        w.registry.begin_batch().await?;
        w.opened += 1;
        let now = Instant::now();
        w.batch = Some(Batch {
            writing: false,
            opened_at: now,
            staged: Staged::default(),
            members: Vec::new(),
            audits: Written::default(),
        });
        self.registry.set_batch_opened(Some(now));
        self.registry.wake_committer();
        Ok(())
    }

    /// Write the queued audit entries, in order, into the open batch (opened for them if
    /// none is). Entries that cannot be written are logged and counted as lost.
    pub(super) async fn stage_audits(&self, w: &mut Writer) {
        let entries = self.audits.take();
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self.open_batch(w).await {
            self.audits.lost(&entries, &e);
            return;
        }
        let Some(b) = w.batch.as_mut() else { return };
        // Held by the batch while they are written: a write interrupted here is undone with
        // the batch, and its entries queued again (`settle`).
        let from = b.audits.entries.len();
        b.audits.entries.extend(entries);
        b.writing = true;
        let written = w.registry.append_audits(&b.audits.entries[from..]).await;
        let Some(b) = w.batch.as_mut() else { return };
        b.writing = false;
        match written {
            Ok(last_seq) => b.audits.last_seq = last_seq,
            Err(e) => {
                let failed: Vec<_> = b.audits.entries.drain(from..).collect();
                self.audits.lost(&failed, &e);
            }
        }
    }

    /// Commit the open batch, if any, with the audit entries queued before it, and answer
    /// its changes.
    pub(super) async fn flush(&self, w: &mut Writer) {
        self.stage_audits(w).await;
        let Some(batch) = w.batch.take() else { return };
        self.registry.set_batch_opened(None);
        if batch.members.is_empty() && batch.audits.entries.is_empty() {
            // Nothing was kept (every write failed, each undone alone).
            w.registry.rollback_batch().await;
            return;
        }
        w.unsure = true;
        w.committing = batch.audits;
        let outcome = w.registry.commit_batch().await;
        w.unsure = false;
        let audits = std::mem::take(&mut w.committing);
        if let Err(e) = &outcome {
            self.audits.lost(&audits.entries, e);
        }
        self.finish(batch.members, outcome);
    }

    /// Apply a committed batch to the model in order and answer each change; or answer each
    /// with the batch's failure, the model untouched. Then the compiler, the runner and the
    /// event stream hear of it.
    fn finish(&self, members: Vec<Finish>, outcome: Result<(), RegistryError>) {
        if let Err(e) = &outcome {
            log::error!(
                "registry: a batch of {} change(s) did not commit: {e}",
                members.len()
            );
            for f in members {
                f(Err(e));
            }
            return;
        }
        let mut effects = Vec::new();
        let (before, after) = {
            let mut m = self.write();
            let before = m.version;
            for f in members {
                effects.extend(f(Ok(&mut m)));
            }
            (before, m.version)
        };
        if after != before {
            self.changes.send_replace(after);
        }
        for e in effects {
            if e.event {
                let _ = self.events.send(e.tenant.clone());
            }
            self.wake(&e.tenant);
        }
    }

    /// After a change interrupted mid-write, undo its batch (failing the batch's changes,
    /// queueing its audit entries again). After an interrupted COMMIT, make the model the
    /// registry's again, and queue its audit entries again unless the registry has them.
    /// Tenants and keys the model held that the registry does not are marked written, so
    /// the next delta removes them (a fresh model records everything it holds as written).
    pub(super) async fn settle(&self, w: &mut Writer) {
        if let Some(batch) = w.batch.take_if(|b| b.writing) {
            self.registry.set_batch_opened(None);
            w.registry.rollback_batch().await;
            self.audits.requeue(batch.audits.entries);
            self.registry.wake_committer();
            let e = RegistryError::Batch("a change was interrupted while it was written".into());
            self.finish(batch.members, Err(e));
        }
        if !w.unsure {
            return;
        }
        w.registry.rollback_batch().await;
        let audits = std::mem::take(&mut w.committing);
        if !audits.entries.is_empty() {
            match w.registry.audit_page(None, 1).await {
                Ok(newest) if newest.first().is_some_and(|e| e.seq >= audits.last_seq) => {}
                Ok(_) => {
                    self.audits.requeue(audits.entries);
                    self.registry.wake_committer();
                }
                Err(e) => self.audits.lost(&audits.entries, &e),
            }
        }
        match w.registry.load().await {
            Ok(mut fresh) => {
                let mut m = self.write();
                for (id, r) in m.tenants.iter() {
                    if !fresh.tenants.contains_key(id) {
                        fresh.tenants.insert(id.clone(), r.clone());
                        fresh.tenants.remove(id);
                    }
                }
                *m = fresh;
                let version = m.version;
                drop(m);
                w.unsure = false;
                log::warn!(
                    "registry: a commit was interrupted; model reloaded at table version {version}"
                );
                self.changes.send_replace(version);
            }
            Err(e) => log::error!("registry: cannot reload after an interrupted commit: {e}"),
        }
    }
}

#[cfg(test)]
impl crate::service::Control {
    /// The audit log as committed, read without committing anything: `None` while a batch
    /// is open or entries are queued (the log would show what is not committed yet).
    pub(crate) async fn committed_audit_log(
        &self,
    ) -> Option<Vec<crate::registry::audit::AuditEntry>> {
        let w = self.core.registry.writer.lock().await;
        if w.batch.is_some() || self.core.audits.since().is_some() {
            return None;
        }
        w.registry.audit_page(None, 500).await.ok()
    }
}

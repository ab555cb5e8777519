//! The group commit's guarantees: changes queued behind a commit share the next one, each
//! with its own version; conflicts inside a batch are caught as between commits; one failing
//! change does not fail the others; a failed commit fails the whole batch and leaves the model
//! equal to the registry; nothing uncommitted is read, compiled or announced; a batch whose
//! callers all went away is committed at its bound; audit entries of an undone or interrupted
//! commit are written once.

use super::*;
use crate::leadership::{Fence, FenceControl, Leadership};
use crate::service::keys::Caller;
use crate::views::TenantView;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A call started on a control: the task it runs.
type Call<T> = Box<dyn FnOnce(Arc<Control>) -> JoinHandle<T>>;
type TenantCall = Call<Result<TenantView, ServiceError>>;

/// A control whose batches close only when nobody waits (no time or size bound in a test).
async fn control_with(fence: Option<Fence>) -> Arc<Control> {
    let mut reg = Registry::in_memory().await.expect("registry");
    if let Some(f) = fence {
        reg.set_fence(f);
    }
    let c = Arc::new(Control::new(reg).await.expect("control"));
    c.set_batch_limits(BatchLimits {
        max_changes: 10_000,
        max_open: Duration::from_secs(600),
    });
    c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("upstream");
    c
}

async fn control() -> Arc<Control> {
    control_with(None).await
}

fn tenant_body(id: &str, host: &str) -> Vec<u8> {
    format!(r#"{{"id": "{id}", "hosts": ["{host}"], "routes": [{{"prefix": "/", "upstream": "app", "auth": "public"}}]}}"#)
        .into_bytes()
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).expect("id")
}

/// Until `n` callers wait for the write lock.
async fn until_waiting(c: &Control, n: usize) {
    while c.core.registry.waiting() < n {
        tokio::task::yield_now().await;
    }
}

/// Batches opened so far.
async fn batches(c: &Control) -> u64 {
    c.core.registry.writer.lock().await.opened
}

/// Start `calls` while the write lock is held, so that they queue and, once it is released,
/// form one batch.
async fn queued<T: Send + 'static>(c: &Arc<Control>, calls: Vec<Call<T>>) -> Vec<JoinHandle<T>> {
    let held = c.lock_registry().await;
    let before = c.core.registry.waiting();
    let n = calls.len();
    let handles = calls.into_iter().map(|f| f(Arc::clone(c))).collect();
    until_waiting(c, before + n).await;
    drop(held);
    handles
}

fn create(tid: &'static str, host: &'static str) -> TenantCall {
    Box::new(move |c| tokio::spawn(async move { c.create_tenant(&tenant_body(tid, host)).await }))
}

/// The model as the registry would load it (what a fresh start would serve).
fn summary(m: &Model) -> String {
    let hosts: Vec<_> = m
        .tenants
        .values()
        .flat_map(|t| t.wire.hosts.iter())
        .filter_map(|h| HostPattern::parse(h).ok())
        .map(|h| (h.to_string(), m.host_owner(&h).cloned()))
        .collect();
    format!(
        "version {}\ntenants {:?}\nkeys {:?}\ntombstones {:?}\nhosts {hosts:?}",
        m.version, &*m.tenants, &*m.keys, m.tombstones
    )
}

async fn assert_model_is_registry(c: &Control) {
    let loaded = c.lock_registry().await.load().await.expect("load");
    assert_eq!(c.with_model(summary), summary(&loaded));
}

#[tokio::test]
async fn queued_changes_share_one_commit_with_distinct_monotonic_versions() {
    let c = control().await;
    let start = c.version();
    let opened = batches(&c).await;
    let calls = (0..24)
        .map(|i| {
            let tid: &'static str = Box::leak(format!("t{i:02}").into_boxed_str());
            let host: &'static str = Box::leak(format!("t{i:02}.test").into_boxed_str());
            create(tid, host)
        })
        .collect();
    let mut versions = Vec::new();
    for h in queued(&c, calls).await {
        versions.push(h.await.expect("join").expect("create").table_version);
    }
    assert_eq!(batches(&c).await, opened + 1, "one batch, one commit");
    assert_eq!(
        versions,
        ((start + 1)..=(start + 24)).collect::<Vec<_>>(),
        "each change its own version, in the order they were written"
    );
    assert_eq!(
        (c.version(), *c.subscribe().borrow()),
        (start + 24, start + 24)
    );
    assert_model_is_registry(&c).await;
}

#[tokio::test]
async fn a_conflicting_pair_in_one_batch_lets_exactly_one_through() {
    let c = control().await;
    let opened = batches(&c).await;
    let results: Vec<_> = {
        let calls = vec![
            create("one", "same.test"),
            create("two", "SAME.test."),
            create("dup", "a.dup.test"),
            create("dup", "b.dup.test"),
        ];
        let mut out = Vec::new();
        for h in queued(&c, calls).await {
            out.push(h.await.expect("join"));
        }
        out
    };
    assert_eq!(batches(&c).await, opened + 1);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(
            &results[1],
            Err(ServiceError::Conflict {
                code: "host_conflict",
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(
            &results[3],
            Err(ServiceError::Conflict {
                code: "tenant_exists",
                ..
            })
        ),
        "{:?}",
        results[3]
    );
    assert_eq!(
        c.with_model(|m| m
            .host_owner(&HostPattern::parse("same.test").expect("host"))
            .cloned()),
        Some(id("one"))
    );
    assert_model_is_registry(&c).await;
}

#[tokio::test]
async fn a_refused_change_in_a_batch_does_not_fail_the_others() {
    let c = control().await;
    let start = c.version();
    let bad: TenantCall = Box::new(|c| {
        tokio::spawn(async move {
            let body = br#"{"id": "bad", "hosts": ["bad.test"], "routes": [{"prefix": "/", "upstream": "nope", "auth": "public"}]}"#;
            c.create_tenant(body).await
        })
    });
    let missing: TenantCall = Box::new(|c| {
        tokio::spawn(async move {
            c.update_tenant(&id("ghost"), br#"{"status": "suspended"}"#, None)
                .await
        })
    });
    let calls = vec![create("a", "a.test"), bad, missing, create("b", "b.test")];
    let mut out = Vec::new();
    for h in queued(&c, calls).await {
        out.push(h.await.expect("join"));
    }
    assert!(
        matches!(&out[1], Err(ServiceError::Invalid(_))),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(&out[2], Err(ServiceError::NotFound { .. })),
        "{:?}",
        out[2]
    );
    let versions: Vec<u64> = [&out[0], &out[3]]
        .iter()
        .map(|r| r.as_ref().expect("kept").table_version)
        .collect();
    assert_eq!(versions, vec![start + 1, start + 2]);
    assert_model_is_registry(&c).await;
}

/// A batch is written and held just before its commit: `f` looks at the service then.
async fn while_uncommitted(
    c: &Arc<Control>,
    calls: Vec<TenantCall>,
    f: impl FnOnce(),
) -> Vec<Result<TenantView, ServiceError>> {
    let held = c.lock_registry().await;
    let n = calls.len();
    let handles: Vec<_> = calls.into_iter().map(|f| f(Arc::clone(c))).collect();
    until_waiting(c, n).await;
    // Queued last: takes the lock once every change is written, and holds the batch open.
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let closer = {
        let c = Arc::clone(c);
        tokio::spawn(async move {
            let mut w = c.core.registry.acquire().await;
            let _ = ready_tx.send(w.batch.as_ref().map_or(0, |b| b.members.len()));
            let _ = go_rx.await;
            c.core.flush(&mut w).await;
        })
    };
    until_waiting(c, n + 1).await;
    drop(held);
    assert_eq!(
        ready.await.expect("ready"),
        n,
        "every change is in the open batch"
    );
    f();
    let _ = go.send(());
    closer.await.expect("closer");
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

#[tokio::test]
async fn nothing_uncommitted_is_read_compiled_or_announced() {
    let c = control().await;
    let start = c.version();
    let changes = c.subscribe();
    let out = while_uncommitted(
        &c,
        vec![create("a", "a.test"), create("b", "b.test")],
        || {
            assert_eq!(c.version(), start);
            assert_eq!(*changes.borrow(), start, "the compiler is not woken");
            assert!(matches!(
                c.tenant(&id("a")),
                Err(ServiceError::NotFound { .. })
            ));
            let compiled = c.compile().expect("compile");
            assert_eq!((compiled.version, compiled.tenants), (start, 0));
        },
    )
    .await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(c.version(), start + 2);
    assert_eq!(c.compile().expect("compile").tenants, 2);
}

#[tokio::test]
async fn a_failed_commit_fails_the_whole_batch_and_the_model_stays_the_registry() {
    let (fence, lease): (Fence, FenceControl) = Fence::closed("starting");
    lease.set(Leadership::Leading);
    let c = control_with(Some(fence)).await;
    c.create_tenant(&tenant_body("old", "old.test"))
        .await
        .expect("create");
    let start = c.version();
    let before = c.with_model(summary);
    let out = while_uncommitted(
        &c,
        vec![create("a", "a.test"), create("b", "b.test")],
        || {
            // The Lease is lost between the writes and the commit.
            lease.set(Leadership::not_leading("lost"));
        },
    )
    .await;
    for r in &out {
        assert!(
            matches!(r, Err(ServiceError::Registry(RegistryError::NotLeader(_)))),
            "{r:?}"
        );
    }
    assert_eq!(c.with_model(summary), before, "the model is untouched");
    lease.set(Leadership::Leading);
    assert_model_is_registry(&c).await;
    // The next change carries on from the committed version.
    let t = c
        .create_tenant(&tenant_body("a", "a.test"))
        .await
        .expect("create again");
    assert_eq!(t.table_version, start + 1);
}

#[tokio::test]
async fn an_unbatched_operation_after_batched_ones_sees_them_committed() {
    let c = control().await;
    let start = c.version();
    let pool: TenantCall = Box::new(|c| {
        tokio::spawn(async move {
            c.put_upstream("other", br#"{"endpoints": ["127.0.0.1:9002"]}"#)
                .await?;
            let version = c.version();
            // Both tenants are committed when the pool's write runs.
            let loaded = c.lock_registry().await.load().await?;
            assert!(loaded.tenants.contains_key(&id("a")) && loaded.tenants.contains_key(&id("b")));
            c.tenant(&id("b")).map(|t| TenantView {
                table_version: version,
                ..t
            })
        })
    });
    let calls = vec![create("a", "a.test"), create("b", "b.test"), pool];
    let mut versions = Vec::new();
    for h in queued(&c, calls).await {
        versions.push(h.await.expect("join").expect("ok").table_version);
    }
    assert_eq!(versions, vec![start + 1, start + 2, start + 3]);
}

#[tokio::test]
async fn a_tenant_deleted_in_a_batch_takes_its_keys_with_it_for_the_changes_after() {
    let c = control().await;
    c.create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    let key = c
        .create_key(
            &Caller::Operator,
            br#"{"tenant": "acme", "namespaces": ["*"]}"#,
        )
        .await
        .expect("key");
    let held = c.lock_registry().await;
    let delete = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.delete_tenant(&id("acme"), None).await })
    };
    until_waiting(&c, 1).await;
    let revoke = {
        let (c, kid) = (Arc::clone(&c), key.view.id.clone());
        tokio::spawn(async move { c.revoke_key(&Caller::Operator, &kid).await })
    };
    let mint = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            c.create_key(
                &Caller::Operator,
                br#"{"tenant": "acme", "namespaces": ["*"]}"#,
            )
            .await
        })
    };
    until_waiting(&c, 3).await;
    drop(held);
    let deleted_at = delete.await.expect("join").expect("delete");
    let revoked = revoke.await.expect("join").expect("already revoked");
    assert_eq!(
        revoked.table_version, deleted_at,
        "revoked by the deletion, no version of its own"
    );
    let refused = mint.await.expect("join").expect_err("no such tenant");
    assert!(matches!(refused, ServiceError::Invalid(_)), "{refused}");
    assert_eq!(c.version(), deleted_at);
    assert_model_is_registry(&c).await;
}

#[tokio::test]
async fn a_steady_stream_is_committed_in_bounded_batches() {
    let c = control().await;
    c.set_batch_limits(BatchLimits {
        max_changes: 4,
        max_open: Duration::from_secs(600),
    });
    let opened = batches(&c).await;
    let calls = (0..10)
        .map(|i| {
            let tid: &'static str = Box::leak(format!("s{i}").into_boxed_str());
            let host: &'static str = Box::leak(format!("s{i}.test").into_boxed_str());
            create(tid, host)
        })
        .collect();
    for h in queued(&c, calls).await {
        h.await.expect("join").expect("create");
    }
    assert_eq!(batches(&c).await, opened + 3, "4 + 4 + 2");
    assert_model_is_registry(&c).await;
}

/// A batch whose callers all went away — those whose changes it holds, and the one that
/// would join or commit it — is still committed, by realmctl's own task at its bound.
#[tokio::test]
async fn a_batch_whose_callers_all_went_away_is_committed_at_its_bound() {
    let c = control().await;
    c.set_batch_limits(BatchLimits {
        max_changes: 10_000,
        max_open: Duration::from_millis(50),
    });
    let held = c.lock_registry().await;
    let calls: Vec<_> = [create("a", "a.test"), create("b", "b.test")]
        .into_iter()
        .map(|f| f(Arc::clone(&c)))
        .collect();
    until_waiting(&c, 2).await;
    // Takes the lock once both changes are written (so they leave the batch to it), and
    // goes away holding it.
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let joiner = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            let w = c.core.registry.acquire().await;
            let _ = ready_tx.send(w.batch.as_ref().map_or(0, |b| b.members.len()));
            std::future::pending::<()>().await;
            drop(w);
        })
    };
    until_waiting(&c, 3).await;
    drop(held);
    assert_eq!(ready.await.expect("ready"), 2, "both are in the open batch");
    for call in &calls {
        call.abort();
    }
    joiner.abort();
    for call in calls {
        assert!(call.await.is_err_and(|e| e.is_cancelled()), "went away");
    }
    assert!(joiner.await.is_err_and(|e| e.is_cancelled()));
    // No caller left and no later write: only the bound commits it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while c.with_model(|m| m.tenants.len()) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("committed at its bound");
    assert_model_is_registry(&c).await;
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "operator_token".into(),
        action: action.into(),
        target: "/v1/tenants".into(),
        status: 201,
        outcome: "ok".into(),
        ..AuditEntry::default()
    }
}

/// Entries written into a batch that is undone (a change in it was interrupted mid-write)
/// are queued again, ahead of those recorded since, and committed with the next batch.
#[tokio::test]
async fn entries_of_a_batch_undone_mid_write_are_queued_again_in_order() {
    let c = control().await;
    c.record_audit(audit("first"));
    {
        let mut w = c.core.registry.acquire().await;
        c.core.stage_audits(&mut w).await;
        // As if the change written after them had been dropped mid-write.
        w.batch.as_mut().expect("opened for the entry").writing = true;
    }
    c.record_audit(audit("second"));
    let log = c.audit_page(None, 10).await.expect("page");
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["first", "second"]);
    assert_eq!(c.audit_entries_lost(), 0);
}

/// After a COMMIT interrupted mid-way, the entries it carried are queued again if the
/// registry does not hold them, and not if it does: none lost, none twice.
#[tokio::test]
async fn entries_of_an_interrupted_commit_are_written_once() {
    for took_effect in [false, true] {
        let c = control().await;
        c.record_audit(audit("carried"));
        {
            let mut w = c.core.registry.acquire().await;
            c.core.stage_audits(&mut w).await;
            let batch = w.batch.take().expect("opened for the entry");
            if took_effect {
                w.registry.commit_batch().await.expect("commit");
            }
            // As `flush` leaves it when its caller is dropped during the COMMIT.
            w.unsure = true;
            w.committing = batch.audits;
        }
        let log = c.audit_page(None, 10).await.expect("page");
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["carried"], "commit took effect: {took_effect}");
        assert_eq!(c.audit_entries_lost(), 0);
    }
}

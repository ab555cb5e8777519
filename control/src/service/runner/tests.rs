//! The runner against in-process steps: order, journal, backoff, retry, hosts re-run,
//! removes in reverse.

use super::*;
use crate::provision::secrets::SecretBox;
use crate::provision::{Plan, StepError, StepKind};
use crate::registry::Registry;
use async_trait::async_trait;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A step that counts its calls, can be told to fail, and makes one secret.
struct Counting {
    kind: StepKind,
    ensures: AtomicUsize,
    removes: AtomicUsize,
    fail: AtomicBool,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Step for Counting {
    fn kind(&self) -> StepKind {
        self.kind
    }
    fn provider(&self) -> &'static str {
        "test"
    }
    fn input_digest(&self, t: &TenantInput) -> String {
        crate::provision::digest_of(t.hosts.iter().map(String::as_str))
    }
    async fn ensure(&self, t: &TenantInput, prev: &Outputs) -> Result<Outputs, StepError> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("ensure {}", self.kind.name()));
        self.ensures.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StepError::new("told to fail"));
        }
        let mut out = Outputs::default();
        out.public.insert("hosts".into(), json!(t.hosts));
        let secret = prev
            .secret_str("s")
            .map_or_else(|| "secret-1".to_owned(), str::to_owned);
        out.secrets.insert("s".into(), json!(secret));
        Ok(out)
    }
    async fn remove(&self, _t: &TenantInput, _prev: &Outputs) -> Result<(), StepError> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("remove {}", self.kind.name()));
        self.removes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Fixture {
    control: Arc<Control>,
    steps: Vec<Arc<Counting>>,
    log: Arc<Mutex<Vec<String>>>,
}

async fn fixture() -> Fixture {
    let reg = Registry::in_memory().await.expect("registry");
    let plan = Plan {
        providers: vec![
            (StepKind::Identity, "test"),
            (StepKind::Database, "test"),
            (StepKind::Ingress, "none"),
            (StepKind::Dns, "test"),
        ],
    };
    let control = Arc::new(
        Control::with_plan(reg, plan, SecretBox::random())
            .await
            .expect("control"),
    );
    control
        .put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("upstream");
    let log = Arc::new(Mutex::new(Vec::new()));
    let steps: Vec<Arc<Counting>> = [StepKind::Identity, StepKind::Database, StepKind::Dns]
        .into_iter()
        .map(|kind| {
            Arc::new(Counting {
                kind,
                ensures: AtomicUsize::new(0),
                removes: AtomicUsize::new(0),
                fail: AtomicBool::new(false),
                log: Arc::clone(&log),
            })
        })
        .collect();
    let dyn_steps: Vec<Arc<dyn Step>> = steps
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn Step>)
        .collect();
    Runner::start(
        Arc::clone(&control),
        dyn_steps,
        RunnerSettings {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_parallel: 4,
        },
    );
    Fixture {
        control,
        steps,
        log,
    }
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).expect("id")
}

async fn until(c: &Control, t: &str, what: &str, f: impl Fn(&Provision) -> bool) -> Provision {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((_, p)) = c.provision_snapshot(&id(t)) {
            if f(&p) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {p:?}"
            );
        } else if what == "gone" {
            return Provision::ready(Vec::new());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const BODY: &[u8] = br#"{"id": "acme", "hosts": ["acme.test"], "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}"#;

#[tokio::test]
async fn steps_run_in_order_then_the_tenant_is_routed_once() {
    let f = fixture().await;
    let v = f.control.create_tenant(BODY).await.expect("create");
    assert_eq!(
        v.provisioning.as_ref().map(|p| p.state),
        Some(TenantState::Provisioning)
    );
    assert!(!f
        .control
        .with_model(|m| m.tenants[&id("acme")].provision.routed));
    let p = until(&f.control, "acme", "ready", |p| {
        p.state == TenantState::Ready
    })
    .await;
    assert!(p.routed);
    let states: Vec<&str> = p.steps.iter().map(|s| s.state.name()).collect();
    assert_eq!(states, ["done", "done", "skipped", "done"]);
    assert_eq!(
        *f.log.lock().unwrap_or_else(PoisonError::into_inner),
        ["ensure identity", "ensure database", "ensure dns"]
    );
    // Secrets are sealed, not stored in the clear, and open again.
    let rec = p.step(StepKind::Identity).expect("identity").clone();
    let sealed = rec.sealed.clone().expect("sealed");
    assert!(!sealed.contains("secret-1"));
    let opened = f.control.open_secrets(&id("acme"), &rec).expect("open");
    assert_eq!(opened.secret_str("s"), Some("secret-1"));
    // The compiled table carries it.
    let body = f.control.compile().expect("compile");
    assert!(String::from_utf8_lossy(&body.body()).contains("acme.test"));
}

#[tokio::test]
async fn failure_backs_off_then_retry_on_demand_finishes() {
    let f = fixture().await;
    f.steps[1].fail.store(true, Ordering::SeqCst);
    f.control.create_tenant(BODY).await.expect("create");
    let p = until(&f.control, "acme", "two failed attempts", |p| {
        p.step(StepKind::Database).is_some_and(|s| s.attempts >= 2)
    })
    .await;
    assert_eq!(p.state, TenantState::Failed);
    assert!(
        p.error
            .as_deref()
            .unwrap_or("")
            .starts_with("database: told to fail"),
        "{p:?}"
    );
    assert!(!p.routed);
    let body = f.control.compile().expect("compile");
    assert!(
        !String::from_utf8_lossy(&body.body()).contains("acme.test"),
        "a failed tenant is not routed"
    );
    f.steps[1].fail.store(false, Ordering::SeqCst);
    f.control
        .retry_provisioning(&id("acme"))
        .await
        .expect("retry");
    let p = until(&f.control, "acme", "ready", |p| {
        p.state == TenantState::Ready
    })
    .await;
    assert!(p.routed && p.error.is_none());
    assert_eq!(
        f.steps[0].ensures.load(Ordering::SeqCst),
        1,
        "identity ran once"
    );
}

#[tokio::test]
async fn host_change_reruns_only_dependent_steps_and_delete_removes_in_reverse() {
    let f = fixture().await;
    f.control.create_tenant(BODY).await.expect("create");
    until(&f.control, "acme", "ready", |p| {
        p.state == TenantState::Ready
    })
    .await;
    let before: Vec<usize> = f
        .steps
        .iter()
        .map(|s| s.ensures.load(Ordering::SeqCst))
        .collect();
    // Retrying a ready tenant re-runs each step once, and they converge to the same.
    f.control
        .retry_provisioning(&id("acme"))
        .await
        .expect("retry");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p = until(&f.control, "acme", "ready again", |p| {
        p.state == TenantState::Ready
    })
    .await;
    let opened = f
        .control
        .open_secrets(&id("acme"), p.step(StepKind::Identity).expect("identity"))
        .expect("open");
    assert_eq!(
        opened.secret_str("s"),
        Some("secret-1"),
        "previous secrets reach ensure"
    );
    f.control
        .update_tenant(&id("acme"), br#"{"hosts": ["acme2.test"]}"#, None)
        .await
        .expect("patch");
    let p = until(&f.control, "acme", "re-run", |p| {
        p.state == TenantState::Ready
            && p.step(StepKind::Dns)
                .is_some_and(|s| s.outputs["hosts"] == json!(["acme2.test"]))
    })
    .await;
    assert!(p.routed);
    let after: Vec<usize> = f
        .steps
        .iter()
        .map(|s| s.ensures.load(Ordering::SeqCst))
        .collect();
    assert_eq!(after, before.iter().map(|b| b + 2).collect::<Vec<_>>());
    f.log.lock().unwrap_or_else(PoisonError::into_inner).clear();
    f.control
        .delete_tenant(&id("acme"), None)
        .await
        .expect("delete");
    assert!(!f
        .control
        .with_model(|m| m.tenants[&id("acme")].provision.routed));
    until(&f.control, "acme", "gone", |_| false).await;
    assert_eq!(
        *f.log.lock().unwrap_or_else(PoisonError::into_inner),
        ["remove dns", "remove database", "remove identity"]
    );
}

//! The provisioning runner, driven by the service it journals through: one task per tenant walks its steps in order (or their
//! `remove`s in reverse), journaling each transition before and after the `.await` that
//! changes the world, retries failures with exponential backoff, and routes the tenant
//! once every step is done.

use super::{Control, ServiceError};
use crate::ids::TenantId;
use crate::provision::config::RunnerSettings;
use crate::provision::{Outputs, Provision, Step, StepRecord, StepState, TenantInput, TenantState};
use crate::registry::RegistryError;
use crate::time::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Test-only: `REALMCTL_TEST_CRASH_AT=<step>:<point>` aborts the process at that point, as
/// a SIGKILL would. Points: `ensured` (the step's effect made, not journaled), `journaled`,
/// `removed`, `remove-journaled`; and `routing:journaled`.
pub const CRASH_ENV: &str = "REALMCTL_TEST_CRASH_AT";

pub struct Runner {
    control: Arc<Control>,
    steps: Vec<Arc<dyn Step>>,
    settings: RunnerSettings,
    crash_at: Option<String>,
    /// Tenants with a task running; `true`: woken again meanwhile, look once more.
    in_flight: Mutex<HashMap<TenantId, bool>>,
    permits: Semaphore,
}

enum Action {
    Idle,
    WaitUntil(u64),
    Ensure(usize),
    Remove(usize),
    Route,
    Finish,
}

impl Runner {
    /// Attach to `control` and run until the process ends. `steps` are the configured
    /// ones (provider not `none`), in order.
    pub fn start(
        control: Arc<Control>,
        steps: Vec<Arc<dyn Step>>,
        settings: RunnerSettings,
    ) -> Arc<Runner> {
        let mut inbox = control.attach_runner();
        let runner = Arc::new(Runner {
            permits: Semaphore::new(settings.max_parallel.max(1)),
            control,
            steps,
            settings,
            crash_at: std::env::var(CRASH_ENV).ok().filter(|v| !v.is_empty()),
            in_flight: Mutex::new(HashMap::new()),
        });
        let r = Arc::clone(&runner);
        tokio::spawn(async move {
            // At start: whatever a crash interrupted, and whatever a configuration change
            // made stale.
            let now = now_ms();
            for id in r.control.all_tenant_ids() {
                if let Some((input, p)) = r.control.provision_snapshot(&id) {
                    if !matches!(r.next_action(&input, &p, now), Action::Idle) {
                        Arc::clone(&r).consider(id);
                    }
                }
            }
            while let Some(id) = inbox.recv().await {
                Arc::clone(&r).consider(id);
            }
        });
        runner
    }

    fn consider(self: Arc<Self>, id: TenantId) {
        {
            let mut f = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(dirty) = f.get_mut(&id) {
                *dirty = true;
                return;
            }
            f.insert(id.clone(), false);
        }
        tokio::spawn(async move {
            let Ok(_permit) = self.permits.acquire().await else {
                return;
            };
            loop {
                self.run_tenant(&id).await;
                let mut f = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match f.get_mut(&id) {
                    Some(dirty) if *dirty => *dirty = false,
                    _ => {
                        f.remove(&id);
                        return;
                    }
                }
            }
        });
    }

    fn next_action(&self, input: &TenantInput, p: &Provision, now: u64) -> Action {
        let rec = |i: usize| p.step(self.steps[i].kind());
        if p.state.deleting() {
            for i in (0..self.steps.len()).rev() {
                match rec(i) {
                    Some(r) if r.state == StepState::Removed => continue,
                    Some(r)
                        if p.state == TenantState::DeleteFailed
                            && r.state == StepState::Failed
                            && r.next_attempt_at_ms.is_some_and(|at| at > now) =>
                    {
                        return Action::WaitUntil(r.next_attempt_at_ms.unwrap_or(now));
                    }
                    _ => return Action::Remove(i),
                }
            }
            return Action::Finish;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let digest = step.input_digest(input);
            match rec(i) {
                Some(r)
                    if r.state == StepState::Done && r.input_digest.as_deref() == Some(&digest) => {
                }
                Some(r)
                    if p.state == TenantState::Failed
                        && r.state == StepState::Failed
                        && r.next_attempt_at_ms.is_some_and(|at| at > now) =>
                {
                    return Action::WaitUntil(r.next_attempt_at_ms.unwrap_or(now));
                }
                _ => return Action::Ensure(i),
            }
        }
        if p.state != TenantState::Ready || !p.routed {
            return Action::Route;
        }
        Action::Idle
    }

    async fn run_tenant(self: &Arc<Self>, id: &TenantId) {
        loop {
            // Only the Lease holder provisions; the others wait here, without polling.
            self.control.fence().wait_leading().await;
            let Some((input, p)) = self.control.provision_snapshot(id) else {
                return;
            };
            let result = match self.next_action(&input, &p, now_ms()) {
                Action::Idle => return,
                Action::WaitUntil(at) => {
                    self.wake_at(id, at);
                    return;
                }
                Action::Ensure(i) => self.ensure(id, &input, &p, i).await,
                Action::Remove(i) => self.remove(id, &input, &p, i).await,
                Action::Route => {
                    let r = self.control.provision_done(id).await.map(|_| true);
                    self.crash_point("routing:journaled");
                    r
                }
                Action::Finish => self.control.provision_removed(id).await.map(|_| true),
            };
            match result {
                Ok(true) => continue,
                Ok(false) => return,
                // The Lease was lost mid-step: wait for it (the loop's top), then look again
                // (a step cut short runs again: steps are idempotent).
                Err(ServiceError::Registry(RegistryError::NotLeader(reason))) => {
                    log::info!("tenant {id}: provisioning paused: not the leader ({reason})");
                }
                Err(e) => {
                    // The registry itself failed: nothing sensible to journal; try later.
                    log::error!("tenant {id}: provisioning journal: {e}; retrying in 5 s");
                    self.wake_at(id, now_ms() + 5000);
                    return;
                }
            }
        }
    }

    fn record(&self, p: &Provision, i: usize) -> StepRecord {
        let step = &self.steps[i];
        let mut r = p
            .step(step.kind())
            .cloned()
            .unwrap_or_else(|| StepRecord::new(step.kind(), step.provider(), now_ms()));
        r.provider = step.provider().to_owned();
        r
    }

    /// Run one step's `ensure`; `Ok(true)` to go on with the next action.
    async fn ensure(
        &self,
        id: &TenantId,
        input: &TenantInput,
        p: &Provision,
        i: usize,
    ) -> Result<bool, ServiceError> {
        let step = &self.steps[i];
        let kind = step.kind().name();
        let mut rec = self.record(p, i);
        let digest = step.input_digest(input);
        if matches!(rec.state, StepState::Done | StepState::Skipped) {
            rec.attempts = 0;
        }
        rec.state = StepState::Running;
        rec.attempts += 1;
        rec.updated_at_ms = now_ms();
        let previous = self.control.open_secrets(id, &rec).unwrap_or_else(|e| {
            log::warn!("tenant {id}: {kind}: {e}; running without its previous secrets");
            Outputs {
                public: rec.outputs.clone(),
                secrets: Default::default(),
            }
        });
        self.control
            .journal_step(id, rec.clone(), Some((TenantState::Provisioning, None)))
            .await?;
        log::info!("tenant {id}: {kind}: ensure (attempt {})", rec.attempts);
        let started = Instant::now();
        let result = step.ensure(input, &previous).await;
        self.crash_point(&format!("{kind}:ensured"));
        rec.duration_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        rec.updated_at_ms = now_ms();
        match result {
            Ok(out) => {
                rec.state = StepState::Done;
                rec.last_error = None;
                rec.next_attempt_at_ms = None;
                rec.outputs = out.public;
                rec.sealed = self
                    .control
                    .secret_box()
                    .seal(id.as_str(), kind, &out.secrets);
                rec.input_digest = Some(digest);
                self.control.journal_step(id, rec, None).await?;
                log::info!("tenant {id}: {kind}: done");
                self.crash_point(&format!("{kind}:journaled"));
                Ok(true)
            }
            Err(e) => {
                let at = rec.updated_at_ms + self.backoff(rec.attempts);
                rec.state = StepState::Failed;
                rec.last_error = Some(e.0.clone());
                rec.next_attempt_at_ms = Some(at);
                let error = format!("{kind}: {e}");
                log::warn!(
                    "tenant {id}: {error} (attempt {}; next in {} ms)",
                    rec.attempts,
                    at.saturating_sub(now_ms())
                );
                self.control
                    .journal_step(id, rec, Some((TenantState::Failed, Some(error))))
                    .await?;
                self.wake_at(id, at);
                Ok(false)
            }
        }
    }

    /// Run one step's `remove`; `Ok(true)` to go on.
    async fn remove(
        &self,
        id: &TenantId,
        input: &TenantInput,
        p: &Provision,
        i: usize,
    ) -> Result<bool, ServiceError> {
        let step = &self.steps[i];
        let kind = step.kind().name();
        let mut rec = self.record(p, i);
        if rec.state != StepState::Failed && rec.state != StepState::Removing {
            rec.attempts = 0;
        }
        let previous = self
            .control
            .open_secrets(id, &rec)
            .unwrap_or_else(|_| Outputs {
                public: rec.outputs.clone(),
                secrets: Default::default(),
            });
        rec.state = StepState::Removing;
        rec.attempts += 1;
        rec.updated_at_ms = now_ms();
        self.control
            .journal_step(id, rec.clone(), Some((TenantState::Deleting, None)))
            .await?;
        log::info!("tenant {id}: {kind}: remove (attempt {})", rec.attempts);
        let result = step.remove(input, &previous).await;
        self.crash_point(&format!("{kind}:removed"));
        rec.updated_at_ms = now_ms();
        match result {
            Ok(()) => {
                rec.state = StepState::Removed;
                rec.last_error = None;
                rec.next_attempt_at_ms = None;
                rec.sealed = None;
                self.control.journal_step(id, rec, None).await?;
                self.crash_point(&format!("{kind}:remove-journaled"));
                Ok(true)
            }
            Err(e) => {
                let at = rec.updated_at_ms + self.backoff(rec.attempts);
                rec.state = StepState::Failed;
                rec.last_error = Some(e.0.clone());
                rec.next_attempt_at_ms = Some(at);
                let error = format!("{kind}: {e}");
                log::warn!("tenant {id}: remove {error} (attempt {})", rec.attempts);
                self.control
                    .journal_step(id, rec, Some((TenantState::DeleteFailed, Some(error))))
                    .await?;
                self.wake_at(id, at);
                Ok(false)
            }
        }
    }

    /// `initial × 2^(attempts-1)`, capped, ±20% jitter; in ms.
    fn backoff(&self, attempts: u32) -> u64 {
        let base = self.settings.initial_backoff.as_millis() as f64;
        let exp = 2f64.powi(i32::try_from(attempts.saturating_sub(1).min(30)).unwrap_or(30));
        let capped = (base * exp).min(self.settings.max_backoff.as_millis() as f64);
        let jitter = 0.8 + 0.4 * fastrand::f64();
        (capped * jitter) as u64
    }

    fn wake_at(&self, id: &TenantId, at_ms: u64) {
        let control = Arc::clone(&self.control);
        let id = id.clone();
        let delay = Duration::from_millis(at_ms.saturating_sub(now_ms()));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            control.wake(&id);
        });
    }

    fn crash_point(&self, point: &str) {
        if self.crash_at.as_deref() == Some(point) {
            log::error!("{CRASH_ENV}={point}: aborting as a test asked");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests;

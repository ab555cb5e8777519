//! Compile whenever the model moves; publish only newer tables, never one at or below a
//! version a gateway reports. The one task between the service (which owns the model) and
//! the push workers (which watch what it publishes and report gateways ahead of it).

use crate::compile::delta::DeltaCompiler;
use crate::compile::Compiled;
use crate::metrics::Metrics;
use crate::registry::RegistryError;
use crate::service::{Control, ServiceError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Pause before compiling again after a failure (which would be a bug), so it cannot spin.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Compile whenever the model's version moves, publishing only ever newer tables, at most one
/// table per `debounce`: a change after a quiet spell is compiled at once (a lone change
/// waits for nothing), and the changes that come within `debounce` of that compile's start
/// wait for its end and are compiled together, into one table carrying the newest version.
/// A version a
/// gateway reports at or above ours (`ahead`) moves the registry's counter past it first.
/// Each table comes with the deltas to it from the versions before (`compile::delta`).
pub async fn run(
    control: Arc<Control>,
    published: watch::Sender<Option<Arc<Compiled>>>,
    metrics: Arc<Metrics>,
    debounce: Duration,
    mut ahead: watch::Receiver<u64>,
) {
    let mut changes = control.subscribe();
    let mut ahead_open = true;
    // Only this task compiles; the lock lends it to the blocking thread that does.
    let compiler = Arc::new(Mutex::new(DeltaCompiler::default()));
    // The size of the last full table written out: a version sent only as deltas has none
    // of its own (its full table is written when a gateway needs it).
    let mut full_bytes = 0;
    // When the last compile started: the next waits until `debounce` after it.
    let mut last_compile: Option<Instant> = None;
    loop {
        let seen = *ahead.borrow_and_update();
        if seen > 0 && seen >= control.version() {
            // A write: only the Lease holder moves the version (the others wait, quietly).
            control.fence().wait_leading().await;
            match control.move_past(seen).await {
                Ok(v) => log::warn!(
                    "a gateway serves table version {seen}, which this registry did not publish: continuing at version {v} and publishing the registry's state again"
                ),
                Err(ServiceError::Registry(RegistryError::NotLeader(_))) => {}
                Err(e) => {
                    log::error!("cannot move the table version past {seen}: {e}; retrying in {RETRY_AFTER_FAILURE:?}");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
            continue;
        }
        let wanted = *changes.borrow_and_update();
        let have = published.borrow().as_ref().map_or(0, |c| c.version);
        if wanted > have {
            if let Some(paced) = last_compile.map(|t| t + debounce) {
                // Changes arriving meanwhile are in the table compiled next.
                tokio::time::sleep_until(paced.into()).await;
            }
            let started = Instant::now();
            last_compile = Some(started);
            let (c, dc) = (Arc::clone(&control), Arc::clone(&compiler));
            let compile = move || {
                let mut dc = dc.lock().unwrap_or_else(PoisonError::into_inner);
                c.with_model(|m| dc.compile(m, c.secret_box()))
            };
            match tokio::task::spawn_blocking(compile).await {
                Ok(Ok(compiled)) => {
                    let built = compiled.full.get().map(|f| f.body.len());
                    full_bytes = built.unwrap_or(full_bytes);
                    metrics.observe_compile(
                        started.elapsed(),
                        compiled.version,
                        full_bytes,
                        compiled.tenants,
                    );
                    log::info!(
                        "compiled table version {} ({} tenants, {}; delta from {}: {} parts) in {:?}",
                        compiled.version,
                        compiled.tenants,
                        built.map_or_else(|| "full table on demand".to_owned(), |b| format!("{b} bytes")),
                        compiled.deltas.first().map_or_else(|| "none".to_owned(), |d| d.base.to_string()),
                        compiled.deltas.first().map_or(0, |d| d.parts),
                        started.elapsed()
                    );
                    let compiled = Arc::new(compiled);
                    published.send_if_modified(|cur| {
                        let newer = cur.as_ref().is_none_or(|c| c.version < compiled.version);
                        if newer {
                            *cur = Some(compiled);
                        }
                        newer
                    });
                }
                Ok(Err(e)) => {
                    log::error!("table compile failed: {e}; retrying in {RETRY_AFTER_FAILURE:?}");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
                Err(e) => {
                    log::error!(
                        "table compile task failed: {e}; retrying in {RETRY_AFTER_FAILURE:?}"
                    );
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
            continue;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            changed = ahead.changed(), if ahead_open => if changed.is_err() { ahead_open = false },
        }
    }
}

#[cfg(test)]
mod tests;

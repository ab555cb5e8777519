//! Compile whenever the model moves; publish only newer tables. The one task between the
//! service (which owns the model) and the push workers (which watch what it publishes).

use crate::compile::Compiled;
use crate::metrics::Metrics;
use crate::service::Control;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Pause before compiling again after a failure (which would be a bug), so it cannot spin.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Compile whenever the model's version moves, publishing only ever newer tables. A burst
/// of changes yields one table carrying the newest version.
pub async fn run(
    control: Arc<Control>,
    published: watch::Sender<Option<Arc<Compiled>>>,
    metrics: Arc<Metrics>,
) {
    let mut changes = control.subscribe();
    loop {
        let wanted = *changes.borrow_and_update();
        let have = published.borrow().as_ref().map_or(0, |c| c.version);
        if wanted > have {
            let started = Instant::now();
            let c = Arc::clone(&control);
            match tokio::task::spawn_blocking(move || c.compile()).await {
                Ok(Ok(compiled)) => {
                    metrics.observe_compile(
                        started.elapsed(),
                        compiled.version,
                        compiled.body.len(),
                        compiled.tenants,
                    );
                    log::info!(
                        "compiled table version {} ({} tenants, {} bytes) in {:?}",
                        compiled.version,
                        compiled.tenants,
                        compiled.body.len(),
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
        if changes.changed().await.is_err() {
            return;
        }
    }
}

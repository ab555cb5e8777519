//! Services that run beside the proxy, outside any request: the health checker that probes
//! every pool of the current table.

use crate::snapshot::Store;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Probes every pool of the current table each interval, concurrently.
pub struct HealthChecker {
    pub store: Arc<Store>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let Some(snapshot) = self.store.current() else {
                continue;
            };
            let mut probes = tokio::task::JoinSet::new();
            for pool in snapshot.pools.iter() {
                let pool = Arc::clone(pool);
                probes.spawn(async move { pool.probe().await });
            }
            while probes.join_next().await.is_some() {}
        }
    }
}

//! Whether this realmctl may write: the fence every registry write checks at its root, and
//! what `/readyz`, the operator UI and `realmctl_leader` report. Without a `lease:` section the
//! fence is always open (the writer lock alone makes realmctl the single writer); with one,
//! the Kubernetes Lease elector (`crate::lease`) opens and closes it.

use tokio::sync::watch;

/// Whether this process holds the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Writes are allowed.
    Leading,
    /// Writes are refused; `reason` says why, for operators (who holds the Lease, or why the
    /// API server could not be asked).
    NotLeading { reason: String },
}

impl Leadership {
    pub fn not_leading(reason: impl Into<String>) -> Leadership {
        Leadership::NotLeading {
            reason: reason.into(),
        }
    }
}

/// The fence: a cheap handle on the leadership state, cloned into the registry, the
/// provisioning runner and the publisher.
#[derive(Debug, Clone)]
pub struct Fence(Option<watch::Receiver<Leadership>>);

/// The one writer of the leadership state (the elector).
#[derive(Debug)]
pub struct FenceControl(watch::Sender<Leadership>);

impl Fence {
    /// Always open: no Lease is configured.
    pub fn open() -> Fence {
        Fence(None)
    }

    /// A fence closed with `reason` until the returned control opens it.
    pub fn closed(reason: impl Into<String>) -> (Fence, FenceControl) {
        let (tx, rx) = watch::channel(Leadership::not_leading(reason));
        (Fence(Some(rx)), FenceControl(tx))
    }

    pub fn state(&self) -> Leadership {
        match &self.0 {
            None => Leadership::Leading,
            Some(rx) => rx.borrow().clone(),
        }
    }

    pub fn is_leading(&self) -> bool {
        match &self.0 {
            None => true,
            Some(rx) => *rx.borrow() == Leadership::Leading,
        }
    }

    /// `Err(reason)` unless this process may write now.
    pub fn check(&self) -> Result<(), String> {
        match self.state() {
            Leadership::Leading => Ok(()),
            Leadership::NotLeading { reason } => Err(reason),
        }
    }

    /// Return once this process leads (at once if it does). Waiting costs nothing: no
    /// polling, the elector's change wakes it. Never returns if the elector is gone.
    pub async fn wait_leading(&self) {
        let Some(rx) = &self.0 else { return };
        let mut rx = rx.clone();
        if rx.wait_for(|l| *l == Leadership::Leading).await.is_err() {
            // The elector ended (the process is stopping): never lead again.
            std::future::pending::<()>().await;
        }
    }
}

impl FenceControl {
    /// Set the state; returns whether it changed.
    pub fn set(&self, next: Leadership) -> bool {
        self.0.send_if_modified(|cur| {
            let changed = *cur != next;
            *cur = next;
            changed
        })
    }

    pub fn is_leading(&self) -> bool {
        *self.0.borrow() == Leadership::Leading
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_open_fence_always_allows_writes() {
        let f = Fence::open();
        assert!(f.is_leading());
        assert_eq!(f.check(), Ok(()));
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_with_its_reason_and_wakes_waiters_when_opened() {
        let (f, control) = Fence::closed("the Lease is held by other-1");
        assert_eq!(f.check(), Err("the Lease is held by other-1".to_owned()));
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.wait_leading().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(control.set(Leadership::Leading));
        assert!(!control.set(Leadership::Leading), "no change, no wake-up");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(f.check(), Ok(()));
        control.set(Leadership::not_leading("renewal failed"));
        assert_eq!(f.check(), Err("renewal failed".to_owned()));
    }
}

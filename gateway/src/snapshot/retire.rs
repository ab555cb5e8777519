//! Replaced snapshots are freed on a thread of their own once no request holds them, never
//! on a proxy worker. A request keeps the snapshot it started with to its end; when a table
//! change swaps in the next one, whoever drops the last reference frees what only the old
//! one owned — with a change every few milliseconds that was often a request, on a worker
//! thread (callgrind: all of the workers' extra instructions while deltas flowed). The
//! [`Retirer`] holds each replaced snapshot until it is the only holder, then frees it; one
//! held past [`GIVE_UP`] (a long download, a WebSocket) is let go, and its last request
//! frees it as before.

use super::cpus::Cpus;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often held snapshots are looked at (only while some are held).
const POLL: Duration = Duration::from_millis(2);
/// How long a snapshot is held for the requests still using it.
pub const GIVE_UP: Duration = Duration::from_secs(10);

/// Frees replaced values (snapshots) on its thread, started at the first one.
pub struct Retirer<T: Send + Sync + 'static> {
    tx: Mutex<Option<Sender<Arc<T>>>>,
    give_up: Duration,
    /// Where the freeing runs (`gateway.table_cpus`).
    cpus: Cpus,
}

impl<T: Send + Sync + 'static> Default for Retirer<T> {
    fn default() -> Self {
        Retirer::with_give_up(GIVE_UP)
    }
}

impl<T: Send + Sync + 'static> Retirer<T> {
    pub fn with_give_up(give_up: Duration) -> Self {
        Retirer {
            tx: Mutex::new(None),
            give_up,
            cpus: Cpus::default(),
        }
    }

    /// Free on `cpus` (set before the first [`Retirer::retire`]).
    pub fn set_cpus(&mut self, cpus: Cpus) {
        self.cpus = cpus;
    }

    /// Free `value` on the retiring thread once nothing else holds it (here, at once, if
    /// that thread cannot be started).
    pub fn retire(&self, value: Arc<T>) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.is_none() {
            let (sender, rx) = mpsc::channel::<Arc<T>>();
            let (give_up, cpus) = (self.give_up, self.cpus);
            let started = std::thread::Builder::new()
                .name("table-drop".into())
                .spawn(move || run(&rx, give_up, cpus));
            if started.is_err() {
                return;
            }
            *tx = Some(sender);
        }
        if let Some(sender) = tx.as_ref() {
            // A send fails only if the thread is gone; the value is then dropped here.
            let _ = sender.send(value);
        }
    }
}

fn run<T>(rx: &mpsc::Receiver<Arc<T>>, give_up: Duration, cpus: Cpus) {
    let mut held: Vec<(Arc<T>, Instant)> = Vec::new();
    loop {
        let next = if held.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(POLL)
        };
        match next {
            Ok(v) => {
                // Each time: the process may have been pinned from outside since.
                cpus.enter();
                held.push((v, Instant::now()));
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The store is gone: let every reference go.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Dropping an unshared one frees it here; one held too long is let go.
        held.retain(|(v, since)| Arc::strong_count(v) > 1 && since.elapsed() < give_up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the name of the thread that dropped it.
    struct Probe(Arc<Mutex<Option<String>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
        }
    }

    fn probe() -> (Arc<Probe>, Arc<Mutex<Option<String>>>) {
        let who = Arc::new(Mutex::new(None));
        (Arc::new(Probe(Arc::clone(&who))), who)
    }

    fn wait_for(who: &Mutex<Option<String>>) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(n) = who.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return n;
            }
            assert!(Instant::now() < deadline, "never dropped");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_snapshot_a_request_still_holds_is_freed_on_the_retiring_thread_after_it() {
        let r = Retirer::default();
        let (snapshot, who) = probe();
        let request = Arc::clone(&snapshot);
        r.retire(snapshot);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            *who.lock().expect("probe"),
            None,
            "freed while a request held it"
        );
        // The request ends on this thread: it is not the one that frees.
        drop(request);
        assert_eq!(wait_for(&who), "table-drop");
    }

    /// Records the CPUs of the thread that dropped it.
    struct CpuProbe(Arc<Mutex<Option<String>>>);

    impl Drop for CpuProbe {
        fn drop(&mut self) {
            let cpus = crate::snapshot::cpus::this_thread()
                .map(|s| crate::snapshot::cpus::describe(&s))
                .unwrap_or_default();
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(cpus);
        }
    }

    #[test]
    fn freeing_runs_on_the_table_cpus() {
        let cpu = crate::snapshot::cpus::last_allowed();
        let mut r = Retirer::default();
        r.set_cpus(Cpus::parse(&[cpu]).expect("allowed"));
        let who = Arc::new(Mutex::new(None));
        r.retire(Arc::new(CpuProbe(Arc::clone(&who))));
        assert_eq!(wait_for(&who), cpu.to_string());
    }

    #[test]
    fn an_unshared_snapshot_is_freed_on_the_retiring_thread() {
        let r = Retirer::default();
        for _ in 0..3 {
            let (snapshot, who) = probe();
            r.retire(snapshot);
            assert_eq!(wait_for(&who), "table-drop");
        }
    }

    #[test]
    fn one_held_past_the_bound_is_let_go_and_its_last_holder_frees_it() {
        let r = Retirer::with_give_up(Duration::from_millis(20));
        let (snapshot, who) = probe();
        let request = Arc::clone(&snapshot);
        r.retire(snapshot);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&request) > 1 {
            assert!(Instant::now() < deadline, "never let go");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(*who.lock().expect("probe"), None);
        let here = std::thread::current().name().unwrap_or("?").to_owned();
        drop(request);
        assert_eq!(wait_for(&who), here);
    }

    #[test]
    fn dropping_the_retirer_lets_every_reference_go() {
        let r = Retirer::default();
        let (snapshot, _who) = probe();
        let request = Arc::clone(&snapshot);
        r.retire(snapshot);
        drop(r);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&request) > 1 {
            assert!(
                Instant::now() < deadline,
                "still held after the retirer went"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

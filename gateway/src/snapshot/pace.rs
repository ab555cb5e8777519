//! Table work comes in short runs on a busy core. A delta's apply is a few milliseconds of
//! CPU with no point at which it blocks; on a core the proxy's workers share, the kernel
//! lets it run to its end (its preemption rules favour a thread that has slept, and the
//! tick here is 4 ms), and every request that arrives meanwhile waits for all of it. A
//! paced thread instead steps aside for a moment each time it has run [`RUN`] since its last
//! pause: it sleeps, so whatever waits for the core runs, and the change completes a little
//! later instead of the requests.
//!
//! Pacing is on only inside [`paced`] (a delta pushed or pulled); [`point`] elsewhere, and on
//! every other thread, costs a thread-local read.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The longest run between pauses.
pub const RUN: Duration = Duration::from_micros(100);
/// The pause: any sleep hands the core over; the timer's slack (50 µs by default) adds to it.
const PAUSE: Duration = Duration::from_micros(10);

thread_local! {
    /// When this thread last paused (or began its paced work); `None`: not paced.
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Pauses this thread has taken (for tests).
    static PAUSES: Cell<u64> = const { Cell::new(0) };
}

/// Run `f` paced on this thread (nested calls stay paced until the outermost returns).
pub fn paced<R>(f: impl FnOnce() -> R) -> R {
    let outer = SINCE.with(|s| s.replace(Some(Instant::now())));
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SINCE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(outer.map(|_| Instant::now()));
    f()
}

/// A point where paced work may pause: it does when it has run [`RUN`] since its last one.
#[inline]
pub fn point() {
    SINCE.with(|s| {
        if let Some(since) = s.get() {
            if since.elapsed() >= RUN {
                std::thread::sleep(PAUSE);
                PAUSES.with(|p| p.set(p.get() + 1));
                s.set(Some(Instant::now()));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points for `work` of wall time; how many of them paused.
    fn pauses_in(work: Duration) -> u64 {
        let before = PAUSES.with(Cell::get);
        let started = Instant::now();
        while started.elapsed() < work {
            point();
        }
        PAUSES.with(Cell::get) - before
    }

    #[test]
    fn unpaced_work_never_pauses() {
        assert_eq!(pauses_in(RUN * 5), 0, "a point outside paced work paused");
    }

    #[test]
    fn paced_work_pauses_after_each_run_and_pacing_ends_with_it() {
        let pauses = paced(|| pauses_in(RUN * 5));
        // One pause per RUN of work at most (each pause then counts towards the time).
        assert!((1..=5).contains(&pauses), "{pauses} pauses in five runs");
        assert!(SINCE.with(Cell::get).is_none(), "pacing outlived paced()");
        assert_eq!(pauses_in(RUN * 5), 0);
    }

    #[test]
    fn nested_paced_calls_keep_pacing_until_the_outermost_returns() {
        paced(|| {
            paced(|| ());
            assert!(
                SINCE.with(Cell::get).is_some(),
                "the inner call ended pacing"
            );
        });
        assert!(SINCE.with(Cell::get).is_none());
    }

    #[test]
    fn a_panic_in_paced_work_ends_pacing() {
        let caught = std::panic::catch_unwind(|| paced(|| panic!("in paced work")));
        assert!(caught.is_err());
        assert!(SINCE.with(Cell::get).is_none());
    }
}

//! Table work comes in short runs on a busy core. A delta's apply is a few milliseconds of
//! CPU with no point at which it blocks; on a core the proxy's workers share, the kernel
//! lets it run to its end (its preemption rules favour a thread that has slept, and the
//! tick here is 4 ms), and every request that arrives meanwhile waits for all of it. A
//! paced thread instead steps aside for a moment each time it has run [`RUN`] since its last
//! pause: it sleeps, so whatever waits for the core runs, and the change completes a little
//! later instead of the requests.
//!
//! With `gateway.delta_idle_ms` set (it is off by default), and where the process may come
//! back from it (root, `CAP_SYS_NICE`, or `RLIMIT_NICE` of 20 or more), paced work also runs
//! at the kernel's idle priority (`SCHED_IDLE`): a worker that wakes then takes the core from
//! it at once, not at its next pause. On a core the traffic keeps busy an idle thread gets
//! little, so after that long the work is raised back to its own priority, paced as before.
//! It is a trade: on such cores changes land later and in fewer, larger deltas
//! (benches/DELTA-RESULTS.md). An unprivileged thread cannot come back from the idle
//! priority, so there the work is only paced.
//!
//! Pacing is on only inside [`paced`] (a delta pushed or pulled); [`point`] elsewhere, and on
//! every other thread, costs a thread-local read.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use thread_priority::unix::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
    ThreadSchedulePolicy,
};
use thread_priority::ThreadPriority;

/// The longest run between pauses.
pub const RUN: Duration = Duration::from_micros(100);
/// The pause: any sleep hands the core over; the timer's slack (50 µs by default) adds to it.
const PAUSE: Duration = Duration::from_micros(10);

thread_local! {
    /// When this thread last paused (or began its paced work); `None`: not paced.
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Pauses this thread has taken (for tests).
    static PAUSES: Cell<u64> = const { Cell::new(0) };
    /// Until when this thread's paced work stays at the idle priority, while it is there.
    static IDLE_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Run `f` paced on this thread (nested calls stay paced until the outermost returns), for
/// its first `idle_for` at the idle priority where the process may come back from it.
pub fn paced<R>(idle_for: Duration, f: impl FnOnce() -> R) -> R {
    let outer = SINCE.with(|s| s.replace(Some(Instant::now())));
    if outer.is_none() && !idle_for.is_zero() && may_idle() && set_idle(true) {
        IDLE_UNTIL.with(|i| i.set(Some(Instant::now() + idle_for)));
    }
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SINCE.with(|s| s.set(self.0));
            if self.0.is_none() {
                raise();
            }
        }
    }
    let _restore = Restore(outer.map(|_| Instant::now()));
    f()
}

/// Back to the normal priority, if this thread's paced work left it.
fn raise() {
    if IDLE_UNTIL.with(Cell::take).is_some() && !set_idle(false) {
        log::error!("a table thread could not be raised back from the idle priority");
    }
}

/// `SCHED_IDLE` or back to `SCHED_OTHER` (nice 0: [`may_idle`] checked the thread had it).
fn set_idle(idle: bool) -> bool {
    let policy = if idle {
        NormalThreadSchedulePolicy::Idle
    } else {
        NormalThreadSchedulePolicy::Other
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(Default::default()),
        ThreadSchedulePolicy::Normal(policy),
    )
    .is_ok()
}

/// Whether this thread runs at the idle priority.
#[cfg(test)]
pub fn this_thread_is_idle() -> bool {
    matches!(
        thread_priority::unix::thread_schedule_policy(),
        Ok(ThreadSchedulePolicy::Normal(
            NormalThreadSchedulePolicy::Idle
        ))
    )
}

/// Whether paced work may go to the idle priority: a thread of this process, at nice 0,
/// can go there and come back. Tried once, on a thread of its own, and said once.
pub fn may_idle() -> bool {
    static MAY: OnceLock<bool> = OnceLock::new();
    *MAY.get_or_init(|| {
        let tried = std::thread::Builder::new()
            .name("table-probe".into())
            .spawn(|| nice_is_zero() && set_idle(true) && set_idle(false))
            .ok()
            .and_then(|t| t.join().ok())
            .unwrap_or(false);
        if tried {
            log::info!("table changes run at idle priority (for up to gateway.delta_idle_ms each), paced");
        } else {
            log::warn!(
                "gateway.delta_idle_ms is set, but table changes run paced at normal priority: the idle priority needs a way back (root, CAP_SYS_NICE or RLIMIT_NICE of 20, at nice 0)"
            );
        }
        tried
    })
}

/// This thread's nice value is 0 (`/proc/thread-self/stat`, its 19th field).
fn nice_is_zero() -> bool {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| {
            // The name (2nd field) is in parentheses and may hold spaces.
            let after_name = &stat[stat.rfind(')')? + 1..];
            after_name.split_whitespace().nth(16).map(|n| n == "0")
        })
        .unwrap_or(false)
}

/// A point where paced work may pause: it does when it has run [`RUN`] since its last one.
#[inline]
pub fn point() {
    SINCE.with(|s| {
        if let Some(since) = s.get() {
            if since.elapsed() >= RUN {
                std::thread::sleep(PAUSE);
                PAUSES.with(|p| p.set(p.get() + 1));
                if IDLE_UNTIL
                    .with(Cell::get)
                    .is_some_and(|u| Instant::now() >= u)
                {
                    raise();
                }
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
        let pauses = paced(Duration::ZERO, || pauses_in(RUN * 5));
        // One pause per RUN of work at most (each pause then counts towards the time).
        assert!((1..=5).contains(&pauses), "{pauses} pauses in five runs");
        assert!(SINCE.with(Cell::get).is_none(), "pacing outlived paced()");
        assert_eq!(pauses_in(RUN * 5), 0);
    }

    #[test]
    fn nested_paced_calls_keep_pacing_until_the_outermost_returns() {
        paced(Duration::ZERO, || {
            paced(Duration::ZERO, || ());
            assert!(
                SINCE.with(Cell::get).is_some(),
                "the inner call ended pacing"
            );
        });
        assert!(SINCE.with(Cell::get).is_none());
    }

    #[test]
    fn paced_work_runs_at_idle_priority_where_it_may_for_its_time_only() {
        assert!(!this_thread_is_idle());
        let idle_for = Duration::from_millis(50);
        let (at_start, at_end) = paced(idle_for, || {
            let at_start = this_thread_is_idle();
            pauses_in(idle_for + RUN * 10);
            (at_start, this_thread_is_idle())
        });
        assert_eq!(at_start, may_idle(), "idle priority where it may");
        assert!(!at_end, "still at idle priority after its patience");
        assert!(!this_thread_is_idle(), "left at idle priority");
        paced(idle_for, || ());
        assert!(
            !this_thread_is_idle(),
            "short paced work left it at idle priority"
        );
        assert!(
            !paced(Duration::ZERO, this_thread_is_idle),
            "idle without time for it"
        );
    }

    #[test]
    fn a_panic_in_paced_work_ends_pacing() {
        let caught =
            std::panic::catch_unwind(|| paced(Duration::from_secs(5), || panic!("in paced work")));
        assert!(caught.is_err());
        assert!(SINCE.with(Cell::get).is_none());
        assert!(!this_thread_is_idle(), "left at idle priority");
    }
}

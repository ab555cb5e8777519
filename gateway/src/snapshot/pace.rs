//! Table work comes in short runs on a busy core. A delta's apply is a few milliseconds of
//! CPU with no point at which it blocks; on a core the proxy's workers share, the kernel
//! lets it run to its end (its preemption rules favour a thread that has slept, and the
//! tick here is 4 ms), and every request that arrives meanwhile waits for all of it. A
//! paced thread instead steps aside for a moment each time it has run [`RUN`] since its last
//! pause: it sleeps, so whatever waits for the core runs, and the change completes a little
//! later instead of the requests.
//!
//! On a core that is busy the moment is not enough: the apply would still take most of the
//! core while it lasts, and the requests in flight then wait for it. So for its first
//! `gateway.delta_yield_ms` (1 s by default) paced work yields a busy core: after a run in
//! which it waited for the core (its run-queue wait, `/proc/thread-self/schedstat`, grew by
//! [`BUSY_WAIT`] or more), it pauses [`YIELD`], taking at most a twentieth of that core.
//! On a core with room it only takes the short pause, and after the window it is paced as
//! above, so a change is late by at most the window.
//!
//! With `gateway.delta_idle_ms` set (it is off by default), and where the process may come
//! back from it (root, `CAP_SYS_NICE`, or `RLIMIT_NICE` of 20 or more), paced work instead
//! runs at the kernel's idle priority (`SCHED_IDLE`) for that long: a worker that wakes
//! then takes the core from it at once, not at its next pause. On a core the traffic keeps
//! busy an idle thread gets little, so after that long the work is raised back to its own
//! priority, paced as before. It is a trade: on such cores changes land later and in fewer,
//! larger deltas (benches/DELTA-RESULTS.md). An unprivileged thread cannot come back from
//! the idle priority, so there the work yields and is paced as without it.
//!
//! Pacing is on only inside [`paced`] (a delta pushed or pulled); [`point`] elsewhere, and on
//! every other thread, costs a thread-local read.

use super::cpus::Cpus;
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::unix::fs::FileExt;
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
/// The pause on a busy core: a run of [`RUN`] in every two milliseconds, a twentieth of it.
pub const YIELD: Duration = Duration::from_micros(1_900);
/// A wait for the core this long since the last pause: the core is busy.
pub const BUSY_WAIT: Duration = Duration::from_micros(50);

/// How a delta's apply shares its core (`gateway.delta_yield_ms`, `gateway.delta_idle_ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pacing {
    /// For how long it yields a busy core ([`YIELD`]; zero: never).
    pub yield_for: Duration,
    /// For how long it may run at the idle priority (zero: never).
    pub idle_for: Duration,
    /// The CPUs it runs on (`gateway.table_cpus`; none named: where the process runs).
    pub cpus: Cpus,
}

thread_local! {
    /// When this thread last paused (or began its paced work); `None`: not paced.
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Pauses this thread has taken (for tests).
    static PAUSES: Cell<u64> = const { Cell::new(0) };
    /// Until when this thread's paced work stays at the idle priority, while it is there.
    static IDLE_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Until when this thread's paced work yields a busy core, while it may.
    static YIELD_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// This thread's run-queue wait (ns) as of its last pause.
    static WAITED: Cell<Option<u64>> = const { Cell::new(None) };
    /// Pauses of [`YIELD`] this thread has taken (for tests).
    static YIELDS: Cell<u64> = const { Cell::new(0) };
    /// This thread's `/proc/thread-self/schedstat`, once opened (`Some(None)`: unreadable).
    static SCHEDSTAT: RefCell<Option<Option<File>>> = const { RefCell::new(None) };
}

/// Run `f` paced on this thread (nested calls stay paced until the outermost returns), on
/// `pacing.cpus` where named: for its first `pacing.idle_for` at the idle priority where the
/// process may come back from it, else yielding a busy core for its first `pacing.yield_for`.
pub fn paced<R>(pacing: Pacing, f: impl FnOnce() -> R) -> R {
    if SINCE.with(Cell::get).is_some() {
        return f(); // nested: paced already, by the outermost call
    }
    pacing.cpus.within(|| {
        SINCE.with(|s| s.set(Some(Instant::now())));
        if !pacing.idle_for.is_zero() && may_idle() && set_idle(true) {
            IDLE_UNTIL.with(|i| i.set(Some(Instant::now() + pacing.idle_for)));
        } else if !pacing.yield_for.is_zero() {
            YIELD_UNTIL.with(|y| y.set(Some(Instant::now() + pacing.yield_for)));
            WAITED.with(|w| w.set(run_queue_wait()));
        }
        struct End;
        impl Drop for End {
            fn drop(&mut self) {
                SINCE.with(Cell::take);
                raise();
                YIELD_UNTIL.with(Cell::take);
            }
        }
        let _end = End;
        f()
    })
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

/// This thread's time waiting for a core so far, in nanoseconds (`None` where the kernel
/// does not say: then paced work never yields).
fn run_queue_wait() -> Option<u64> {
    SCHEDSTAT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let file = cell
            .get_or_insert_with(|| File::open("/proc/thread-self/schedstat").ok())
            .as_ref()?;
        // "<on the CPU> <waiting for it> <slices>", in nanoseconds.
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    })
}

/// Whether paced work can tell a busy core (said once, at start).
pub fn may_yield() -> bool {
    static MAY: OnceLock<bool> = OnceLock::new();
    *MAY.get_or_init(|| {
        let can = run_queue_wait().is_some();
        if can {
            log::info!("table changes yield a busy core (for up to gateway.delta_yield_ms each), paced");
        } else {
            log::warn!(
                "gateway.delta_yield_ms is set, but this kernel does not say how long a thread waits for a core (/proc/thread-self/schedstat): table changes run paced only"
            );
        }
        can
    })
}

/// The pause after `waited` (ns) more for a core since the last one, within the yield window.
fn pause_after(waited: Option<u64>) -> Duration {
    match waited {
        Some(ns) if u128::from(ns) >= BUSY_WAIT.as_nanos() => YIELD,
        _ => PAUSE,
    }
}

/// The pause due now: [`YIELD`] within the window if the core was busy since the last one.
fn pause_now() -> Duration {
    let Some(until) = YIELD_UNTIL.with(Cell::get) else {
        return PAUSE;
    };
    if Instant::now() >= until {
        YIELD_UNTIL.with(Cell::take);
        return PAUSE;
    }
    let now = run_queue_wait();
    let before = WAITED.with(|w| w.replace(now));
    pause_after(now.zip(before).map(|(n, b)| n.saturating_sub(b)))
}

/// A point where paced work may pause: it does when it has run [`RUN`] since its last one.
#[inline]
pub fn point() {
    SINCE.with(|s| {
        if let Some(since) = s.get() {
            if since.elapsed() >= RUN {
                let pause = pause_now();
                std::thread::sleep(pause);
                PAUSES.with(|p| p.set(p.get() + 1));
                if pause == YIELD {
                    YIELDS.with(|y| y.set(y.get() + 1));
                }
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

    /// Points for `work` of wall time, and one after it (so that paced work of at least
    /// [`RUN`] pauses even where the thread did not run for most of that time); how many of
    /// them paused.
    fn pauses_in(work: Duration) -> u64 {
        let before = PAUSES.with(Cell::get);
        let started = Instant::now();
        while started.elapsed() < work {
            point();
        }
        point();
        PAUSES.with(Cell::get) - before
    }

    #[test]
    fn unpaced_work_never_pauses() {
        assert_eq!(pauses_in(RUN * 5), 0, "a point outside paced work paused");
    }

    #[test]
    fn paced_work_pauses_after_each_run_and_pacing_ends_with_it() {
        let pauses = paced(Pacing::default(), || pauses_in(RUN * 5));
        // One pause per RUN of work at most (each pause then counts towards the time).
        assert!((1..=5).contains(&pauses), "{pauses} pauses in five runs");
        assert!(SINCE.with(Cell::get).is_none(), "pacing outlived paced()");
        assert_eq!(pauses_in(RUN * 5), 0);
    }

    #[test]
    fn nested_paced_calls_keep_pacing_until_the_outermost_returns() {
        paced(Pacing::default(), || {
            paced(Pacing::default(), || ());
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
        let idle = Pacing {
            idle_for,
            yield_for: Duration::from_secs(1),
            ..Pacing::default()
        };
        let (at_start, yielding, at_end) = paced(idle, || {
            let at_start = this_thread_is_idle();
            let yielding = YIELD_UNTIL.with(Cell::get).is_some();
            pauses_in(RUN * 10);
            // Its time runs out whether or not the thread ran meanwhile (on a loaded machine
            // an idle thread may not run for longer than that); the next point raises it.
            std::thread::sleep(idle_for);
            assert!(pauses_in(RUN) >= 1, "no point paused after its time");
            (at_start, yielding, this_thread_is_idle())
        });
        assert_eq!(at_start, may_idle(), "idle priority where it may");
        assert_eq!(
            yielding, !at_start,
            "at the idle priority the kernel yields the core for it; else it yields itself"
        );
        assert!(!at_end, "still at idle priority after its patience");
        assert!(!this_thread_is_idle(), "left at idle priority");
        paced(idle, || ());
        assert!(
            !this_thread_is_idle(),
            "short paced work left it at idle priority"
        );
        assert!(
            !paced(Pacing::default(), this_thread_is_idle),
            "idle without time for it"
        );
    }

    #[test]
    fn paced_work_runs_on_the_table_cpus_and_gives_the_thread_back() {
        use crate::snapshot::cpus::{describe, last_allowed, this_thread};
        std::thread::spawn(|| {
            let before = this_thread().expect("affinity");
            let cpu = last_allowed();
            let on = Pacing {
                cpus: Cpus::parse(&[cpu]).expect("allowed"),
                ..Pacing::default()
            };
            let inside = paced(on, || {
                paced(on, || ());
                describe(&this_thread().expect("affinity"))
            });
            assert_eq!(inside, cpu.to_string(), "after a nested call too");
            assert_eq!(this_thread().expect("affinity"), before, "given back");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_panic_in_paced_work_ends_pacing() {
        let both = Pacing {
            idle_for: Duration::from_secs(5),
            yield_for: Duration::from_secs(5),
            ..Pacing::default()
        };
        let caught = std::panic::catch_unwind(|| paced(both, || panic!("in paced work")));
        assert!(caught.is_err());
        assert!(SINCE.with(Cell::get).is_none());
        assert!(YIELD_UNTIL.with(Cell::get).is_none(), "yield window left");
        assert!(!this_thread_is_idle(), "left at idle priority");
    }

    #[test]
    fn a_run_that_waited_for_the_core_is_followed_by_a_yield() {
        assert_eq!(pause_after(None), PAUSE, "no reading: never yield");
        assert_eq!(pause_after(Some(0)), PAUSE);
        let busy = u64::try_from(BUSY_WAIT.as_nanos()).expect("ns");
        assert_eq!(pause_after(Some(busy - 1)), PAUSE);
        assert_eq!(pause_after(Some(busy)), YIELD);
        assert_eq!(pause_after(Some(u64::MAX)), YIELD);
    }

    #[test]
    fn the_run_queue_wait_is_read_and_only_grows() {
        // Every kernel the gateway is built for says it (CONFIG_SCHED_INFO).
        let first = run_queue_wait().expect("/proc/thread-self/schedstat");
        std::thread::yield_now();
        let second = run_queue_wait().expect("read again");
        assert!(second >= first, "{second} < {first}");
        // The file is this thread's, opened by it.
        let other = std::thread::spawn(|| run_queue_wait().is_some());
        assert!(other.join().expect("thread"));
    }

    /// This thread and a thread that never sleeps, on one core, while `f` runs.
    fn beside_a_busy_thread<R>(f: impl FnOnce() -> R) -> R {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        use std::sync::atomic::{AtomicBool, Ordering};
        let all = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
        let cpu = super::super::cpus::last_allowed();
        let mut one = CpuSet::new();
        one.set(cpu).expect("cpu");
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                sched_setaffinity(Pid::from_raw(0), &one).expect("pin the busy thread");
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        sched_setaffinity(Pid::from_raw(0), &one).expect("pin");
        let r = f();
        stop.store(true, Ordering::Relaxed);
        sched_setaffinity(Pid::from_raw(0), &all).expect("unpin");
        spinning.join().expect("busy thread");
        r
    }

    fn yields_in(pacing: Pacing, work: Duration) -> u64 {
        let before = YIELDS.with(Cell::get);
        paced(pacing, || pauses_in(work));
        YIELDS.with(Cell::get) - before
    }

    use std::sync::Arc;

    #[test]
    fn paced_work_yields_a_busy_core_for_its_window_only() {
        let window = Duration::from_millis(30);
        let yielding = Pacing {
            yield_for: window,
            ..Pacing::default()
        };
        let (yields, without) = beside_a_busy_thread(|| {
            (
                yields_in(yielding, window * 3),
                yields_in(Pacing::default(), Duration::from_millis(30)),
            )
        });
        // It waits for the core beside a thread that never sleeps, so it yields; each
        // yield is YIELD of the window, so there are no more than fit in it.
        let most = u64::try_from(window.as_micros() / YIELD.as_micros()).expect("count") + 1;
        assert!(
            (1..=most).contains(&yields),
            "{yields} yields in a window of {window:?}"
        );
        assert_eq!(without, 0, "yielded without a window");
        assert!(YIELD_UNTIL.with(Cell::get).is_none(), "yield window left");
    }
}

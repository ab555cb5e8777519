//! Table work yields to traffic: the admin API's threads and the threads that apply tables
//! and deltas, make models, compact journals and free old tables run at a lower CPU priority
//! (a higher nice value) than the proxy's workers, so on a busy core a request waits less
//! for a change.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};

/// The nice value table work runs at unless `gateway.table_work_nice` says otherwise (the
/// proxy's threads keep the process's own, 0 by default). At 10 a table thread weighs about
/// a tenth of a worker when both want the core: it still runs, more slowly, under saturating
/// traffic.
pub const DEFAULT_NICE: i32 = 10;

static NICE: AtomicI32 = AtomicI32::new(DEFAULT_NICE);

/// Set once at start, before any table work (`gateway.table_work_nice`, 0–19; 0 leaves table
/// work at the proxy's priority).
pub fn set_table_work_nice(nice: i32) {
    NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// Lower this thread to the table work's nice value (once per thread; threads it starts
/// inherit it).
/// A thread already lower is left alone; a failure is logged once and the work goes on at
/// the priority it has.
pub fn lower_this_thread() {
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    let target = NICE.load(Ordering::Relaxed);
    let me = Some(rustix::thread::gettid());
    match rustix::process::getpriority_process(me) {
        Ok(nice) if nice >= target => {}
        _ => {
            if let Err(e) = rustix::process::setpriority_process(me, target) {
                log::warn!("cannot lower the priority of table work: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_work_runs_below_the_thread_that_started_it_and_its_children_inherit() {
        let (own, lowered, child) = std::thread::spawn(|| {
            let me = Some(rustix::thread::gettid());
            let own = rustix::process::getpriority_process(me).expect("own priority");
            lower_this_thread();
            lower_this_thread();
            let lowered = rustix::process::getpriority_process(me).expect("lowered");
            let child = std::thread::spawn(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                    .expect("child priority")
            })
            .join()
            .expect("child thread");
            (own, lowered, child)
        })
        .join()
        .expect("test thread");
        assert_eq!(lowered, own.max(DEFAULT_NICE));
        assert_eq!(child, lowered);
        // This thread was not touched.
        let here = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        assert_eq!(here.expect("this thread"), own);
    }
}

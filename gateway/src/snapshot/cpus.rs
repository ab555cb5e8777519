//! Where table work runs: `gateway.table_cpus`, and where everything else does:
//! `gateway.worker_cpus`. On a core the proxy workers keep busy, any other thread that wakes
//! there raises the traffic's tail latency, however little it runs: a thread that only spins,
//! 2 % of such a core in 100 µs runs, raised the p99 by a third or more in `ctl_scale`
//! (benches/DELTA-RESULTS.md), while the same deltas applied on another core left it within
//! noise. A gateway with a core to spare names it in `table_cpus`, and its table work (the
//! admin API that receives tables, a delta's apply, freeing replaced snapshots, the journal's
//! compaction, pulling from realmctl) runs there, off the workers' cores.
//!
//! The table CPUs are kept for table work: unless `worker_cpus` names others, every other
//! thread runs on the CPUs the process was started on but those. At start, before any other
//! thread, the whole process is pinned to its worker CPUs (the proxy's workers and every
//! later thread inherit them). On four CPUs `table_cpus: [3]` alone keeps the workers on 0–2
//! and table work on 3; `worker_cpus` names a narrower set (`[0, 1]`: CPU 2 left to other
//! processes). The table CPUs need not be among those the process was started on: `taskset
//! -c 0-2 realmgate` with `table_cpus: [3]` does the same as the first. Both must
//! name CPUs the kernel lets the process use (online, in its cpuset), which is tried at
//! start, and may not share one. Each piece of table work moves its thread there as it starts
//! (one `sched_setaffinity`), so a thread pool it shares, or a process pinned from outside
//! after start, still ends up right; a paced apply gives its thread its old CPUs back at its
//! end, and a full table is applied on both sets (its parallel parse would otherwise inherit
//! the table CPUs alone).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicBool, Ordering};

/// CPUs named in the configuration (`gateway.table_cpus`, `gateway.worker_cpus`); none
/// named: wherever the process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpus(Option<CpuSet>);

impl Cpus {
    /// From the configuration: one or more CPUs, each one the kernel lets this process
    /// use (tried, one by one, on a thread of its own).
    pub fn parse(list: &[usize]) -> Result<Cpus, String> {
        if list.is_empty() {
            return Err("must name at least one CPU (or be left out)".into());
        }
        let mut set = CpuSet::new();
        for &cpu in list {
            if set.set(cpu).is_err() {
                return Err(format!(
                    "CPU {cpu} is not one this process can run on (CPUs are numbered below {})",
                    CpuSet::count()
                ));
            }
        }
        let cpus = list.to_vec();
        let refused = std::thread::Builder::new()
            .name("table-cpus".into())
            .spawn(move || {
                cpus.into_iter().find_map(|cpu| {
                    let mut one = CpuSet::new();
                    one.set(cpu).ok()?;
                    sched_setaffinity(Pid::from_raw(0), &one)
                        .err()
                        .map(|e| (cpu, e))
                })
            })
            .map_err(|e| format!("cannot try the CPUs: {e}"))?
            .join()
            .map_err(|_| "cannot try the CPUs".to_string())?;
        match refused {
            Some((cpu, e)) => Err(format!(
                "CPU {cpu} is not one this process can run on ({e}; offline, or outside its cpuset)"
            )),
            None => Ok(Cpus(Some(set))),
        }
    }

    /// Whether CPUs are named.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// How many CPUs are named (zero: none).
    pub fn count(&self) -> usize {
        self.0.map_or(0, |set| members(&set).count())
    }

    /// The first CPU named in both, if any.
    pub fn shared_with(&self, other: &Cpus) -> Option<usize> {
        let (a, b) = (self.0.as_ref()?, other.0.as_ref()?);
        members(a).find(|&c| b.is_set(c).unwrap_or(false))
    }

    /// The CPUs the calling thread may run on but these (for the rest of a process whose
    /// table work runs on these); none if none are named, or if that leaves none.
    pub fn the_others(&self) -> Cpus {
        let (Some(named), Ok(mut rest)) = (self.0, this_thread()) else {
            return Cpus::default();
        };
        for c in members(&named) {
            let _ = rest.unset(c);
        }
        let any = members(&rest).next().is_some();
        Cpus(any.then_some(rest))
    }

    /// These and every CPU the calling thread may run on (where a full table's parallel
    /// parse runs when table work has CPUs of its own); none if none are named.
    pub fn and_this_thread(&self) -> Cpus {
        let (Some(named), Ok(mut all)) = (self.0, this_thread()) else {
            return Cpus::default();
        };
        for c in members(&named) {
            let _ = all.set(c);
        }
        Cpus(Some(all))
    }

    /// Run `f` with the calling thread on the named CPUs (the threads it starts inherit them),
    /// then give the thread its CPUs back, even if `f` panics.
    pub fn within<R>(self, f: impl FnOnce() -> R) -> R {
        struct Back(Option<CpuSet>);
        impl Drop for Back {
            fn drop(&mut self) {
                Cpus::leave(self.0.take());
            }
        }
        let _back = Back(self.enter());
        f()
    }

    /// Pin every thread of this process to the named CPUs (threads it starts later inherit
    /// the caller's); nothing if none are named.
    pub fn pin_process(&self) -> Result<(), String> {
        let Some(set) = self.0 else {
            return Ok(());
        };
        let tasks = std::fs::read_dir("/proc/self/task")
            .map_err(|e| format!("cannot list this process's threads: {e}"))?;
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
            else {
                continue;
            };
            match sched_setaffinity(Pid::from_raw(tid), &set) {
                // A thread that ended since the listing.
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(format!("cannot pin thread {tid} there: {e}")),
            }
        }
        Ok(())
    }

    /// Move the calling thread onto the named CPUs, if any; what it ran on before (to give
    /// back with [`Cpus::leave`]), `None` if nothing was moved.
    pub fn enter(self) -> Option<CpuSet> {
        let set = self.0?;
        let before = this_thread().ok()?;
        if before == set {
            return None;
        }
        match sched_setaffinity(Pid::from_raw(0), &set) {
            Ok(()) => Some(before),
            Err(e) => {
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    log::warn!("gateway.table_cpus: a thread could not move to the CPUs named for its work ({e}); it runs where it was");
                }
                None
            }
        }
    }

    /// Give the calling thread back the CPUs [`Cpus::enter`] moved it from.
    pub fn leave(before: Option<CpuSet>) {
        if let Some(before) = before {
            let _ = sched_setaffinity(Pid::from_raw(0), &before);
        }
    }
}

/// The CPUs the calling thread may run on.
pub fn this_thread() -> nix::Result<CpuSet> {
    sched_getaffinity(Pid::from_raw(0))
}

/// The CPUs in `set`, in order.
fn members(set: &CpuSet) -> impl Iterator<Item = usize> + '_ {
    (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false))
}

/// The CPUs the calling thread may run on, in order (for tests).
#[cfg(test)]
pub fn this_thread_list() -> Vec<usize> {
    members(&this_thread().expect("affinity")).collect()
}

/// `0-3,6` (for tests that say where a thread ran).
#[cfg(test)]
pub fn describe(set: &CpuSet) -> String {
    let on: Vec<usize> = members(set).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < on.len() {
        let mut j = i;
        while j + 1 < on.len() && on[j + 1] == on[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            on[i].to_string()
        } else {
            format!("{}-{}", on[i], on[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// The last CPU the calling thread may run on (for tests that pin one).
#[cfg(test)]
pub fn last_allowed() -> usize {
    *this_thread_list().last().expect("a CPU")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_cpus_must_be_ones_the_process_can_run_on() {
        let cpu = last_allowed();
        assert!(Cpus::parse(&[cpu]).expect("allowed").is_set());
        assert!(!Cpus::default().is_set());
        let empty = Cpus::parse(&[]).expect_err("empty");
        assert!(empty.contains("at least one CPU"), "{empty}");
        let beyond = Cpus::parse(&[cpu, CpuSet::count() + 5]).expect_err("beyond");
        assert!(
            beyond.contains("not one this process can run on"),
            "{beyond}"
        );
        // A CPU number within the set's range that this machine does not have.
        let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|p| p.trim().rsplit(['-', ',']).next()?.parse::<usize>().ok())
            .expect("/sys/devices/system/cpu/possible");
        if possible + 1 < CpuSet::count() {
            let absent = Cpus::parse(&[possible + 1]).expect_err("absent");
            assert!(
                absent.contains("not one this process can run on"),
                "{absent}"
            );
        }
    }

    #[test]
    fn a_process_started_on_fewer_cpus_may_name_another() {
        std::thread::spawn(|| {
            let mine = this_thread_list();
            let [first, .., last] = mine[..] else {
                return; // one CPU: nothing else to name
            };
            let mut one = CpuSet::new();
            one.set(first).expect("cpu");
            sched_setaffinity(Pid::from_raw(0), &one).expect("pin to the first");
            // As under `taskset -c <first>`: the last is still one it can use.
            let cpus = Cpus::parse(&[last]).expect("another CPU of the machine");
            assert!(cpus.enter().is_some());
            assert_eq!(
                describe(&this_thread().expect("affinity")),
                last.to_string()
            );
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_thread_enters_the_named_cpus_and_leaves_them_as_it_was() {
        std::thread::spawn(|| {
            let before = this_thread().expect("affinity");
            let cpu = last_allowed();
            let cpus = Cpus::parse(&[cpu]).expect("allowed");
            let moved = cpus.enter();
            let here = this_thread().expect("affinity");
            assert!(here.is_set(cpu).expect("cpu"));
            assert_eq!(describe(&here), cpu.to_string(), "only the named CPU");
            Cpus::leave(moved);
            assert_eq!(this_thread().expect("affinity"), before, "given back");
            // None named: nothing moves.
            assert_eq!(Cpus::default().enter(), None);
            assert_eq!(this_thread().expect("affinity"), before);
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn named_cpus_are_counted_and_a_shared_one_is_found() {
        let mine = this_thread_list();
        let none = Cpus::default();
        assert_eq!(none.count(), 0);
        let every = Cpus::parse(&mine).expect("allowed");
        assert_eq!(every.count(), mine.len());
        let last = Cpus::parse(&[mine[mine.len() - 1]]).expect("allowed");
        assert_eq!(last.count(), 1);
        assert_eq!(every.shared_with(&last), Some(mine[mine.len() - 1]));
        assert_eq!(last.shared_with(&every), Some(mine[mine.len() - 1]));
        assert_eq!(none.shared_with(&every), None, "none named shares nothing");
        assert_eq!(every.shared_with(&none), None);
        if let [first, .., last_cpu] = mine[..] {
            let first = Cpus::parse(&[first]).expect("allowed");
            assert_eq!(first.shared_with(&last), None, "{first:?} and {last_cpu}");
        }
    }

    #[test]
    fn a_thread_on_the_table_cpu_runs_a_full_apply_on_every_cpu_and_goes_back() {
        std::thread::spawn(|| {
            let all = this_thread().expect("affinity");
            let cpu = last_allowed();
            let table = Cpus::parse(&[cpu]).expect("allowed");
            let every = table.and_this_thread();
            assert_eq!(Cpus::default().and_this_thread(), Cpus::default());
            // As the admin API's thread is after it took a table push.
            let moved = table.enter();
            let (inside, started) = every.within(|| {
                let inside = this_thread().expect("affinity");
                // A thread started meanwhile (a parallel parse's) inherits every CPU.
                let started = std::thread::spawn(|| this_thread().expect("affinity"))
                    .join()
                    .expect("thread");
                (inside, started)
            });
            assert_eq!(inside, all, "every CPU while it runs");
            assert_eq!(started, all, "and the threads it starts");
            assert_eq!(
                describe(&this_thread().expect("affinity")),
                cpu.to_string(),
                "back"
            );
            let caught = std::panic::catch_unwind(|| every.within(|| panic!("in a full apply")));
            assert!(caught.is_err());
            assert_eq!(
                describe(&this_thread().expect("affinity")),
                cpu.to_string(),
                "back after a panic"
            );
            Cpus::leave(moved);
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn the_others_are_the_threads_cpus_but_the_named_ones() {
        std::thread::spawn(|| {
            let mine = this_thread_list();
            assert_eq!(Cpus::default().the_others(), Cpus::default());
            let every = Cpus::parse(&mine).expect("allowed");
            assert_eq!(every.the_others(), Cpus::default(), "none left");
            let last = *mine.last().expect("a CPU");
            let others = Cpus::parse(&[last]).expect("allowed").the_others();
            if mine.len() == 1 {
                assert_eq!(others, Cpus::default());
            } else {
                assert_eq!(
                    others,
                    Cpus::parse(&mine[..mine.len() - 1]).expect("allowed")
                );
            }
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn cpu_lists_are_described_in_ranges() {
        let mut set = CpuSet::new();
        for c in [0, 1, 2, 3, 6, 8, 9] {
            set.set(c).expect("cpu");
        }
        assert_eq!(describe(&set), "0-3,6,8-9");
        assert_eq!(describe(&CpuSet::new()), "");
    }
}

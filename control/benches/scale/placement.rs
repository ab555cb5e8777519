//! Where the bench's processes run and what CPU they used: `--pin` puts the data plane under
//! measurement (the gateway wrk drives, wrk, the upstream) on one set of cores and the control
//! plane (realmctl, the API clients, the second gateway) on another, as separate machines
//! would; [`Cpu`] reads each process's CPU time by thread name, and the time its threads
//! waited for a core, from `/proc`, so a phase's report says who used the cores and who
//! queued for them.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::collections::BTreeMap;

/// Which cores each side gets (`None`: no pinning, every process on every core).
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub data: Option<usize>,
    pub control: Option<usize>,
}

impl Placement {
    pub const SHARED: Placement = Placement {
        data: None,
        control: None,
    };

    /// The data plane on core `data`, the control plane on core `control`.
    pub fn pinned(data: usize, control: usize) -> Placement {
        Placement {
            data: Some(data),
            control: Some(control),
        }
    }

    pub fn describe(&self) -> String {
        match (self.data, self.control) {
            (Some(d), Some(c)) => format!(
                "pinned: data plane (gateway 1, wrk, upstream) on core {d}, control plane (realmctl, API clients, gateway 2) on core {c}"
            ),
            _ => "shared: every process on every core".into(),
        }
    }
}

fn set(tid: i32, core: usize) -> nix::Result<()> {
    let mut cpus = CpuSet::new();
    cpus.set(core)?;
    sched_setaffinity(Pid::from_raw(tid), &cpus)
}

/// Pin every thread of process `pid` to `core` (threads it starts later inherit it).
pub fn pin_process(pid: u32, core: Option<usize>) {
    let Some(core) = core else { return };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        eprintln!("placement: process {pid} is gone");
        return;
    };
    for t in tasks.filter_map(Result::ok) {
        if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if let Err(e) = set(tid, core) {
                eprintln!("placement: thread {tid} of {pid}: {e}");
            }
        }
    }
}

/// Pin the calling thread to `core` (processes it spawns inherit it).
pub fn pin_this_thread(core: Option<usize>) {
    if let Some(core) = core {
        if let Err(e) = set(0, core) {
            eprintln!("placement: this thread: {e}");
        }
    }
}

/// The child of this process that listens on `port` (a gateway's admin port).
pub fn child_listening(port: u16) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent(*pid) == Some(me))
        .find(|pid| realmgate_e2e::process::listens(*pid, port))
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a `/proc/…/stat` line, in clock ticks, and the thread's name.
fn ticks(stat: &str) -> Option<(String, u64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14, stime 15.
    let u: u64 = f.get(11)?.parse().ok()?;
    let s: u64 = f.get(12)?.parse().ok()?;
    Some((name, u + s))
}

/// CPU time of some processes, by process label and thread name (threads that ended are
/// counted in no name: their time is in the process total only), and the time their threads
/// spent runnable but waiting for a core (`/proc/…/task/…/schedstat`: CPU contention).
#[derive(Clone, Default)]
pub struct Cpu {
    procs: Vec<(String, u32)>,
    /// label → (process total, thread name → ticks)
    seen: BTreeMap<String, (u64, BTreeMap<String, u64>)>,
    /// label → nanoseconds its live threads waited on a run queue
    waited: BTreeMap<String, u64>,
    /// The machine's busy ticks (all cores, `/proc/stat`).
    machine: u64,
}

fn machine_busy() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: all but idle and iowait.
    v.iter().sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

impl Cpu {
    pub fn new(procs: Vec<(String, u32)>) -> Cpu {
        Cpu {
            procs,
            ..Cpu::default()
        }
    }

    /// The counters now.
    pub fn sample(&self) -> Cpu {
        let mut seen = BTreeMap::new();
        let mut waited = BTreeMap::new();
        for (label, pid) in &self.procs {
            let total = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| ticks(&s))
                .map_or(0, |t| t.1);
            let mut threads: BTreeMap<String, u64> = BTreeMap::new();
            let mut wait = 0u64;
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for t in tasks.filter_map(Result::ok) {
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                    if let Some((name, n)) = ticks(&stat) {
                        *threads.entry(name).or_default() += n;
                    }
                    // "run_ns wait_ns timeslices"
                    let sched =
                        std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
                    wait += sched
                        .split_whitespace()
                        .nth(1)
                        .and_then(|w| w.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            seen.insert(label.clone(), (total, threads));
            waited.insert(label.clone(), wait);
        }
        Cpu {
            procs: self.procs.clone(),
            seen,
            waited,
            machine: machine_busy(),
        }
    }

    /// What was used between `earlier` and this sample, as report lines: each process's
    /// share of one core over `seconds`, with its busiest thread names.
    pub fn since(&self, earlier: &Cpu, seconds: f64) -> Vec<String> {
        // USER_HZ: 100 on every Linux this runs on.
        let hz = 100.0;
        let share = |t: u64| t as f64 / hz / seconds * 100.0;
        let mut out = vec![format!(
            "machine (all processes, 2 cores = 200 %): {:.0} %",
            share(self.machine.saturating_sub(earlier.machine))
        )];
        for (label, (total, threads)) in &self.seen {
            let (t0, th0) = earlier
                .seen
                .get(label)
                .cloned()
                .unwrap_or_else(|| (0, BTreeMap::new()));
            let mut by: Vec<(String, u64)> = threads
                .iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        t.saturating_sub(th0.get(n).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, t)| *t > 0)
                .collect();
            by.sort_by_key(|b| std::cmp::Reverse(b.1));
            let names: Vec<String> = by
                .iter()
                .take(4)
                .map(|(n, t)| format!("{n} {:.0} %", share(*t)))
                .collect();
            let wait_ns = self
                .waited
                .get(label)
                .copied()
                .unwrap_or(0)
                .saturating_sub(earlier.waited.get(label).copied().unwrap_or(0));
            out.push(format!(
                "{label}: {:.0} % ({}); its threads waited for a core {:.0} % of the time",
                share(total.saturating_sub(t0)),
                names.join(", "),
                wait_ns as f64 / 1e9 / seconds * 100.0
            ));
        }
        out
    }
}

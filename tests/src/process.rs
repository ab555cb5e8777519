//! Child processes, temp dirs and free ports: the plumbing under every cross-process test.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory under the system temp dir, removed (with its content) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("realmgate-e2e")
            .join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name`, as a convenience for files inside the dir.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `content` to `path/name` and returns the full path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `n` distinct free loopback addresses, none handed out before by this process. All are
/// bound at once before being released, so they differ from each other; a port this process
/// already handed out is held while another is picked (the kernel can offer the same free
/// port to two binds in a row, and two servers of one test were given one port that way). A
/// race with another process is possible but unlikely.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut picked = Vec::with_capacity(n);
    while picked.len() < n {
        assert!(
            held.len() < n + 1000,
            "no free loopback port left that this process has not handed out"
        );
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local_addr");
        if given.insert(addr.port()) {
            picked.push(addr);
        }
        held.push(l);
    }
    picked
}

/// The workspace root: the parent of this package's manifest dir.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The gateway binary: `$REALMGATE_BIN`, else `<workspace>/target/debug/realmgate`.
/// Panics with a hint when it does not exist.
pub fn realmgate_bin() -> PathBuf {
    workspace_bin("realmgate", "REALMGATE_BIN")
}

/// A workspace binary: `$env` (tests/run sets it), else `<workspace>/target/debug/<name>`.
/// Panics with a hint when it does not exist.
pub fn workspace_bin(name: &str, env: &str) -> PathBuf {
    let p = match std::env::var_os(env) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/debug").join(name),
    };
    assert!(
        p.is_file(),
        "{name} binary not found at {} (build it with `cargo build -p {name}`, or set {env})",
        p.display()
    );
    p
}

/// A spawned child process whose stdout/stderr go to files in `log_dir`. It is killed (SIGKILL)
/// and reaped on drop, so no test leaves a process or a zombie behind, even when it panics; when
/// the thread is panicking, the logs are printed so the failing test shows them.
pub struct Proc {
    label: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Spawns `program args`; output is appended to `<log_dir>/<label>.stdout|stderr`, so a
    /// restarted process keeps one log across its lives.
    pub fn spawn(label: &str, program: &Path, args: &[OsString], log_dir: &Path) -> Proc {
        let stdout = log_dir.join(format!("{label}.stdout"));
        let stderr = log_dir.join(format!("{label}.stderr"));
        let open = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("cannot open log {}: {e}", p.display()))
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(open(&stdout))
            .stderr(open(&stderr));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {} {args:?}: {e}", program.display()));
        Proc {
            label: label.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status if the process has ended (and reaps it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Both logs, labelled, for failure messages.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        format!(
            "----- {} stdout ({}) -----\n{}\n----- {} stderr ({}) -----\n{}",
            self.label,
            self.stdout.display(),
            tail(&read(&self.stdout)),
            self.label,
            self.stderr.display(),
            tail(&read(&self.stderr)),
        )
    }
}

/// The last 200 lines: enough to diagnose, short enough to read.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(200);
    lines[start..].join("\n")
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// What a process that ran to completion did.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when killed by a signal (including our timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Finished {
    /// stdout and stderr together, for "the output lists every problem" assertions.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `program args` to completion (killing it after `timeout`), capturing its output.
/// Used for `realmgate check ...`, which must exit on its own.
pub fn run_to_completion(program: &Path, args: &[OsString], timeout: Duration) -> Finished {
    let dir = TempDir::new("run");
    let mut proc = Proc::spawn("run", program, args, dir.path());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = proc.try_wait() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    proc.kill();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Finished {
        code: status.and_then(|s| s.code()),
        stdout: read(&proc.stdout),
        stderr: read(&proc.stderr),
        timed_out,
    }
}

/// Does process `pid` hold the listening socket on `port` (from `/proc`)? Ports come from
/// [`free_addrs`] and are free only until someone binds them: a parallel test's process may
/// own the port instead, answer its health check, while this one exits on its failed bind.
pub fn listens(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|t| inodes.iter().any(|i| t.to_string_lossy() == *i))
    })
}

#[cfg(test)]
mod tests {
    use super::free_addrs;
    use std::collections::HashSet;

    #[test]
    fn free_addrs_never_hands_out_a_port_twice() {
        let mut seen = HashSet::new();
        for n in [1, 1, 3, 1, 2, 1, 1, 5, 1, 1] {
            for _ in 0..20 {
                for a in free_addrs(n) {
                    assert!(a.ip().is_loopback(), "{a}");
                    assert!(seen.insert(a.port()), "port {} handed out twice", a.port());
                }
            }
        }
        assert_eq!(seen.len(), 20 * 17);
    }
}

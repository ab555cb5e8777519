"""The load suite's plumbing (benches/run): packages and the release build, process groups
and their CPU time from /proc, free ports, HTTP checks, and the result records."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator


WORKSPACE = Path(__file__).resolve().parent.parent
PEER_ORDER = ("nginx", "haproxy", "realmgate", "realmgate-public", "realmgate-assertion",
              "lean-loop")
APT_PACKAGES = ("nginx", "haproxy", "wrk")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MEASURED_HOST = "bench.test"
UPSTREAM_BODY = ("realmgate-bench-fixed-upstream-body-" + "x" * 100)[:100]
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class PeerFailed(Exception):
    """A peer could not be started, verified or measured; the others go on."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Packages and build
# --------------------------------------------------------------------------

def which(binary: str) -> str | None:
    return shutil.which(binary, path=SBIN_PATH)


def ensure_packages() -> None:
    """apt-get install whatever of nginx/haproxy/wrk is missing, services left stopped."""
    missing = [pkg for pkg in APT_PACKAGES if which(pkg) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {' '.join(missing)}; run as root or install them first")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not all(apt_has_candidate(pkg) for pkg in missing):
        apt_get(["update"], env)
    install = ["install", "-y", "--no-install-recommends", *missing]
    with services_not_started():
        if not apt_get(install, env, check=False):
            apt_get(["update"], env)
            apt_get(install, env)
    disable_system_services(missing)


def apt_has_candidate(pkg: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True).stdout
    return "Candidate:" in out and "Candidate: (none)" not in out


def apt_get(args: list[str], env: dict[str, str], check: bool = True) -> bool:
    cmd = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args]
    ok = subprocess.run(cmd, env=env, stdout=sys.stderr).returncode == 0
    if check and not ok:
        sys.exit(f"failed: {shlex.join(cmd)}")
    return ok


@contextlib.contextmanager
def services_not_started() -> Iterator[None]:
    """Deny service starts during package installation (policy-rc.d exit 101)."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def disable_system_services(packages: list[str]) -> None:
    """On a systemd host, keep the packages' own services off (now and after reboot)."""
    if not Path("/run/systemd/system").is_dir():
        return
    services = [pkg for pkg in packages if pkg in ("nginx", "haproxy")]
    if services:
        subprocess.run(["systemctl", "disable", "--now", *services], stdout=sys.stderr)


def build_realmgate() -> Path:
    log("building realmgate (cargo build --release -p realmgate)")
    result = subprocess.run(["cargo", "build", "--release", "-p", "realmgate"],
                            cwd=WORKSPACE, stdout=sys.stderr)
    if result.returncode != 0:
        raise PeerFailed("cargo build --release -p realmgate failed")
    target = Path(os.environ.get("CARGO_TARGET_DIR", WORKSPACE / "target"))
    return target / "release" / "realmgate"


def tool_versions(peers: list[str]) -> str:
    """Version of each tool from `<tool> -v`: the upstream/load tools and selected peers."""
    tools = ["nginx", "wrk"] + (["haproxy"] if "haproxy" in peers else [])
    versions = []
    for tool in tools:
        out = subprocess.run([which(tool) or tool, "-v"], capture_output=True, text=True)
        found = re.search(r"\d+\.\d+[\w.+~-]*", out.stdout + out.stderr)
        versions.append(f"{tool} {found.group(0) if found else '?'}")
    return ", ".join(versions)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

class Processes:
    """Every process the suite starts, each in its own process group."""

    def __init__(self, prefix: list[str] | None = None) -> None:
        self._procs: list[subprocess.Popen] = []
        # `taskset -c CPUS` for every server under --pin-load.
        self.prefix = prefix or []

    def start(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen([*self.prefix, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            stop_group(proc)
        self._procs.clear()


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, give it STOP_TIMEOUT_S, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so that a zombie does not count as alive
        if not group_alive(proc.pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def process_tree(root: int) -> list[int]:
    """root and all its descendants, from /proc/*/stat parent pids."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat:
                children.setdefault(int(stat[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(root: int) -> float:
    """utime + stime of root and its descendants (all threads), in seconds."""
    ticks = 0
    for pid in process_tree(root):
        stat = read_stat(pid)
        if stat:
            ticks += int(stat[11]) + int(stat[12])  # utime, stime (fields 14, 15)
    return ticks / CLK_TCK


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that are free now (bound together, then released)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Request:
    host: str
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Check:
    request: Request
    status: int
    body: str | None = None


def http_call(port: int, method: str, path: str, headers: dict[str, str],
              body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def verify(port: int, check: Check) -> None:
    req = check.request
    headers = {"Host": req.host, **dict(req.headers)}
    try:
        status, body = http_call(port, "GET", req.path, headers)
    except OSError as err:
        raise PeerFailed(f"GET {req.host}{req.path}: {err}") from err
    if status != check.status:
        raise PeerFailed(f"GET {req.host}{req.path}: status {status}, expected {check.status}"
                         f" (body {body[:200]!r})")
    if check.body is not None and body.decode(errors="replace") != check.body:
        raise PeerFailed(f"GET {req.host}{req.path}: unexpected body {body[:200]!r}")


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, log_path: Path,
               what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            raise PeerFailed(f"exited with {proc.returncode} while waiting for {what}"
                             + with_log(log_path))
        if time.monotonic() > deadline:
            raise PeerFailed(f"{what} not ready after {START_TIMEOUT_S:.0f}s" + with_log(log_path))
        time.sleep(0.1)


def with_log(path: Path) -> str:
    tail = log_tail(path)
    return f"; {path.name}:\n{tail}" if tail else f" ({path.name} is empty)"


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def status_is(port: int, path: str, status: int) -> bool:
    try:
        return http_call(port, "GET", path, {"Host": "127.0.0.1"})[0] == status
    except OSError:
        return False


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclasses.dataclass(frozen=True)
class RunResult:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    upstream_us_per_req: float
    errors: int

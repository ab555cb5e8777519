"""CPU pinning and the open-loop (fixed-rate) mode of `benches/run`.

`--pin-load CPU` runs the load generator (wrk, openloop) under `taskset -c CPU` and every
server (the peers and the fixed upstream) on the other CPUs. `--open-loop` then measures
each peer at half its own measured peak with `openloop` (tests/src/bin/openloop.rs: requests
leave on a fixed schedule and latency counts from the scheduled start, as wrk2 does), and the
fixed upstream directly at the same rate, so the difference is the latency the proxy adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parent.parent


def cpu_split(load_cpu: int | None) -> tuple[list[str], list[str]]:
    """`taskset` prefixes for (the load generator, the servers); empty when not pinning."""
    if load_cpu is None:
        return [], []
    cpus = sorted(os.sched_getaffinity(0))
    if load_cpu not in cpus:
        sys.exit(f"--pin-load {load_cpu}: not one of this process's CPUs {cpus}")
    others = [c for c in cpus if c != load_cpu]
    if not others:
        sys.exit("--pin-load needs at least two CPUs")
    taskset = "taskset"
    return ([taskset, "-c", str(load_cpu)],
            [taskset, "-c", ",".join(map(str, others))])


def build_openloop(given: Path | None) -> Path:
    if given is not None:
        return given.resolve()
    print("[bench] building openloop (cargo build -p realmgate-e2e --bin openloop)",
          file=sys.stderr, flush=True)
    subprocess.run(["cargo", "build", "-p", "realmgate-e2e", "--bin", "openloop"],
                   cwd=WORKSPACE, stdout=sys.stderr, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", WORKSPACE / "target"))
    return target / "debug" / "openloop"


def openloop_argv(binary: Path, prefix: list[str], port: int, host: str, path: str,
                  headers: tuple[tuple[str, str], ...], rate: float, connections: int,
                  duration: int, warmup: int) -> list[str]:
    argv = [*prefix, str(binary), "--port", str(port), "--host", host, "--path", path,
            "--rate", f"{rate:.0f}", "--connections", str(connections),
            "--duration", str(duration), "--warmup", str(warmup)]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    return argv


def run_openloop(argv: list[str], seconds: int) -> dict:
    """One fixed-rate run; its JSON result (latencies in µs)."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"openloop failed ({result.returncode}): {result.stderr.strip()}")
    return json.loads(result.stdout)

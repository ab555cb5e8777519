#!/usr/bin/env python3
"""Convergence of a gateway fleet after a one-tenant change: push alone against long-poll alone.

One realmctl and N realmgate processes on loopback, in two runs side by side:

* push:      realmctl knows every gateway (`gateways.urls`) and pushes each new table;
             the gateways have no control_url, so they never poll.
* long-poll: realmctl knows no gateway; each gateway has `control_url` and keeps a
             `GET /v1/table?after=<version>` open, so realmctl answers the waiting polls.

For each run: T tenants are created, then C one-tenant changes are made one after the other
(`PATCH /v1/tenants/{id}` with a new display name). After each change every gateway's admin
API is polled (`GET /v1/table`, keep-alive connections, a converged gateway leaves the poll
set) until all serve the change's table version; then each gateway's
`realmgate_table_applied_timestamp_seconds` says when it swapped that version in, so the
times do not depend on the poll's own period (reported beside them). Reported per run: the
median and the max over the C changes of the time until ALL gateways serve it, the median
time until half of them do, realmctl's CPU per change, and realmctl's CPU while the fleet is
idle (long polls held open, or push resync probes) over an idle window.

Timings on these machines are noisy; the two runs go in one invocation so they can be
compared. Python 3.11 standard library only.

    benches/convergence.py --gateways 100 --changes 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
OPERATOR_TOKEN = "bench-operator-token-0123456789"
GATEWAY_TOKEN = "bench-gateway-token-0123456789"
START_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 60.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gateways", type=int, default=100, help="gateway processes (default 100)")
    p.add_argument("--changes", type=int, default=20, help="one-tenant changes per run (default 20)")
    p.add_argument("--tenants", type=int, default=200, help="tenants in the table (default 200)")
    p.add_argument("--idle-s", type=float, default=30.0, help="idle window for realmctl's CPU (default 30 s)")
    p.add_argument("--modes", default="push,long-poll", help="runs, in order (default push,long-poll)")
    p.add_argument("--realmgate-bin", type=Path, default=WORKSPACE / "target/release/realmgate")
    p.add_argument("--realmctl-bin", type=Path, default=WORKSPACE / "target/release/realmctl")
    p.add_argument("--build", action="store_true", help="cargo build --release both binaries first")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return p.parse_args()


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together, so no duplicates)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class Http:
    """One keep-alive connection to one loopback server."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.token = token
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            headers = {"Authorization": f"Bearer {self.token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw.decode(errors="replace")
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Fleet:
    """realmctl and its gateways for one run; everything stopped on exit."""

    def __init__(self, args: argparse.Namespace, mode: str, work: Path):
        self.args = args
        self.mode = mode
        self.work = work / mode
        self.work.mkdir(parents=True)
        self.procs: list[subprocess.Popen] = []
        self.realmctl: subprocess.Popen | None = None
        ports = free_ports(1 + 2 * args.gateways)
        self.ctl_port = ports[0]
        self.gateways = [(ports[1 + 2 * i], ports[2 + 2 * i]) for i in range(args.gateways)]
        self.ctl = Http(self.ctl_port, OPERATOR_TOKEN)
        self.admins = [Http(admin, GATEWAY_TOKEN) for _, admin in self.gateways]

    def write(self, name: str, text: str, mode: int = 0o600) -> Path:
        path = self.work / name
        path.write_text(text)
        path.chmod(mode)
        return path

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        out = open(self.work / log, "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "RUST_LOG": "warn"})
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        admin_token = self.write("operator-token", OPERATOR_TOKEN)
        gw_token = self.write("gateway-token", GATEWAY_TOKEN)
        urls = [f"http://127.0.0.1:{admin}" for _, admin in self.gateways] if self.mode == "push" else []
        conf = self.write("realmctl.yaml", (
            f"listen: 127.0.0.1:{self.ctl_port}\n"
            f"data_dir: {self.work / 'realmctl-data'}\n"
            f"admin_token_file: {admin_token}\n"
            f"max_concurrent_requests: 256\n"
            "gateways:\n"
            f"  urls: {json.dumps(urls)}\n"
            f"  token_file: {gw_token}\n"
            # The shortest debounce (1 ms): the transport is measured, not the batching of bursts.
            "  push: {debounce_ms: 1, resync_interval_ms: 30000}\n"
        ))
        self.realmctl = self.spawn([str(self.args.realmctl_bin), "serve", "--conf", str(conf)], "realmctl.log")
        wait_for(lambda: self.ctl.call("GET", "/healthz")[0] == 200, "realmctl answering")
        control = f"\n  control_url: http://127.0.0.1:{self.ctl_port}" if self.mode == "long-poll" else ""
        for i, (listen, admin) in enumerate(self.gateways):
            conf = self.write(f"g{i}.yaml", (
                "pingora: {threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}\n"
                "gateway:\n"
                f"  listen: 127.0.0.1:{listen}\n"
                f"  admin_listen: 127.0.0.1:{admin}\n"
                f"  admin_token_file: {gw_token}\n"
                f"  state_dir: {self.work / f'g{i}-state'}{control}\n"
            ))
            self.spawn([str(self.args.realmgate_bin), "--conf", str(conf)], f"g{i}.log")
        for h in self.admins:
            wait_for(lambda h=h: h.call("GET", "/healthz")[0] == 200, f"gateway admin :{h.port} answering")

    def version(self, i: int) -> int:
        status, body = self.admins[i].call("GET", "/v1/table")
        return body.get("version", 0) if status == 200 and isinstance(body, dict) else 0

    def applied_at(self, i: int) -> float:
        """When gateway i swapped in the table it serves (Unix seconds)."""
        status, text = self.admins[i].call("GET", "/metrics")
        for line in str(text).splitlines():
            if line.startswith("realmgate_table_applied_timestamp_seconds "):
                return float(line.split()[1])
        raise SystemExit(f"gateway :{self.admins[i].port}: no realmgate_table_applied_timestamp_seconds ({status})")

    def converge(self, version: int, started: float) -> tuple[list[float], float]:
        """Seconds from `started` (monotonic) until each gateway was seen serving `version`,
        and the median sweep period (the resolution of those times)."""
        pending = set(range(len(self.admins)))
        seen: list[float] = []
        sweeps: list[float] = []
        deadline = started + CONVERGE_TIMEOUT_S
        while pending:
            sweep = time.monotonic()
            if sweep > deadline:
                raise SystemExit(f"{self.mode}: {len(pending)} gateway(s) never reached version {version}")
            for i in list(pending):
                if self.version(i) >= version:
                    seen.append(time.monotonic() - started)
                    pending.discard(i)
            sweeps.append(time.monotonic() - sweep)
            if pending:
                time.sleep(0.01)
        return sorted(seen), statistics.median(sweeps)

    def stop(self) -> None:
        for h in [self.ctl, *self.admins]:
            h.close()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(0.05)
    raise SystemExit(f"timed out: {what}")


def run(args: argparse.Namespace, mode: str, work: Path) -> dict:
    fleet = Fleet(args, mode, work)
    try:
        fleet.start()
        status, _ = fleet.ctl.call("PUT", "/v1/upstreams/app", {"endpoints": ["127.0.0.1:9"]})
        assert status in (200, 201), f"pool: {status}"
        version = 0
        for t in range(args.tenants):
            status, body = fleet.ctl.call("POST", "/v1/tenants", {
                "id": f"t{t}", "hosts": [f"t{t}.bench.test"], "display_name": f"t{t}",
                "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]})
            assert status == 201, f"tenant t{t}: {status} {body}"
            version = body["table_version"]
        fleet.converge(version, time.monotonic())
        all_in: list[float] = []
        half_in: list[float] = []
        seen_all: list[float] = []
        resolution: list[float] = []
        ctl_ticks = 0
        for c in range(args.changes):
            time.sleep(0.3)
            before = cpu_ticks(fleet.realmctl.pid)
            wall = time.time()
            started = time.monotonic()
            status, body = fleet.ctl.call("PATCH", f"/v1/tenants/t{c % args.tenants}", {"display_name": f"change {c}"})
            assert status == 200, f"change {c}: {status} {body}"
            seen, sweep = fleet.converge(body["table_version"], started)
            ctl_ticks += cpu_ticks(fleet.realmctl.pid) - before
            applied = sorted(fleet.applied_at(i) - wall for i in range(len(fleet.admins)))
            all_in.append(applied[-1])
            half_in.append(applied[len(applied) // 2])
            seen_all.append(seen[-1])
            resolution.append(sweep)
        # Idle: nothing changes; long polls stay open (or push workers wait for their resync).
        for h in fleet.admins:
            h.close()
        idle_before = cpu_ticks(fleet.realmctl.pid)
        time.sleep(args.idle_s)
        idle_ticks = cpu_ticks(fleet.realmctl.pid) - idle_before
        gw_rss = statistics.median(rss_bytes(p.pid) for p in fleet.procs[1:])
        return {
            "mode": mode,
            "all_median_ms": statistics.median(all_in) * 1000,
            "all_max_ms": max(all_in) * 1000,
            "half_median_ms": statistics.median(half_in) * 1000,
            "sweep_ms": statistics.median(resolution) * 1000,
            "seen_median_ms": statistics.median(seen_all) * 1000,
            "ctl_cpu_ms_per_change": ctl_ticks / CLK_TCK * 1000 / args.changes,
            "idle_cpu_ms_per_s": idle_ticks / CLK_TCK * 1000 / args.idle_s,
            "ctl_rss_mib": rss_bytes(fleet.realmctl.pid) / 2**20,
            "gw_rss_mib": gw_rss / 2**20,
        }
    finally:
        fleet.stop()


def main() -> None:
    args = parse_args()
    if args.build:
        subprocess.run(["cargo", "build", "--release", "-p", "realmgate", "-p", "realmctl"], cwd=WORKSPACE, check=True)
    for b in (args.realmgate_bin, args.realmctl_bin):
        if not b.exists():
            raise SystemExit(f"{b} missing: build with --build or give --realmgate-bin/--realmctl-bin")
    work = Path(tempfile.mkdtemp(prefix="realmgate-convergence-"))
    results = []
    try:
        for mode in args.modes.split(","):
            print(f"# {mode}: {args.gateways} gateways, {args.tenants} tenants, {args.changes} changes", file=sys.stderr)
            results.append(run(args, mode, work))
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.gateways} gateways, {args.tenants} tenants, {args.changes} one-tenant changes, "
          f"idle window {args.idle_s:.0f} s, {os.cpu_count()} cores\n")
    print("| mode | all gateways: median | all: max | half: median | all seen by the poll: median (sweep) | realmctl CPU / change | realmctl CPU idle | realmctl RSS | gateway RSS (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['all_median_ms']:.0f} ms | {r['all_max_ms']:.0f} ms | {r['half_median_ms']:.0f} ms "
              f"| {r['seen_median_ms']:.0f} ms ({r['sweep_ms']:.0f} ms) | {r['ctl_cpu_ms_per_change']:.1f} ms | {r['idle_cpu_ms_per_s']:.2f} ms/s "
              f"| {r['ctl_rss_mib']:.0f} MiB | {r['gw_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()

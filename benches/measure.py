"""The load suite's measurement and report (benches/run): wrk runs and their parsing,
interleaved rounds, medians and ratios, the markdown table, and the open-loop runs."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import loadgen
from plumbing import (
    MEASURED_HOST,
    PeerFailed,
    Request,
    RunResult,
    WrkResult,
    cpu_seconds,
    free_ports,
    log,
    verify,
    which,
)
from scenarios import Bench, Peer, SCENARIOS, Scenario


# --------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------
TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
LATENCY_RE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
REQUESTS_RE = re.compile(r"^\s*(\d+) requests in ", re.M)
RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKET_ERRORS_RE = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_argv(args: argparse.Namespace, port: int | str, load: Request, seconds: int,
             prefix: list[str] | None = None) -> list[str]:
    headers = [("Host", load.host), *load.headers]
    argv = [*(prefix or []), which("wrk") or "wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    return argv + [f"http://127.0.0.1:{port}{load.path}"]


def run_wrk(argv: list[str], seconds: int) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if result.returncode != 0:
        raise PeerFailed(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def parse_wrk(output: str) -> WrkResult:
    latencies = {pct: float(value) * TIME_UNITS_MS[unit]
                 for pct, value, unit in LATENCY_RE.findall(output)}
    requests, rps = REQUESTS_RE.search(output), RPS_RE.search(output)
    if not (requests and rps and {"50", "99"} <= latencies.keys()):
        raise PeerFailed(f"cannot parse wrk output:\n{output}")
    non_2xx = NON_2XX_RE.search(output)
    socket_errors = SOCKET_ERRORS_RE.search(output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + \
        (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return WrkResult(int(requests.group(1)), float(rps.group(1)),
                     latencies["50"], latencies["99"], errors)


def measure_once(bench: Bench, peer: Peer, load: Request) -> RunResult:
    args = bench.args
    if args.warmup:
        run_wrk(wrk_argv(args, peer.port, load, args.warmup, bench.load_prefix), args.warmup)
    cpu0, up0 = cpu_seconds(peer.pid), cpu_seconds(bench.upstream_pid)
    wrk = parse_wrk(run_wrk(wrk_argv(args, peer.port, load, args.duration, bench.load_prefix),
                            args.duration))
    cpu1, up1 = cpu_seconds(peer.pid), cpu_seconds(bench.upstream_pid)
    if wrk.requests == 0:
        raise PeerFailed("wrk completed no requests")
    per_req = 1e6 / wrk.requests
    return RunResult(wrk.rps, wrk.p50_ms, wrk.p99_ms, (cpu1 - cpu0) * per_req,
                     (up1 - up0) * per_req, wrk.errors)


def start_peers(bench: Bench, scenario: Scenario, peers: list[Peer]) -> None:
    ports = free_ports(len(peers))
    for peer, port in zip(peers, ports):
        log(f"starting {peer.name} on 127.0.0.1:{port}")
        try:
            peer.pid, peer.port = scenario.setup[peer.name](bench, port), port
            for check in (scenario.load_for(peer.name), *scenario.checks_for(peer.name)):
                verify(port, check)
        except PeerFailed as err:
            fail(peer, f"start: {err}")


def fail(peer: Peer, reason: str) -> None:
    peer.failure = reason
    log(f"!!! {peer.name} FAILED: {reason}")


def run_rounds(bench: Bench, scenario: Scenario, peers: list[Peer]) -> None:
    """Interleave the peers: each round measures every peer once, rotating the order."""
    for rnd in range(bench.args.rounds):
        active = [peer for peer in peers if not peer.failure]
        if not active:
            return
        shift = rnd % len(active)
        for peer in active[shift:] + active[:shift]:
            log(f"round {rnd + 1}/{bench.args.rounds}: {peer.name}")
            load = scenario.load_for(peer.name)
            try:
                verify(peer.port, load)
                run = measure_once(bench, peer, load.request)
            except PeerFailed as err:
                fail(peer, f"round {rnd + 1}: {err}")
                continue
            peer.runs.append(run)
            log(f"  {run.rps:.0f} rps, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
                f"{run.cpu_us_per_req:.1f} µs CPU/req, {run.errors} errors")


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def median_of(peer: Peer, field: str) -> float | None:
    values = [getattr(run, field) for run in peer.runs]
    return statistics.median(values) if values else None


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}×" if value is not None and base else "—"


def machine_info() -> str:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    load = Path("/proc/loadavg").read_text().split()[:3]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f"nproc {len(os.sched_getaffinity(0))} ({cpu}); kernel {platform.release()}; "
            f"{date}; loadavg {' '.join(load)}")


def report(bench: Bench, scenario_name: str, peers: list[Peer], versions: str) -> str:
    args = bench.args
    scenario = SCENARIOS[scenario_name]
    load_cmd = shlex.join(wrk_argv(args, "PORT", scenario.load.request, args.duration,
                                   bench.load_prefix))
    if bench.jwt is not None:
        load_cmd = load_cmd.replace(bench.jwt.token, "<RS256 token>")
    by_name = {peer.name: peer for peer in peers}
    base = {name: (median_of(by_name[name], "rps"), median_of(by_name[name], "cpu_us_per_req"))
            if name in by_name else (None, None) for name in ("nginx", "haproxy")}
    lines = [
        f"### Realmgate load suite: scenario `{scenario_name}` ({scenario.description})",
        "",
        f"- command: `{shlex.join(sys.argv)}`",
        f"- machine: {machine_info()}",
        f"- load: `{load_cmd}`, warmup {args.warmup}s, {args.rounds} interleaved round(s), "
        f"{args.tenants} tenants, {args.workers} worker(s)/thread(s) per proxy"
        + (f"; load generator on CPU {args.pin_load}, servers on the others"
           if args.pin_load is not None else ""),
        f"- tools: {versions}; realmgate {bench.realmgate_bin or '—'}",
        "",
        "| peer | rps | p50 ms | p99 ms | CPU µs/req | rps vs nginx | rps vs haproxy "
        "| CPU vs nginx | errors | upstream µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for peer in peers:
        lines.append(report_row(peer, base))
    own = by_name.get("realmgate"), by_name.get("realmgate-public")
    if all(p is not None and p.runs for p in own):
        jwt_rps, public_rps = (median_of(p, "rps") for p in own)
        jwt_cpu, public_cpu = (median_of(p, "cpu_us_per_req") for p in own)
        lines += ["", f"realmgate ({scenario_name}) vs realmgate-public (same binary, public "
                  f"route): rps {ratio(jwt_rps, public_rps)}, CPU/req {ratio(jwt_cpu, public_cpu)}"]
    signed = by_name.get("realmgate"), by_name.get("realmgate-assertion")
    if all(p is not None and p.runs for p in signed):
        plain_rps, signed_rps = (median_of(p, "rps") for p in signed)
        plain_cpu, signed_cpu = (median_of(p, "cpu_us_per_req") for p in signed)
        lines += ["", f"realmgate-assertion vs realmgate (same table plus an assertion section: "
                  f"every request gets a signed x-realmgate-assertion): rps "
                  f"{ratio(signed_rps, plain_rps)}, CPU/req {ratio(signed_cpu, plain_cpu)}"]
    lines += open_loop_report(bench, peers)
    return "\n".join(lines) + "\n"


def report_row(peer: Peer, base: dict[str, tuple[float | None, float | None]]) -> str:
    if not peer.runs:
        return f"| {peer.name} | failed: {one_line(peer.failure)} | | | | | | | | |"
    rps, cpu = median_of(peer, "rps"), median_of(peer, "cpu_us_per_req")
    cells = [
        peer.name + (" (failed later)" if peer.failure else ""),
        f"{rps:.0f}",
        f"{median_of(peer, 'p50_ms'):.2f}",
        f"{median_of(peer, 'p99_ms'):.2f}",
        f"{cpu:.1f}",
        ratio(rps, base["nginx"][0]),
        ratio(rps, base["haproxy"][0]),
        ratio(cpu, base["nginx"][1]),
        str(sum(run.errors for run in peer.runs)),
        f"{median_of(peer, 'upstream_us_per_req'):.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def one_line(text: str | None) -> str:
    """A failure for a table cell: its first line, plus its last (a log's final error)."""
    lines = [line.strip() for line in (text or "unknown").splitlines() if line.strip()]
    summary = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    return summary.replace("|", "/")[:240]


def run_open_loop(bench: Bench, scenario: Scenario, peers: list[Peer]) -> None:
    """Each peer at half its own median peak (fixed rate), then the upstream directly at the
    same rate; interleaved like the closed-loop rounds."""
    args = bench.args
    direct = Request(MEASURED_HOST)
    for rnd in range(args.rounds):
        active = [p for p in peers if p.runs and not p.failure]
        shift = rnd % max(len(active), 1)
        for peer in active[shift:] + active[:shift]:
            rate = median_of(peer, "rps") / 2
            load = scenario.load_for(peer.name).request
            results = []
            for port, req in ((peer.port, load), (bench.upstream_port, direct)):
                argv = loadgen.openloop_argv(bench.openloop_bin, bench.load_prefix, port,
                                             req.host, req.path, req.headers, rate,
                                             args.connections, args.duration, args.warmup)
                try:
                    results.append(loadgen.run_openloop(argv, args.duration + args.warmup))
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as err:
                    fail(peer, f"open loop, round {rnd + 1}: {err}")
                    break
            if len(results) == 2:
                peer.open_runs.append((results[0], results[1]))
                log(f"open loop round {rnd + 1}: {peer.name} at {rate:.0f}/s: p99 "
                    f"{results[0]['p99_us']} µs (upstream direct {results[1]['p99_us']} µs)")


def open_loop_report(bench: Bench, peers: list[Peer]) -> list[str]:
    measured = [p for p in peers if p.open_runs]
    if not measured:
        return []
    args = bench.args
    lines = ["", f"Open loop (`openloop`, fixed rate = half the peer's median peak above, "
             f"{args.connections} connections, {args.duration} s, latency from the scheduled "
             f"start; `direct` = the upstream alone at the same rate; medians of "
             f"{len(measured[0].open_runs)} round(s)):", "",
             "| peer | rate/s | p50 µs | p99 µs | p99.9 µs | direct p99 µs "
             "| p99 added µs | non-200 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for peer in measured:
        med = lambda k, i=0: statistics.median(r[i][k] for r in peer.open_runs)  # noqa: E731
        added = statistics.median(r[0]["p99_us"] - r[1]["p99_us"] for r in peer.open_runs)
        non_200 = sum(r[0]["non_200"] for r in peer.open_runs)
        lines.append(f"| {peer.name} | {med('rate'):.0f} | {med('p50_us'):.0f} "
                     f"| {med('p99_us'):.0f} | {med('p999_us'):.0f} | {med('p99_us', 1):.0f} "
                     f"| {added:.0f} | {non_200} |")
    return lines

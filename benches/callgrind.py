#!/usr/bin/env python3
"""Instructions per request of realmgate on one scenario of benches/run, under callgrind.

Starts the suite's fixed upstream and realmgate (release binary) under
`valgrind --tool=callgrind` with the scenario's table, warms it up, zeroes the counters,
drives it with `wrk -t1 -c8` for a few seconds, dumps the counters and prints the total
instructions (Ir) divided by the requests wrk completed, then the top functions by inclusive
and self cost (`inclusive.txt` from `callgrind_annotate`, `self.txt` read from the profile).
Instruction counts do not depend on the machine's load, so before/after comparisons need one
run each.

Scenarios `shell` and `shell-plain` use benches/shell_scenario.py's layout instead: an nginx
upstream serving the 20 KB page, `shell` = a shell navigation of tenant `bench` (the page
through the injector), `shell-plain` = the same page proxied for tenant `plain` (no shell):
the difference is what injection costs, `public` (100 B answer) what a body costs at all.

    benches/callgrind.py --realmgate-bin target/release/realmgate
                         [--scenario public|jwt|api_key|shell|shell-plain]
                         [--seconds 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from measure import parse_wrk, run_wrk, wrk_argv  # benches/measure.py: wrk runs
import plumbing  # benches/plumbing.py: start timeouts, HTTP checks

HERE = Path(__file__).resolve().parent


def load_suite():
    loader = importlib.machinery.SourceFileLoader("bench_suite", str(HERE / "run"))
    spec = importlib.util.spec_from_loader("bench_suite", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_suite"] = module
    loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--realmgate-bin", type=Path, help="required unless --peer lean-loop")
    p.add_argument("--scenario", default="public",
                   choices=("public", "jwt", "api_key", *SHELL_SCENARIOS))
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--peer", default="realmgate",
                   choices=("realmgate", "realmgate-assertion", "lean-loop"),
                   help="realmgate-assertion: the same table plus an assertion section "
                        "(public and jwt scenarios); lean-loop: the experiment "
                        "gateway/examples/lean_loop.rs (public scenario, --lean-loop-bin)")
    p.add_argument("--lean-loop-bin", type=Path,
                   help="target/release/examples/lean_loop, for --peer lean-loop")
    p.add_argument("--out", type=Path, help="keep callgrind.out and the annotation here")
    args = p.parse_args(argv)
    lean = args.peer == "lean-loop"
    if lean and (args.lean_loop_bin is None or args.scenario not in ("public", "shell-plain")):
        p.error("--peer lean-loop needs --lean-loop-bin and --scenario public or shell-plain")
    if not lean and args.realmgate_bin is None:
        p.error("--realmgate-bin is required")
    binary = args.lean_loop_bin if lean else args.realmgate_bin
    work = Path(tempfile.mkdtemp(prefix="realmgate-callgrind-"))
    wrapper = work / "realmgate-under-callgrind"
    suite = load_suite()
    if lean:
        # The suite's public scenario has the experiment as a peer when this names its binary.
        os.environ["REALMGATE_LEAN_LOOP_BIN"] = str(wrapper)
        import scenarios
        suite.SCENARIOS["public"].setup["lean-loop"] = scenarios.public_lean_loop
    if args.scenario in SHELL_SCENARIOS:
        return shell_main(args, suite)
    suite_args = suite.parse_args(["--scenario", args.scenario, "--peers", "realmgate",
                                   "--smoke", "--tenants", "1000",
                                   "--realmgate-bin", str(binary)])
    out_dir = args.out or work
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = out_dir / "callgrind.out"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --separate-threads=no "
                       f"--callgrind-out-file={profile} {binary.resolve()} \"$@\"\n")
    wrapper.chmod(0o755)
    bench = suite.Bench(suite_args, work, suite.Processes())
    plumbing.START_TIMEOUT_S = 120.0
    try:
        scenario = suite.SCENARIOS[args.scenario]
        if scenario.prepare is not None:
            scenario.prepare(bench, scenario)
        bench.realmgate_bin = wrapper
        suite.start_upstream(bench, suite.free_ports(1)[0])
        port = suite.free_ports(1)[0]
        if args.peer not in scenario.setup:
            sys.exit(f"scenario {args.scenario} has no {args.peer} peer")
        pid = scenario.setup[args.peer](bench, port)
        load = scenario.load_for("realmgate")
        for check in scenario.checks_for("realmgate"):
            plumbing.verify(port, check)
        plumbing.verify(port, load)
        suite_args.connections = 8

        def drive(seconds: int) -> int:
            out = run_wrk(wrk_argv(suite_args, port, load.request, seconds), seconds)
            return parse_wrk(out).requests

        return measure(args, pid, out_dir, drive)
    finally:
        bench.procs.stop_all()
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


SHELL_SCENARIOS = ("shell", "shell-plain")


def measure(args: argparse.Namespace, pid: int, out_dir: Path, drive) -> int:
    """Warm up, zero the counters, drive `args.seconds` of load, dump, annotate, report."""
    drive(2)
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)
    requests = drive(args.seconds)
    subprocess.run(["callgrind_control", "--dump=load", str(pid)], check=True,
                   capture_output=True)
    time.sleep(1)
    dumps = sorted(out_dir.glob("callgrind.out.*"), key=lambda f: f.stat().st_mtime)
    if not dumps:
        sys.exit("no callgrind dump written")
    annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(dumps[-1])],
                              capture_output=True, text=True).stdout
    self_cost = self_costs(dumps[-1])
    total = re.search(r"^([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", annotate, re.M)
    ir = int(total.group(1).replace(",", "")) if total else 0
    (out_dir / "inclusive.txt").write_text(annotate)
    (out_dir / "self.txt").write_text(self_cost)
    print(f"scenario {args.scenario} ({args.peer}): {requests} requests, {ir} Ir, "
          f"{ir / max(requests, 1):.0f} instructions per request (user space, realmgate)")
    print(f"profile: {dumps[-1]}; annotations: {out_dir}/inclusive.txt, self.txt")
    return 0


def self_costs(profile: Path, top: int = 80) -> str:
    """Self cost per function (instructions spent in its own code), read from the profile
    directly: this valgrind's `callgrind_annotate` without `--inclusive` charges everything
    to the thread's entry point."""
    names: dict[str, str] = {}
    costs: dict[str, int] = {}

    def name(ref: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", ref)
        if not m:
            return ref
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), ref)

    fn, in_call, total = "?", False, 0
    with open(profile, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn, in_call = name(line[3:].rstrip("\n")), False
            elif line.startswith("cfn="):
                name(line[4:].rstrip("\n"))
            elif line.startswith("calls="):
                in_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if in_call:
                    in_call = False
                elif len(parts) >= 2:
                    costs[fn] = costs.get(fn, 0) + int(parts[1])
                    total += int(parts[1])
    lines = [f"{total:,} Ir total (self costs)"]
    for fn, c in sorted(costs.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{c:>15,} {100 * c / max(total, 1):5.1f}%  {fn}")
    groups: dict[str, int] = {}
    for fn, c in costs.items():
        groups[owner(fn)] = groups.get(owner(fn), 0) + c
    lines += ["", "self costs by owner (crate of the function, or libc/mimalloc/...):"]
    for group, c in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"{c:>15,} {100 * c / max(total, 1):5.1f}%  {group}")
    return "\n".join(lines) + "\n"


def owner(fn: str) -> str:
    """Who a function belongs to: the first path segment of its demangled name (the type's
    crate for `<T as Trait>::f`), or libc's string functions, mimalloc, or the object."""
    name = fn.lstrip("<&*").removeprefix("mut ").removeprefix("dyn ")
    if re.match(r"_*(mem|str)[a-z]*(_|$)", name):
        return "libc mem*/str*"
    if re.match(r"_?mi_", name):
        return "mimalloc"
    head = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?=::)", name)
    return head.group(0) if head else "other: " + name.split("(")[0][:40]


def shell_main(args: argparse.Namespace, suite) -> int:
    """`shell` / `shell-plain`: benches/shell_scenario.py's page, upstream and table, the
    gateway under callgrind, `wrk -t1 -c8`."""
    sys.path.insert(0, str(HERE))
    import shell_scenario as sc
    work = Path(tempfile.mkdtemp(prefix="realmgate-callgrind-"))
    work.chmod(0o755)  # nginx workers run unprivileged and must read the page
    out_dir = args.out or work
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = out_dir / "callgrind.out"
    procs = []
    try:
        page = sc.page_20k()
        docroot = work / "www"
        docroot.mkdir()
        (docroot / "index.html").write_text(page)
        up_port, rg_port, rg_admin = sc.free_ports(3)
        up_conf = sc.nginx_conf(str(work), "upstream", f"""
  server {{ listen 127.0.0.1:{up_port}; root {docroot};
    location / {{ default_type text/html; try_files /index.html =404; }} }}""")
        procs.append(sc.start(["nginx", "-c", up_conf, "-p", str(work)],
                              str(work / "upstream.log")))
        token = work / "token"
        token.write_text("bench-admin-token-0123456789\n")
        conf = work / "realmgate.yaml"
        conf.write_text(f"""pingora:
  threads: 1
  work_stealing: false
  upstream_keepalive_pool_size: 256
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
gateway:
  listen: "127.0.0.1:{rg_port}"
  admin_listen: "127.0.0.1:{rg_admin}"
  admin_token_file: "{token}"
  state_dir: "{work}/state"
""")
        lean = args.peer == "lean-loop"
        binary = args.lean_loop_bin if lean else args.realmgate_bin
        argv = ["valgrind", "--tool=callgrind", "--separate-threads=no",
                f"--callgrind-out-file={profile}", str(binary.resolve()), "--conf", str(conf)]
        table = {"version": 1,
                 "upstreams": {"page": {"endpoints": [f"127.0.0.1:{up_port}"]}},
                 "tenants": [
                     {"id": "bench", "hosts": ["bench.test"], "display_name": "Bench",
                      "routes": [{"prefix": "/", "upstream": "page", "auth": "public"}],
                      "shell": {"enabled": True, "upstream": "page"}},
                     {"id": "plain", "hosts": ["plain.test"],
                      "routes": [{"prefix": "/", "upstream": "page", "auth": "public"}]}]}
        if lean:  # the experiment reads its table from a file (no admin listener)
            (work / "table.json").write_text(json.dumps(table))
            argv += ["--table", str(work / "table.json")]
        rg = sc.start(argv, str(work / "realmgate.log"), dict(os.environ, RUST_LOG="warn"))
        procs.append(rg)
        if not lean:
            sc.wait_http(f"http://127.0.0.1:{rg_admin}/healthz", timeout=120)
            req = urllib.request.Request(f"http://127.0.0.1:{rg_admin}/v1/table", method="PUT",
                                         data=json.dumps(table).encode(),
                                         headers={"Authorization":
                                                  "Bearer bench-admin-token-0123456789"})
            urllib.request.urlopen(req, timeout=60).read()
        if args.scenario == "shell":
            host, headers = "bench.test", ["Sec-Fetch-Dest: document"]
        else:
            host, headers = "plain.test", []
        _, _, body = sc.wait_http(f"http://127.0.0.1:{rg_port}/",
                                  {"Host": host, **dict(h.split(": ", 1) for h in headers)},
                                  timeout=60)
        injected = body.count(b'id="realmgate-context"')
        if injected != (1 if args.scenario == "shell" else 0) or len(body) < len(page):
            sys.exit(f"{args.scenario}: unexpected answer ({len(body)} bytes, {injected} "
                     "context elements)")
        return measure(args, rg.pid, out_dir,
                       lambda seconds: sc.wrk(rg_port, host, headers, seconds, 8)["requests"])
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Instructions per request of realmgate on one scenario of benches/run, under callgrind.

Starts the suite's fixed upstream and realmgate (release binary) under
`valgrind --tool=callgrind` with the scenario's table, warms it up, zeroes the counters,
drives it with `wrk -t1 -c8` for a few seconds, dumps the counters and prints the total
instructions (Ir) divided by the requests wrk completed, then the top functions by inclusive
and self cost (`callgrind_annotate`). Instruction counts do not depend on the machine's load,
so before/after comparisons need one run each.

    benches/callgrind.py --realmgate-bin target/release/realmgate [--scenario public|jwt]
                         [--seconds 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    p.add_argument("--realmgate-bin", type=Path, required=True)
    p.add_argument("--scenario", default="public", choices=("public", "jwt", "api_key"))
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--out", type=Path, help="keep callgrind.out and the annotation here")
    args = p.parse_args(argv)
    suite = load_suite()
    suite_args = suite.parse_args(["--scenario", args.scenario, "--peers", "realmgate",
                                   "--smoke", "--tenants", "1000",
                                   "--realmgate-bin", str(args.realmgate_bin)])
    work = Path(tempfile.mkdtemp(prefix="realmgate-callgrind-"))
    out_dir = args.out or work
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = out_dir / "callgrind.out"
    wrapper = work / "realmgate-under-callgrind"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --separate-threads=no "
                       f"--callgrind-out-file={profile} {args.realmgate_bin.resolve()} \"$@\"\n")
    wrapper.chmod(0o755)
    bench = suite.Bench(suite_args, work, suite.Processes())
    suite.START_TIMEOUT_S = 120.0
    try:
        scenario = suite.SCENARIOS[args.scenario]
        if scenario.prepare is not None:
            scenario.prepare(bench, scenario)
        bench.realmgate_bin = wrapper
        suite.start_upstream(bench, suite.free_ports(1)[0])
        port = suite.free_ports(1)[0]
        pid = scenario.setup["realmgate"](bench, port)
        load = scenario.load_for("realmgate")
        suite.verify(port, load)
        suite_args.connections = 8
        suite.run_wrk(suite.wrk_argv(suite_args, port, load.request, 2), 2)
        subprocess.run(["callgrind_control", "--zero", str(pid)], check=True,
                       capture_output=True)
        out = suite.run_wrk(suite.wrk_argv(suite_args, port, load.request, args.seconds),
                            args.seconds)
        requests = suite.parse_wrk(out).requests
        subprocess.run(["callgrind_control", "--dump=load", str(pid)], check=True,
                       capture_output=True)
        time.sleep(1)
        dumps = sorted(out_dir.glob("callgrind.out.*"), key=lambda f: f.stat().st_mtime)
        if not dumps:
            sys.exit("no callgrind dump written")
        annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(dumps[-1])],
                                  capture_output=True, text=True).stdout
        self_cost = subprocess.run(["callgrind_annotate", str(dumps[-1])],
                                   capture_output=True, text=True).stdout
        total = re.search(r"^([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", annotate, re.M)
        ir = int(total.group(1).replace(",", "")) if total else 0
        (out_dir / "inclusive.txt").write_text(annotate)
        (out_dir / "self.txt").write_text(self_cost)
        print(f"scenario {args.scenario}: {requests} requests, {ir} Ir, "
              f"{ir / max(requests, 1):.0f} instructions per request (user space, realmgate)")
        print(f"profile: {dumps[-1]}; annotations: {out_dir}/inclusive.txt, self.txt")
        return 0
    finally:
        bench.procs.stop_all()
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

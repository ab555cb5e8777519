#!/usr/bin/env python3
"""Load scenarios `tls` and `handshake`: realmgate's TLS listener against nginx and HAProxy
terminating TLS with the same certificate (ECDSA P-256, `bench.test` and `*.bench.test`),
TLS 1.3 only, the same plain HTTP/1.1 upstream behind each.

  tls        keep-alive HTTPS: requests/s over HTTP/1.1 and over HTTP/2 (ALPN), each
             measured separately (two tables)
  handshake  a new TLS connection per request (`Connection: close`): full handshakes/s

Load: h2load (Debian's nghttp2-client) for all three: it sends the URL's host name as SNI
while connecting to loopback (`--connect-to`), which wrk cannot (wrk sends the URL's host,
an IP address here, as SNI, and realmgate answers no certificate for an IP). Each run is a
warm-up run, then a measured run; the proxy's CPU time comes from /proc over the measured run.
Peers are interleaved round by round; medians are reported with ratios against nginx and
HAProxy. The client is a single h2load thread on the same machine: when it, not the proxy,
is the bottleneck, requests/s are alike and the CPU per request tells the peers apart.

    benches/run --scenario tls [--realmgate-bin target/release/realmgate] [--rounds 3]
    benches/run --scenario handshake [--connections 64] [--duration 10] [--smoke]
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_suite() -> types.SimpleNamespace:
    """benches/run's parts as one namespace: its processes, upstream, CPU accounting,
    realmgate start and report helpers (benches/plumbing.py, scenarios.py, measure.py)."""
    sys.path.insert(0, str(HERE))
    import measure
    import plumbing
    import scenarios
    names: dict = {}
    for module in (plumbing, scenarios, measure):
        names.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return types.SimpleNamespace(**names)


suite = load_suite()
PEERS = ("nginx", "haproxy", "realmgate")
HOST = suite.MEASURED_HOST


@dataclasses.dataclass
class Load:
    name: str
    h2load: list[str]  # options besides the URL, duration and connect-to
    # Requests per second of duration instead of a timed run: h2load's timed mode never ends
    # when every request reconnects (`Connection: close`), so that load is counted instead.
    per_second: int = 0


def loads(scenario: str, connections: int) -> list[Load]:
    if scenario == "tls":
        return [Load("h1 keep-alive", ["--h1", f"-c{connections}"]),
                Load("h2 keep-alive", [f"-c{max(1, connections // 8)}", "-m8"])]
    return [Load("new TLS connection per request",
                 ["--h1", f"-c{connections}", "-H", "Connection: close"], per_second=1000)]


@dataclasses.dataclass
class Run:
    rps: float
    mean_ms: float
    cpu_us: float
    failed: int


@dataclasses.dataclass
class Peer:
    name: str
    port: int = 0
    pid: int = 0
    failure: str | None = None
    runs: dict[str, list[Run]] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Certificate and peers
# ---------------------------------------------------------------------------------------

def make_certificate(work: Path) -> tuple[Path, Path]:
    key, cert = work / "bench-key.pem", work / "bench-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST},DNS:*.{HOST}"],
                   check=True, capture_output=True)
    return cert, key


def start_nginx(bench, port: int, cert: Path, key: Path) -> int:
    prefix = bench.work / "nginx"
    prefix.mkdir(exist_ok=True)
    body = f"""    proxy_http_version 1.1;
    upstream app {{
        server 127.0.0.1:{bench.upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name {HOST};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        http2_max_concurrent_streams 128;
        location / {{
            proxy_pass http://app;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Realmgate-Tenant bench;
        }}
    }}"""
    proc, log_path = suite.start_nginx(
        bench, "nginx", suite.nginx_main_conf(prefix, bench.args.workers, body))
    suite.wait_until(lambda: suite.port_open(port), proc, log_path, "nginx")
    return proc.pid


def start_haproxy(bench, port: int, cert: Path, key: Path) -> int:
    combined = bench.work / "haproxy-cert.pem"
    combined.write_text(cert.read_text() + key.read_text())
    combined.chmod(0o600)
    frontend = f"""    bind 127.0.0.1:{port} ssl crt {combined} alpn h2,http/1.1
    http-request return status 404 if !{{ req.hdr(host),field(1,:) -m str {HOST} }}
    http-request set-header X-Realmgate-Tenant bench
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto https
"""
    return suite.start_haproxy(bench, port, frontend,
                               global_extra="ssl-default-bind-options ssl-min-ver TLSv1.3")


def start_realmgate(bench, port: int, cert: Path, key: Path) -> int:
    """realmgate with a TLS listener only for the data plane; the certificate comes with
    the table, as realmctl sends it."""
    if bench.realmgate_bin is None or not bench.realmgate_bin.is_file():
        raise suite.PeerFailed(f"realmgate binary not found: {bench.realmgate_bin}")
    admin_port, plain_port = suite.free_ports(2)
    token = secrets.token_urlsafe(24)
    token_file = bench.work / "realmgate-admin-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    conf_path = suite.realmgate_conf(
        bench, "realmgate", plain_port, admin_port,
        f'  tls_listen: [127.0.0.1:{port}]\n  tls_min_version: "1.3"\n'
        f"  admin_token_file: {token_file}\n")
    not_after = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
                               check=True, capture_output=True, text=True).stdout
    not_after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(
        not_after.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))
    table = {
        "version": 1,
        "upstreams": {"app": {"endpoints": [f"127.0.0.1:{bench.upstream_port}"]}},
        "tenants": [{"id": "bench", "hosts": [HOST],
                     "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}],
        "certificates": [{"name": "bench", "cert_pem": cert.read_text(),
                          "key_pem": key.read_text(), "hosts": [HOST, f"*.{HOST}"],
                          "not_after": not_after}],
    }
    log_path = bench.work / "realmgate.log"
    env = dict(suite.os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc = bench.procs.start([str(bench.realmgate_bin), "--conf", str(conf_path)], log_path, env)
    suite.wait_until(lambda: suite.status_is(admin_port, "/healthz", 200), proc, log_path,
                     "realmgate admin /healthz")
    suite.push_table(admin_port, token, table)
    suite.wait_until(lambda: suite.status_is(admin_port, "/readyz", 200), proc, log_path,
                     "realmgate /readyz")
    return proc.pid


SETUP = {"nginx": start_nginx, "haproxy": start_haproxy, "realmgate": start_realmgate}


def verify(port: int, cert: Path) -> None:
    """One HTTPS request with SNI and certificate verification: the upstream's body."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), 10) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOST) as conn:
            conn.sendall(request)
            while chunk := conn.recv(65536):
                data += chunk
    except (OSError, ssl.SSLError) as err:
        raise suite.PeerFailed(f"GET https://{HOST}/: {err}") from err
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"] or body.decode(errors="replace") != suite.UPSTREAM_BODY:
        raise suite.PeerFailed(f"GET https://{HOST}/: {head[:100]!r} {body[:200]!r}")


# ---------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------

FINISHED_RE = re.compile(r"^finished in [\d.]+\w+, ([\d.]+) req/s", re.M)
REQUESTS_RE = re.compile(
    r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout", re.M)
STATUS_RE = re.compile(r"^status codes: (\d+) 2xx", re.M)
MEAN_RE = re.compile(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", re.M)
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def h2load(port: int, load: Load, seconds: int) -> str:
    amount = ["-n", str(seconds * load.per_second)] if load.per_second else ["-D", str(seconds)]
    argv = ["h2load", "-t1", *amount, *load.h2load,
            "--connect-to", f"127.0.0.1:{port}", f"https://{HOST}:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise suite.PeerFailed(f"h2load failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def measure(bench, peer: Peer, load: Load) -> Run:
    args = bench.args
    if args.warmup:
        h2load(peer.port, load, args.warmup)
    cpu0 = suite.cpu_seconds(peer.pid)
    out = h2load(peer.port, load, args.duration)
    cpu1 = suite.cpu_seconds(peer.pid)
    fin, req, ok2xx, mean = (FINISHED_RE.search(out), REQUESTS_RE.search(out),
                             STATUS_RE.search(out), MEAN_RE.search(out))
    if not (fin and req and ok2xx and mean):
        raise suite.PeerFailed(f"cannot parse h2load output:\n{out}")
    done, succeeded = int(req.group(2)), int(ok2xx.group(1))
    if done == 0:
        raise suite.PeerFailed("h2load completed no requests")
    failed = done - succeeded + sum(int(req.group(i)) for i in (4, 5, 6))
    return Run(float(fin.group(1)), float(mean.group(1)) * UNIT_MS[mean.group(2)],
               (cpu1 - cpu0) * 1e6 / done, failed)


# ---------------------------------------------------------------------------------------
# Report and main
# ---------------------------------------------------------------------------------------

def med(runs: list[Run], field: str) -> float | None:
    return statistics.median(getattr(r, field) for r in runs) if runs else None


def report(bench, scenario: str, peers: list[Peer], load: Load) -> str:
    args = bench.args
    base = {p.name: (med(p.runs.get(load.name, []), "rps"),
                     med(p.runs.get(load.name, []), "cpu_us")) for p in peers}
    lines = [
        f"### Realmgate load suite: scenario `{scenario}`, {load.name} (TLS 1.3, ECDSA P-256)",
        "",
        f"- command: `{' '.join(sys.argv)}`",
        f"- machine: {suite.machine_info()}",
        f"- load: `h2load -t1 "
        f"{f'-n {args.duration * load.per_second}' if load.per_second else f'-D {args.duration}'} "
        f"{' '.join(load.h2load)} --connect-to "
        f"127.0.0.1:PORT https://{HOST}:PORT/`, warmup {args.warmup}s, {args.rounds} "
        f"interleaved round(s), {args.workers} worker(s)/thread(s) per proxy",
        f"- realmgate {bench.realmgate_bin or '—'}",
        "",
        "| peer | req/s | mean ms | CPU µs/req | req/s vs nginx | req/s vs haproxy "
        "| CPU vs nginx | CPU vs haproxy | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in peers:
        runs = p.runs.get(load.name, [])
        if not runs:
            lines.append(f"| {p.name} | failed: {suite.one_line(p.failure)} | | | | | | | |")
            continue
        rps, cpu = med(runs, "rps"), med(runs, "cpu_us")
        nginx, haproxy = base.get("nginx", (None, None)), base.get("haproxy", (None, None))
        lines.append("| " + " | ".join([
            p.name, f"{rps:.0f}", f"{med(runs, 'mean_ms'):.2f}", f"{cpu:.1f}",
            suite.ratio(rps, nginx[0]), suite.ratio(rps, haproxy[0]),
            suite.ratio(cpu, nginx[1]), suite.ratio(cpu, haproxy[1]),
            str(sum(r.failed for r in runs))]) + " |")
    return "\n".join(lines) + "\n"


def ensure_h2load() -> None:
    if suite.which("h2load"):
        return
    env = dict(suite.os.environ, DEBIAN_FRONTEND="noninteractive")
    with suite.services_not_started():
        if not suite.apt_get(["install", "-y", "--no-install-recommends", "nghttp2-client"],
                             env, check=False):
            suite.apt_get(["update"], env)
            suite.apt_get(["install", "-y", "--no-install-recommends", "nghttp2-client"], env)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benches/run --scenario tls|handshake",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=("tls", "handshake"), default="tls")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--duration", type=int)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rounds", type=int)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--realmgate-bin", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--smoke", action="store_true", help="1 round of 2 s")
    p.add_argument("--tenants", type=int, help="ignored (one tenant, one certificate)")
    args = p.parse_args(argv)
    args.duration = args.duration or (2 if args.smoke else 10)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    args.warmup = 1 if args.smoke else args.warmup
    args.peers = [n.strip() for n in args.peers.split(",") if n.strip() in PEERS]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="realmgate-tls-bench-"))
    bench = suite.Bench(args, work, suite.Processes())
    peers = [Peer(n) for n in args.peers]
    try:
        suite.ensure_packages()
        ensure_h2load()
        if "realmgate" in args.peers:
            bench.realmgate_bin = (args.realmgate_bin.resolve() if args.realmgate_bin
                                   else suite.build_realmgate())
        cert, key = make_certificate(work)
        suite.start_upstream(bench, suite.free_ports(1)[0])
        for peer, port in zip(peers, suite.free_ports(len(peers))):
            suite.log(f"starting {peer.name} on 127.0.0.1:{port} (TLS)")
            try:
                peer.pid, peer.port = SETUP[peer.name](bench, port, cert, key), port
                verify(port, cert)
            except suite.PeerFailed as err:
                peer.failure = f"start: {err}"
                suite.log(f"!!! {peer.name} FAILED: {peer.failure}")
        scenario_loads = loads(args.scenario, args.connections)
        for rnd in range(args.rounds):
            active = [p for p in peers if not p.failure]
            shift = rnd % max(1, len(active))
            for peer in active[shift:] + active[:shift]:
                for load in scenario_loads:
                    suite.log(f"round {rnd + 1}/{args.rounds}: {peer.name}, {load.name}")
                    try:
                        run = measure(bench, peer, load)
                    except suite.PeerFailed as err:
                        peer.failure = f"round {rnd + 1}: {err}"
                        suite.log(f"!!! {peer.name} FAILED: {peer.failure}")
                        break
                    peer.runs.setdefault(load.name, []).append(run)
                    suite.log(f"  {run.rps:.0f} req/s, mean {run.mean_ms:.2f} ms, "
                              f"{run.cpu_us:.1f} µs CPU/req, {run.failed} failed")
        markdown = "\n".join(report(bench, args.scenario, peers, load)
                             for load in scenario_loads)
        print(markdown)
        if args.out:
            with open(args.out, "a") as out:
                out.write(markdown + "\n")
        ok = all(not p.failure and p.runs for p in peers) and \
            not any(r.failed for p in peers for runs in p.runs.values() for r in runs)
        return 0 if ok else 1
    finally:
        bench.procs.stop_all()
        if args.keep:
            suite.log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

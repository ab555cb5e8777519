#!/usr/bin/env python3
"""Load scenario `shell`: a 20 KB HTML page through realmgate's streaming context injection
(lol_html in response_body_filter) against nginx `sub_filter` making the equivalent insertion.

Layout (all on loopback, one run, interleaved rounds, medians reported):
  upstream  nginx (1 worker) serving the same 20 KB page for every path
  realmgate release binary, 1 worker thread, no work stealing; tenant `bench` has
            shell.upstream = the page pool, so `GET /` with `Sec-Fetch-Dest: document` is a
            shell navigation: the page streams through the injector (context element with a
            fresh CSPRNG nonce, CSP header, chunked framing)
  nginx     1 worker, proxy_pass to the same upstream with `sub_filter '<head>' '<head><script
            … nonce="$request_id">{…}</script>'` and an equivalent CSP header
  baseline  realmgate proxying the same page for a tenant without a shell (what injection costs)

Load: wrk -t1 -cC -dD against each proxy in turn, rotated each round. CPU per request comes
from /proc (utime+stime of the proxy's processes over the run).

    benches/shell_scenario.py [--realmgate-bin target/release/realmgate] [--rounds 3]
                              [--duration 10] [--connections 32] [--smoke]

`benches/run` can import `run_shell(...)` and print its rows in its own table.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTEXT = ('{"tenant":{"id":"bench","display_name":"Bench"},"catalog":[],'
           '"login_url":"/.realmgate/login","logout_url":"/.realmgate/logout",'
           '"active":null,"user":null}')


def page_20k():
    parts = ['<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bench</title>'
             '<link rel="stylesheet" href="/s.css"></head><body><main>']
    size, i = len(parts[0]), 0
    while size < 20 * 1024 - 32:
        s = (f'<section class="row"><h2>Item {i}</h2><p>Lorem ipsum dolor sit amet, '
             f'<a href="/x/{i}">link</a>.</p></section>\n')
        parts.append(s)
        size += len(s)
        i += 1
    parts.append('</main></body></html>\n')
    return ''.join(parts)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_http(url, headers=None, timeout=30):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status, r.headers, r.read()
        except Exception as e:  # not up yet, or an error answer: retry until the deadline
            last = e
            time.sleep(0.1)
    raise SystemExit(f'no answer from {url}: {last}')


def nginx_conf(tmp, name, body):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, 'nginx.conf')
    with open(path, 'w') as f:
        f.write(f"""worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  {body}
}}
""")
    return path


def start(cmd, log, env=None):
    return subprocess.Popen(cmd, stdout=open(log, 'wb'), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def pids_of(proc):
    """The process and its children (nginx master + workers)."""
    out = [proc.pid]
    try:
        kids = subprocess.run(['pgrep', '-P', str(proc.pid)], capture_output=True, text=True).stdout
        out += [int(p) for p in kids.split()]
    except FileNotFoundError:
        pass
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total


def parse_latency(s):
    m = re.match(r'([\d.]+)(us|ms|s)', s)
    if not m:
        return float('nan')
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == 'us' else v if unit == 'ms' else v * 1000


def wrk(port, host, headers, duration, connections):
    cmd = ['wrk', '-t1', f'-c{connections}', f'-d{duration}s', '--latency', '-H', f'Host: {host}']
    for h in headers:
        cmd += ['-H', h]
    cmd.append(f'http://127.0.0.1:{port}/')
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    reqs = int(re.search(r'(\d+) requests in', out).group(1))
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    lat = dict(re.findall(r'^\s+(50|99)%\s+(\S+)', out, re.M))
    return {'rps': rps, 'requests': reqs, 'p50': parse_latency(lat.get('50', '')),
            'p99': parse_latency(lat.get('99', '')), 'errors': int(errors.group(1)) if errors else 0}


def run_shell(realmgate_bin, rounds=3, duration=10, connections=32, smoke=False):
    if not shutil.which('nginx') or not shutil.which('wrk'):
        subprocess.run([os.path.join(ROOT, 'tests/setup/deps.sh'), 'nginx', 'wrk'], check=True)
    tmp = tempfile.mkdtemp(prefix='rg-bench-shell-')
    os.chmod(tmp, 0o755)  # nginx workers run unprivileged and must read the page
    procs = []
    try:
        page = page_20k()
        docroot = os.path.join(tmp, 'www')
        os.makedirs(docroot)
        with open(os.path.join(docroot, 'index.html'), 'w') as f:
            f.write(page)
        up_port, ngx_port, rg_port, rg_admin = free_ports(4)

        up_conf = nginx_conf(tmp, 'upstream', f"""
  server {{ listen 127.0.0.1:{up_port}; root {docroot};
    location / {{ default_type text/html; try_files /index.html =404; }} }}""")
        procs.append(start(['nginx', '-c', up_conf, '-p', tmp], os.path.join(tmp, 'upstream.log')))

        element = ('<head><script type="application/json" id="realmgate-context" '
                   f'nonce="$request_id">{CONTEXT}</script>')
        csp = ("default-src 'self'; script-src 'self' 'nonce-$request_id'; object-src 'none'; "
               "base-uri 'self'; frame-ancestors 'none'")
        proxy_conf = nginx_conf(tmp, 'proxy', f"""
  upstream page {{ server 127.0.0.1:{up_port}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ngx_port};
    location / {{
      proxy_pass http://page; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Accept-Encoding identity;
      sub_filter '<head>' '{element}'; sub_filter_once on;
      add_header Content-Security-Policy "{csp}" always;
      add_header Cache-Control no-store always;
    }} }}""")
        procs.append(start(['nginx', '-c', proxy_conf, '-p', tmp], os.path.join(tmp, 'nginx.log')))

        token = os.path.join(tmp, 'token')
        with open(token, 'w') as f:
            f.write('bench-admin-token-0123456789\n')
        conf = os.path.join(tmp, 'realmgate.yaml')
        with open(conf, 'w') as f:
            f.write(f"""pingora:
  threads: 1
  work_stealing: false
  upstream_keepalive_pool_size: 256
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
gateway:
  listen: "127.0.0.1:{rg_port}"
  admin_listen: "127.0.0.1:{rg_admin}"
  admin_token_file: "{token}"
  state_dir: "{tmp}/state"
""")
        env = dict(os.environ, RUST_LOG='warn')
        rg = start([realmgate_bin, '--conf', conf], os.path.join(tmp, 'realmgate.log'), env)
        procs.append(rg)
        wait_http(f'http://127.0.0.1:{rg_admin}/healthz')
        table = {"version": 1,
                 "upstreams": {"page": {"endpoints": [f"127.0.0.1:{up_port}"]}},
                 "tenants": [
                     {"id": "bench", "hosts": ["bench.test"], "display_name": "Bench",
                      "routes": [{"prefix": "/", "upstream": "page", "auth": "public"}],
                      "shell": {"enabled": True, "upstream": "page"}},
                     {"id": "plain", "hosts": ["plain.test"],
                      "routes": [{"prefix": "/", "upstream": "page", "auth": "public"}]}]}
        req = urllib.request.Request(f'http://127.0.0.1:{rg_admin}/v1/table', method='PUT',
                                     data=json.dumps(table).encode(),
                                     headers={'Authorization': 'Bearer bench-admin-token-0123456789'})
        urllib.request.urlopen(req, timeout=10).read()

        nav = {'Host': 'bench.test', 'Sec-Fetch-Dest': 'document', 'Accept': 'text/html'}
        # Both proxies must make the same insertion before anything is measured.
        for name, port in [('realmgate', rg_port), ('nginx', ngx_port)]:
            _, headers, body = wait_http(f'http://127.0.0.1:{port}/', nav)
            text = body.decode()
            assert text.count('id="realmgate-context"') == 1, f'{name}: no single injection'
            assert text.startswith('<!doctype html><html lang="en"><head><script'), name
            assert len(body) > len(page), name
            assert any("frame-ancestors 'none'" in v for v in headers.get_all('Content-Security-Policy') or []), name

        targets = [
            ('realmgate shell', rg, rg_port, 'bench.test', ['Sec-Fetch-Dest: document']),
            ('nginx sub_filter', procs[1], ngx_port, 'bench.test', ['Sec-Fetch-Dest: document']),
            ('realmgate no shell', rg, rg_port, 'plain.test', []),
        ]
        if smoke:
            rounds, duration = 1, 1
        hz = os.sysconf('SC_CLK_TCK')
        results = {t[0]: [] for t in targets}
        for r in range(rounds):
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for name, proc, port, host, headers in order:
                pids = pids_of(proc)
                before = cpu_ticks(pids)
                res = wrk(port, host, headers, duration, connections)
                used = cpu_ticks(pids) - before
                res['cpu_us'] = used / hz * 1e6 / max(res['requests'], 1)
                results[name].append(res)
                print(f'  round {r + 1} {name:<20} {res["rps"]:>9.0f} rps  p50 {res["p50"]:.2f} ms  '
                      f'p99 {res["p99"]:.2f} ms  cpu {res["cpu_us"]:.1f} us/req  non-2xx {res["errors"]}',
                      file=sys.stderr)
        rows = []
        med = lambda name, k: statistics.median(x[k] for x in results[name])
        base = med('nginx sub_filter', 'rps')
        for name in results:
            rows.append({'scenario': 'shell', 'proxy': name, 'rps': med(name, 'rps'),
                         'p50_ms': med(name, 'p50'), 'p99_ms': med(name, 'p99'),
                         'cpu_us_per_req': med(name, 'cpu_us'),
                         'vs_nginx': med(name, 'rps') / base if base else float('nan'),
                         'errors': sum(x['errors'] for x in results[name])})
        return rows
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--realmgate-bin', default=os.path.join(ROOT, 'target/release/realmgate'))
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--duration', type=int, default=10)
    ap.add_argument('--connections', type=int, default=32)
    ap.add_argument('--smoke', action='store_true', help='one 1 s round: wiring only')
    a = ap.parse_args()
    rows = run_shell(a.realmgate_bin, a.rounds, a.duration, a.connections, a.smoke)
    rounds, duration = (1, 1) if a.smoke else (a.rounds, a.duration)
    print(f'\nshell scenario: 20 KB HTML page, wrk -t1 -c{a.connections} -d{duration}s, '
          f'{rounds} interleaved round(s), medians{" (smoke: wiring only)" if a.smoke else ""}')
    print(f'| {"proxy":<20} | {"rps":>9} | {"p50 ms":>7} | {"p99 ms":>7} | {"CPU µs/req":>10} | {"vs nginx":>8} | non-2xx |')
    print(f'|{"-" * 22}|{"-" * 11}|{"-" * 9}|{"-" * 9}|{"-" * 12}|{"-" * 10}|---------|')
    for r in rows:
        print(f'| {r["proxy"]:<20} | {r["rps"]:>9.0f} | {r["p50_ms"]:>7.2f} | {r["p99_ms"]:>7.2f} | '
              f'{r["cpu_us_per_req"]:>10.1f} | {r["vs_nginx"]:>7.2f}x | {r["errors"]:>7} |')


if __name__ == '__main__':
    main()

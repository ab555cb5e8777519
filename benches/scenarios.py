"""The load suite's peers and scenarios (benches/run): the bench context, how each peer
(nginx, HAProxy, realmgate) starts for each scenario (public, jwt, api_key), and the tables
realmgate gets."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from plumbing import (
    Check,
    MEASURED_HOST,
    PeerFailed,
    Processes,
    Request,
    RunResult,
    UPSTREAM_BODY,
    WORKSPACE,
    free_ports,
    http_call,
    port_open,
    status_is,
    verify,
    wait_until,
    which,
)


# --------------------------------------------------------------------------
# Bench context and peers
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    procs: Processes
    upstream_port: int = 0
    upstream_pid: int = 0
    realmgate_bin: Path | None = None
    jwt: "JwtMaterial | None" = None
    api_key: str = ""
    load_prefix: list[str] = dataclasses.field(default_factory=list)
    openloop_bin: Path | None = None

    def tenant_hosts(self) -> list[tuple[str, str]]:
        """(tenant id, host) pairs: t1..tN plus the measured host."""
        pairs = [(f"t{i}", f"t{i}.{MEASURED_HOST}") for i in range(1, self.args.tenants + 1)]
        return pairs + [("bench", MEASURED_HOST)]


@dataclasses.dataclass
class Peer:
    name: str
    port: int = 0
    pid: int = 0
    failure: str | None = None
    runs: list["RunResult"] = dataclasses.field(default_factory=list)
    # --open-loop: (the peer's run, the upstream's direct run at the same rate) per round.
    open_runs: list[tuple[dict, dict]] = dataclasses.field(default_factory=list)


def start_nginx(bench: Bench, name: str, conf: str) -> tuple[subprocess.Popen, Path]:
    """Start an nginx (master + workers, not daemonised) from conf text."""
    prefix = bench.work / name
    prefix.mkdir(exist_ok=True)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    log_path = bench.work / f"{name}.log"
    argv = [which("nginx") or "nginx", "-p", str(prefix), "-c", str(conf_path),
            "-e", str(prefix / "error.log")]
    return bench.procs.start(argv, log_path), log_path


def start_haproxy(bench: Bench, port: int, frontend: str, global_extra: str = "") -> int:
    """HAProxy on `port`, once it listens: `frontend` (the `frontend fe` lines, before
    `default_backend`) between the settings every peer config shares and the one reused
    backend to the upstream; `global_extra`, one more `global` line."""
    extra = f"    {global_extra}\n" if global_extra else ""
    cfg = f"""global
    nbthread {bench.args.workers}
    maxconn 4096
{extra}
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 300s

frontend fe
{frontend}    default_backend be_app

backend be_app
    http-reuse always
    server app 127.0.0.1:{bench.upstream_port}
"""
    cfg_path = bench.work / "haproxy.cfg"
    cfg_path.write_text(cfg)
    log_path = bench.work / "haproxy.log"
    proc = bench.procs.start([which("haproxy") or "haproxy", "-db", "-f", str(cfg_path)],
                             log_path)
    wait_until(lambda: port_open(port), proc, log_path, "haproxy")
    return proc.pid


def nginx_main_conf(prefix: Path, workers: int, http_body: str) -> str:
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
{temp}
{http_body}
}}
"""


def start_upstream(bench: Bench, port: int) -> None:
    """The fixed upstream: one nginx worker returning UPSTREAM_BODY, keep-alive on."""
    jwks = ""
    if bench.jwt is not None:
        # The realm keys of scenario "jwt", fetched by realmgate once. Inline: the workers
        # cannot read the private work dir. JWKS JSON holds no quote or `$`.
        jwks = (f"        location = {JWKS_PATH} {{ default_type application/json;"
                f" return 200 '{bench.jwt.jwks}'; }}\n")
    body = f"""    server {{
        listen 127.0.0.1:{port} default_server;
{jwks}        location / {{
            default_type text/plain;
            return 200 "{UPSTREAM_BODY}";
        }}
    }}"""
    prefix = bench.work / "upstream"
    proc, log_path = start_nginx(bench, "upstream", nginx_main_conf(prefix, 1, body))
    try:
        wait_until(lambda: port_open(port), proc, log_path, "upstream nginx")
        verify(port, Check(Request(MEASURED_HOST), 200, UPSTREAM_BODY))
    except PeerFailed as err:
        sys.exit(f"the fixed upstream failed, nothing to measure: {err}")
    bench.upstream_port, bench.upstream_pid = port, proc.pid


# --------------------------------------------------------------------------
# Scenario "public": host routing to the fixed upstream, no auth
# --------------------------------------------------------------------------

def public_nginx(bench: Bench, port: int) -> int:
    """One server block per tenant host, a keep-alive upstream block, 404 by default."""
    prefix = bench.work / "nginx"
    prefix.mkdir(exist_ok=True)
    # Included in every location: a location's proxy_set_header replaces all inherited ones.
    (prefix / "proxy_headers.conf").write_text(
        "proxy_set_header Connection \"\";\n"
        "proxy_set_header Host $http_host;\n"
        "proxy_set_header X-Forwarded-For $remote_addr;\n"
        "proxy_set_header X-Forwarded-Proto $scheme;\n"
        "proxy_set_header X-Forwarded-Host $http_host;\n"
        "proxy_set_header X-Request-Id $request_id;\n")
    hosts = bench.tenant_hosts()
    servers = "\n".join(
        f"    server {{ listen 127.0.0.1:{port}; server_name {host};\n"
        f"        location / {{ proxy_pass http://app; include proxy_headers.conf;"
        f" proxy_set_header X-Realmgate-Tenant {tenant}; }} }}"
        for tenant, host in hosts)
    body = f"""    server_names_hash_max_size {max(512, 4 * len(hosts))};
    server_names_hash_bucket_size 64;
    proxy_http_version 1.1;
    upstream app {{
        server 127.0.0.1:{bench.upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{ listen 127.0.0.1:{port} default_server; server_name _; return 404; }}
{servers}"""
    proc, log_path = start_nginx(bench, "nginx", nginx_main_conf(prefix, bench.args.workers, body))
    wait_until(lambda: port_open(port), proc, log_path, "nginx")
    return proc.pid


# What every HAProxy scenario sends upstream, as realmgate does: the tenant and the
# forwarding headers.
HAPROXY_FORWARDED = """    http-request set-header X-Realmgate-Tenant %[var(txn.tenant)]
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid]
"""


def haproxy_tenant(bench: Bench) -> str:
    """Frontend lines: Host -> tenant through a map file of the bench's tenants (written
    here), 404 for an unknown host."""
    hosts_map = bench.work / "haproxy-hosts.map"
    hosts_map.write_text("".join(f"{host} {tenant}\n" for tenant, host in bench.tenant_hosts()))
    return f"""    http-request set-var(txn.tenant) req.hdr(host),field(1,:),lower,map_str({hosts_map})
    acl known_host var(txn.tenant) -m found
    http-request return status 404 content-type text/plain string "unknown host" if !known_host
"""


def public_haproxy(bench: Bench, port: int) -> int:
    """Host -> tenant through a map file, 404 when absent, one reused backend."""
    frontend = f"""    bind 127.0.0.1:{port}
{haproxy_tenant(bench)}{HAPROXY_FORWARDED}"""
    return start_haproxy(bench, port, frontend)


def public_table(bench: Bench) -> dict:
    """Routing table v1: every tenant host routes / to upstream "app", auth public."""
    return {
        "version": 1,
        "upstreams": {"app": {"endpoints": [f"127.0.0.1:{bench.upstream_port}"]}},
        "tenants": [{"id": tenant, "hosts": [host],
                     "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}
                    for tenant, host in bench.tenant_hosts()],
    }


def public_realmgate(bench: Bench, port: int) -> int:
    return start_realmgate(bench, port, public_table(bench))


def with_assertion(bench: Bench, table: dict) -> dict:
    """The table with an `assertion` section (issue 17): one P-256 key made by openssl, so
    every forwarded request carries a signed x-realmgate-assertion."""
    key = bench.work / "assertion-key.pem"
    if not key.is_file():
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(key)], check=True,
                       stdout=subprocess.DEVNULL)
    table = dict(table)
    table["assertion"] = {"issuer": "realmgate-bench", "keys": [
        {"kid": "bench-1", "alg": "ES256", "private_key_pem": key.read_text(), "state": "active"}]}
    return table


def public_realmgate_assertion(bench: Bench, port: int) -> int:
    return start_realmgate(bench, port, with_assertion(bench, public_table(bench)),
                           name="realmgate-assertion")


def start_realmgate(bench: Bench, port: int, table: dict, name: str = "realmgate") -> int:
    """Start realmgate with the bench's Pingora settings, push table, wait for /readyz.
    `name` names its files in the work dir, so several instances can run side by side."""
    if bench.realmgate_bin is None or not bench.realmgate_bin.is_file():
        raise PeerFailed(f"realmgate binary not found: {bench.realmgate_bin}")
    admin_port = free_ports(1)[0]
    token = secrets.token_urlsafe(24)
    token_file = bench.work / f"{name}-admin-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    conf_path = realmgate_conf(bench, name, port, admin_port,
                               f"  admin_token_file: {token_file}\n")
    log_path = bench.work / f"{name}.log"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc = bench.procs.start([str(bench.realmgate_bin), "--conf", str(conf_path)], log_path, env)
    wait_until(lambda: status_is(admin_port, "/healthz", 200), proc, log_path,
               "realmgate admin /healthz")
    push_table(admin_port, token, table)
    wait_until(lambda: status_is(admin_port, "/readyz", 200), proc, log_path,
               "realmgate /readyz")
    return proc.pid


def realmgate_conf(bench: Bench, name: str, port: int, admin_port: int, extra: str) -> Path:
    """The bench's realmgate configuration (Pingora settings, listeners, state dir)."""
    state_dir = bench.work / f"{name}-state"
    state_dir.mkdir(exist_ok=True)
    conf_path = bench.work / f"{name}.yaml"
    conf_path.write_text(f"""pingora:
  threads: {bench.args.workers}
  work_stealing: false
  upstream_keepalive_pool_size: 256
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
gateway:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
{extra}  state_dir: {state_dir}
""")
    return conf_path


# The experiment of issue 16, item 2 (gateway/examples/lean_loop.rs, benches/LEAN-LOOP.md):
# a peer of the public scenario only when this variable names its binary.
LEAN_LOOP_ENV = "REALMGATE_LEAN_LOOP_BIN"


def public_lean_loop(bench: Bench, port: int) -> int:
    """The lean-loop experiment with realmgate's configuration and the public table (a file:
    it has no admin listener)."""
    binary = Path(os.environ.get(LEAN_LOOP_ENV, ""))
    if not binary.is_file():
        raise PeerFailed(f"lean_loop binary not found: {binary} (set {LEAN_LOOP_ENV})")
    conf_path = realmgate_conf(bench, "lean-loop", port, free_ports(1)[0], "")
    table_path = bench.work / "lean-loop-table.json"
    table_path.write_text(json.dumps(public_table(bench)))
    log_path = bench.work / "lean-loop.log"
    argv = [str(binary), "--conf", str(conf_path), "--table", str(table_path),
            *os.environ.get("REALMGATE_LEAN_LOOP_ARGS", "").split()]  # e.g. --no-edge
    proc = bench.procs.start(argv, log_path, dict(os.environ, RUST_LOG="warn"))
    wait_until(lambda: port_open(port), proc, log_path, "lean_loop")
    return proc.pid


def push_table(admin_port: int, token: str, table: dict) -> None:
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {token}",
               "Content-Type": "application/json"}
    try:
        status, body = http_call(admin_port, "PUT", "/v1/table", headers,
                                 json.dumps(table).encode())
    except OSError as err:
        raise PeerFailed(f"PUT /v1/table: {err}") from err
    if status != 200:
        raise PeerFailed(f"PUT /v1/table: {status} {body[:500]!r}")


# --------------------------------------------------------------------------
# Scenario "jwt": a Bearer access token checked on every request
# --------------------------------------------------------------------------
#
# One RS256 token (signed here with the test-only key tests/fixtures/jwt/rsa1.pem through
# the openssl CLI) is sent with every request. Each tenant t<i> has its own issuer
# http://bench.test/realms/t<i>; the token is bench's. Both peers check the same things:
# RS256 signature against the realm key, iss = the tenant's issuer, aud, exp (HAProxy's
# jwt_verify checks only the signature, so exp, iss and aud are explicit rules there), and
# send the subject upstream without the token. realmgate verifies a token once and then
# serves repeats from its verified-token cache; HAProxy verifies the signature every time.
# "realmgate-public" is realmgate on the scenario-"public" table, sent the same request with
# the same token (passed through unchecked), for the cost of auth alone.

JWT_KEY = WORKSPACE / "tests" / "fixtures" / "jwt" / "rsa1.pem"
JWT_KID = "bench-k1"
JWT_AUDIENCE = "bench-api"
JWKS_PATH = "/.bench/jwks.json"


def b64url(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issuer_of(tenant: str) -> str:
    return f"http://{MEASURED_HOST}/realms/{tenant}"


@dataclasses.dataclass(frozen=True)
class JwtMaterial:
    token: str
    jwks: str
    public_pem: Path


def jwt_material(work: Path) -> JwtMaterial:
    """The bench token (valid 6 hours), the realm JWKS and the PEM public key, via openssl."""
    openssl = which("openssl") or "openssl"
    public_pem = work / "jwt-public.pem"
    subprocess.run([openssl, "pkey", "-in", str(JWT_KEY), "-pubout", "-out", str(public_pem)],
                   check=True, capture_output=True)
    text = subprocess.run([openssl, "rsa", "-pubin", "-in", str(public_pem), "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    modulus = subprocess.run([openssl, "rsa", "-pubin", "-in", str(public_pem), "-noout",
                              "-modulus"], check=True, capture_output=True, text=True).stdout
    n = int(modulus.strip().split("=", 1)[1], 16)
    e = int(re.search(r"Exponent: (\d+)", text).group(1))
    to_bytes = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    jwks = json.dumps({"keys": [{"kty": "RSA", "kid": JWT_KID, "alg": "RS256", "use": "sig",
                                 "n": b64url(to_bytes(n)), "e": b64url(to_bytes(e))}]})
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": JWT_KID}
    claims = {"iss": issuer_of("bench"), "sub": "bench-user", "aud": JWT_AUDIENCE,
              "azp": "bench-client", "iat": now, "exp": now + 6 * 3600, "typ": "Bearer",
              "realm_access": {"roles": ["user"]}}
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = subprocess.run([openssl, "dgst", "-sha256", "-sign", str(JWT_KEY)],
                               input=signing_input.encode(), check=True,
                               capture_output=True).stdout
    return JwtMaterial(f"{signing_input}.{b64url(signature)}", jwks, public_pem)


def jwt_haproxy(bench: Bench, port: int) -> int:
    """The public config plus HAProxy's jwt_verify and explicit alg/iss/aud/exp rules."""
    material = bench.jwt
    issuers_map = bench.work / "haproxy-issuers.map"
    issuers_map.write_text("".join(f"{tenant} {issuer_of(tenant)}\n"
                                   for tenant, _ in bench.tenant_hosts()))
    frontend = f"""    bind 127.0.0.1:{port}
{haproxy_tenant(bench)}    http-request set-var(txn.bearer) http_auth_bearer
    http-request return status 401 content-type application/json string '{{"error":"unauthorized"}}' unless {{ var(txn.bearer) -m found }}
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
    http-request return status 401 content-type application/json string '{{"error":"unauthorized"}}' unless {{ var(txn.alg) -m str RS256 }}
    http-request return status 401 content-type application/json string '{{"error":"unauthorized"}}' unless {{ var(txn.bearer),jwt_verify(txn.alg,"{material.public_pem}") -m int 1 }}
    http-request set-var(txn.want_iss) var(txn.tenant),map_str({issuers_map})
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss')
    http-request return status 401 content-type application/json string '{{"error":"unauthorized"}}' unless {{ var(txn.iss),strcmp(txn.want_iss) eq 0 }}
    http-request return status 401 content-type application/json string '{{"error":"unauthorized"}}' unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str {JWT_AUDIENCE} }}
    http-request set-var(txn.now) date()
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request return status 401 content-type application/json string '{{"error":"unauthorized"}}' unless {{ var(txn.exp),sub(txn.now) -m int gt 0 }}
    http-request set-header X-Realmgate-Subject %[var(txn.bearer),jwt_payload_query('$.sub')]
    http-request del-header Authorization
{HAPROXY_FORWARDED}"""
    return start_haproxy(bench, port, frontend)


def jwt_table(bench: Bench) -> dict:
    """Every tenant with its own realm (issuer), keys from the upstream's JWKS, / jwt."""
    jwks_uri = f"http://127.0.0.1:{bench.upstream_port}{JWKS_PATH}"
    return {
        "version": 1,
        "upstreams": {"app": {"endpoints": [f"127.0.0.1:{bench.upstream_port}"]}},
        "tenants": [{"id": tenant, "hosts": [host],
                     "realm": {"issuer": issuer_of(tenant), "jwks_uri": jwks_uri,
                               "audiences": [JWT_AUDIENCE]},
                     "routes": [{"prefix": "/", "upstream": "app", "auth": "jwt"}]}
                    for tenant, host in bench.tenant_hosts()],
    }


def jwt_realmgate(bench: Bench, port: int) -> int:
    return start_realmgate(bench, port, jwt_table(bench))


def jwt_realmgate_assertion(bench: Bench, port: int) -> int:
    return start_realmgate(bench, port, with_assertion(bench, jwt_table(bench)),
                           name="realmgate-assertion")


def public_realmgate_beside(bench: Bench, port: int) -> int:
    return start_realmgate(bench, port, public_table(bench), name="realmgate-public")


def jwt_prepare(bench: Bench, scenario: "Scenario") -> None:
    """Sign the bench token; the load carries it, the checks try without and forged."""
    bench.jwt = jwt_material(bench.work)
    token = bench.jwt.token
    auth = (("Authorization", f"Bearer {token}"),)
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload}.{sig[:-8]}{'A' * 8}"
    scenario.load = Check(Request(MEASURED_HOST, headers=auth), 200, UPSTREAM_BODY)
    # The baseline sends the very same request to a public route (which passes the header
    # through): wrk and the kernel do the same work, only the auth check differs.
    scenario.per_peer_load["realmgate-public"] = scenario.load
    scenario.checks = (
        Check(Request(MEASURED_HOST), 401),
        Check(Request(MEASURED_HOST, headers=(("Authorization", f"Bearer {forged}"),)), 401),
        Check(Request(f"t1.{MEASURED_HOST}", headers=auth), 401),  # another tenant's realm
        Check(Request(f"unknown.{MEASURED_HOST}", headers=auth), 404),
    )


# --------------------------------------------------------------------------
# Scenario "api_key": a namespace-scoped API key checked on every request
# --------------------------------------------------------------------------
#
# Every tenant's / needs an API key; one key of the measured tenant ("bench", namespaces "*")
# is sent with every request in X-API-Key. Every tenant has a tenant and a per-key rate
# limit configured far above the load, so the limiter runs on every request without ever
# refusing one (issue 4: "with a rate limit configured but not hit"). "realmgate-public" is
# realmgate on the scenario-"public" table, sent the same request (the key header passes
# through unchecked), for the cost of the key check and the limits alone.

API_KEY_LIMIT = {"requests": 1_000_000_000, "window_s": 1}


def api_key_table(bench: Bench) -> dict:
    import hashlib
    digest = hashlib.sha256(bench.api_key.encode()).hexdigest()
    return {
        "version": 1,
        "upstreams": {"app": {"endpoints": [f"127.0.0.1:{bench.upstream_port}"]}},
        "tenants": [{"id": tenant, "hosts": [host],
                     "rate_limits": {"tenant": API_KEY_LIMIT, "per_key": API_KEY_LIMIT},
                     "routes": [{"prefix": "/", "upstream": "app", "auth": "api_key"}]}
                    for tenant, host in bench.tenant_hosts()],
        "api_keys": [{"id": "bench-key", "digest": f"sha256:{digest}", "tenant": "bench",
                      "namespaces": ["*"]}],
    }


def api_key_realmgate(bench: Bench, port: int) -> int:
    return start_realmgate(bench, port, api_key_table(bench))


def api_key_prepare(bench: Bench, scenario: "Scenario") -> None:
    """Mint the bench key the way realmctl does (rgk_ + base64url of 32 random bytes)."""
    bench.api_key = "rgk_" + b64url(secrets.token_bytes(32))
    key = (("X-API-Key", bench.api_key),)
    scenario.load = Check(Request(MEASURED_HOST, headers=key), 200, UPSTREAM_BODY)
    scenario.per_peer_load["realmgate-public"] = scenario.load
    wrong = (("X-API-Key", "rgk_" + b64url(secrets.token_bytes(32))),)
    scenario.checks = (
        Check(Request(MEASURED_HOST), 401),
        Check(Request(MEASURED_HOST, headers=wrong), 401),
        Check(Request(f"t1.{MEASURED_HOST}", headers=key), 403),  # another tenant's host
    )


@dataclasses.dataclass
class Scenario:
    description: str
    load: Check | None         # what wrk sends, and what one such request must get
    checks: tuple[Check, ...]  # further requests verified once per peer after its start
    setup: dict[str, Callable[[Bench, int], int]]  # peer -> start it on port, return pid
    # Peers measured with a request of their own (a baseline such as realmgate's public
    # route); they get no extra checks.
    per_peer_load: dict[str, Check] = dataclasses.field(default_factory=dict)
    # Runs once before any peer starts and may fill `load`/`checks` (e.g. sign a token).
    prepare: Callable[[Bench, "Scenario"], None] | None = None

    def load_for(self, peer: str) -> Check:
        load = self.per_peer_load.get(peer, self.load)
        assert load is not None, "scenario not prepared"
        return load

    def checks_for(self, peer: str) -> tuple[Check, ...]:
        return () if peer in self.per_peer_load else self.checks


SCENARIOS: dict[str, Scenario] = {
    "public": Scenario(
        description="host routing to the fixed upstream, no auth",
        load=Check(Request(MEASURED_HOST), 200, UPSTREAM_BODY),
        checks=(Check(Request(f"t1.{MEASURED_HOST}"), 200, UPSTREAM_BODY),
                Check(Request(f"unknown.{MEASURED_HOST}"), 404)),
        setup={"nginx": public_nginx, "haproxy": public_haproxy,
               "realmgate": public_realmgate,
               "realmgate-assertion": public_realmgate_assertion,
               **({"lean-loop": public_lean_loop} if os.environ.get(LEAN_LOOP_ENV) else {})},
    ),
    "jwt": Scenario(
        description="RS256 Bearer token checked against the tenant's realm on every request",
        load=None,
        checks=(),
        setup={"haproxy": jwt_haproxy, "realmgate": jwt_realmgate,
               "realmgate-public": public_realmgate_beside,
               "realmgate-assertion": jwt_realmgate_assertion},
        per_peer_load={},  # realmgate-public: set by jwt_prepare
        prepare=jwt_prepare,
    ),
    "api_key": Scenario(
        description="namespace-scoped API key and rate limits (configured, never hit) on every request",
        load=None,
        checks=(),
        setup={"realmgate": api_key_realmgate, "realmgate-public": public_realmgate_beside},
        per_peer_load={},  # realmgate-public: set by api_key_prepare
        prepare=api_key_prepare,
    ),
}

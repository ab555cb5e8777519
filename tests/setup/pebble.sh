#!/usr/bin/env bash
# A real ACME server for the certificate tests: Pebble, Let's Encrypt's test CA, built from the
# Go module proxy (github.com/letsencrypt/pebble/v2, which has ACME Renewal Information and
# profiles; Debian's pebble 2.4 has neither and ships no listener certificate), run on loopback
# with a listener certificate minted here and resolving names through the tests' PowerDNS.
#
#   tests/setup/pebble.sh build            build once; print the directory of the binary
#   tests/setup/pebble.sh start DIR        start Pebble with its state in DIR, wait until its
#                                          directory answers, print four lines: the directory
#                                          URL, the CA file that trusts its listener, the
#                                          management URL (roots at /roots/0), the pid file
#   tests/setup/pebble.sh stop DIR         stop what `start DIR` began, remove DIR
#
# `start` reads:
#   PEBBLE_DNS_SERVER      host:port of the resolver Pebble's VA uses (the tests' PowerDNS);
#                          required: Pebble must find tenant hosts where the tests put them
#   PEBBLE_HTTP_PORT       the port http-01 validations connect to (the gateway's plain listener)
#   PEBBLE_TLS_PORT        the port tls-alpn-01 validations connect to (default: a free port)
#   PEBBLE_VALIDITY_S      certificate lifetime in seconds (default 90 days; short for renewals)
#   PEBBLE_WFE_NONCEREJECT percentage of valid nonces Pebble rejects with badNonce (default 0)
# PEBBLE_VA_ALWAYS_VALID is always unset: every challenge is really validated.
#
# Only the binary is kept, under ~/.cache/realmgate/pebble-<version>; Go's module and build
# caches live in a temporary directory during the build and are removed after it.
set -euo pipefail

VERSION="${PEBBLE_VERSION:-2.10.3}"
CACHE="${REALMGATE_CACHE:-$HOME/.cache/realmgate}"
BIN="$CACHE/pebble-$VERSION"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "pebble: $*" >&2; }

build() {
  if [ -x "$BIN/pebble" ]; then
    echo "$BIN"
    return
  fi
  command -v go >/dev/null || { log "Go is needed to build Pebble"; exit 1; }
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/realmgate-pebble-build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
  export GOPATH="$work/gopath" GOMODCACHE="$work/gomod" GOCACHE="$work/gocache" GOWORK=off \
    GOBIN="$work/out" CGO_ENABLED=0
  log "building github.com/letsencrypt/pebble/v2/cmd/pebble@v$VERSION from the Go module proxy"
  go install -trimpath -ldflags "-s -w" "github.com/letsencrypt/pebble/v2/cmd/pebble@v$VERSION"
  mkdir -p "$BIN.part"
  mv "$work/out/pebble" "$BIN.part/"
  rm -rf "$BIN"
  mv "$BIN.part" "$BIN"
  go clean -modcache >/dev/null 2>&1 || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
  trap - EXIT
  echo "$BIN"
}

# N distinct free ports on loopback, space-separated: all sockets are held until every port
# is chosen (one port at a time, the kernel may hand out the same port twice in a row).
free_ports() {
  python3 -c 'import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))' "$1"
}

start() {
  local dir="$1"
  [ -n "${PEBBLE_DNS_SERVER:-}" ] || { log "PEBBLE_DNS_SERVER (host:port) is required"; exit 2; }
  [ -n "${PEBBLE_HTTP_PORT:-}" ] || { log "PEBBLE_HTTP_PORT is required"; exit 2; }
  build >/dev/null
  "$here/deps.sh" openssl curl >&2
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local port mgmt_port tls_port validity
  read -r port mgmt_port tls_port <<<"$(free_ports 3)"
  tls_port="${PEBBLE_TLS_PORT:-$tls_port}"
  validity="${PEBBLE_VALIDITY_S:-7776000}"
  # The listener's own CA and certificate (for 127.0.0.1 and localhost): what realmctl trusts
  # through directory_ca_file. Unrelated to the CA Pebble issues from (fresh each start,
  # fetched from the management listener's /roots/0).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/listener-ca.key" -out "$dir/listener-ca.pem" -days 2 \
    -subj "/CN=realmgate-test-pebble-listener-ca" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/listener.key" \
    -out "$dir/listener.csr" -subj "/CN=pebble" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/listener.csr" -CA "$dir/listener-ca.pem" \
    -CAkey "$dir/listener-ca.key" -CAcreateserial -out "$dir/listener.pem" -days 2 \
    -extfile "$dir/san.ext" 2>/dev/null
  chmod 600 "$dir"/*.key
  cat >"$dir/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$port",
    "managementListenAddress": "127.0.0.1:$mgmt_port",
    "certificate": "$dir/listener.pem",
    "privateKey": "$dir/listener.key",
    "httpPort": $PEBBLE_HTTP_PORT,
    "tlsPort": $tls_port,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "retryAfter": {"authz": 1, "order": 1},
    "certificateValidityPeriod": $validity,
    "profiles": {
      "default": {"description": "the tests' profile", "validityPeriod": $validity}
    }
  }
}
EOF
  # Pebble sleeps up to 15 s before each validation unless told not to; the VA still validates.
  env -u PEBBLE_VA_ALWAYS_VALID PEBBLE_VA_NOSLEEP=1 \
    PEBBLE_WFE_NONCEREJECT="${PEBBLE_WFE_NONCEREJECT:-0}" \
    setsid "$BIN/pebble" -config "$dir/pebble.json" -dnsserver "$PEBBLE_DNS_SERVER" \
    >"$dir/pebble.log" 2>&1 </dev/null &
  echo $! >"$dir/pebble.pid"
  local i
  for i in $(seq 1 100); do
    if curl -fsS --cacert "$dir/listener-ca.pem" "https://127.0.0.1:$port/dir" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$(cat "$dir/pebble.pid")" 2>/dev/null; then
      tail -n 20 "$dir/pebble.log" >&2
      log "pebble exited"
      exit 1
    fi
    [ "$i" -eq 100 ] && { tail -n 20 "$dir/pebble.log" >&2; log "not ready after 10 s"; exit 1; }
    sleep 0.1
  done
  log "ready at https://127.0.0.1:$port/dir (http-01 on port $PEBBLE_HTTP_PORT, DNS $PEBBLE_DNS_SERVER)"
  echo "https://127.0.0.1:$port/dir"
  echo "$dir/listener-ca.pem"
  echo "https://127.0.0.1:$mgmt_port"
  echo "$dir/pebble.pid"
}

stop() {
  local dir="$1" pid
  if [ -f "$dir/pebble.pid" ]; then
    pid="$(cat "$dir/pebble.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  build) build ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac

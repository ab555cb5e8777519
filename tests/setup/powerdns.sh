#!/usr/bin/env bash
# A real PowerDNS authoritative server for the provisioning tests: Debian's pdns-server with
# the sqlite3 backend, its own config directory and database (schema from the package), DNS
# and the HTTP API on loopback, an API key, and a test zone created through the API.
#
#   tests/setup/powerdns.sh start [DNS_PORT] [API_PORT]   print three lines: API URL, API key
#                                                         file, DNS address (127.0.0.1:PORT)
#   tests/setup/powerdns.sh stop
#
# The zone is $POWERDNS_ZONE (default realmgate.test.). State lives in $POWERDNS_RUN_DIR
# (default ~/.cache/realmgate/powerdns-run), made fresh at each start.
set -euo pipefail

RUN_DIR="${POWERDNS_RUN_DIR:-${REALMGATE_CACHE:-$HOME/.cache/realmgate}/powerdns-run}"
ZONE="${POWERDNS_ZONE:-realmgate.test.}"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "powerdns: $*" >&2; }

stop() {
  [ -f "$RUN_DIR/pid" ] || return 0
  local pid
  pid="$(cat "$RUN_DIR/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/pid"
}

start() {
  local dns_port="${1:-${POWERDNS_DNS_PORT:-15353}}" api_port="${2:-${POWERDNS_API_PORT:-18290}}"
  "$here/deps.sh" pdns-server pdns-backend-sqlite3 sqlite3 curl >&2
  # The package's own service is not ours to use (it would want port 53 and /etc/powerdns).
  stop
  rm -rf "$RUN_DIR"
  mkdir -p "$RUN_DIR/conf"
  local schema=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
  sqlite3 "$RUN_DIR/pdns.sqlite3" <"$schema"
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$RUN_DIR/api-key"
  chmod 600 "$RUN_DIR/api-key"
  cat >"$RUN_DIR/conf/pdns.conf" <<CONF
launch=gsqlite3
gsqlite3-database=$RUN_DIR/pdns.sqlite3
local-address=127.0.0.1
local-port=$dns_port
api=yes
api-key=$(cat "$RUN_DIR/api-key")
webserver=yes
webserver-address=127.0.0.1
webserver-port=$api_port
webserver-allow-from=127.0.0.0/8
socket-dir=$RUN_DIR
daemon=no
guardian=no
disable-syslog=yes
loglevel=4
default-ttl=60
CONF
  log "starting pdns_server (DNS 127.0.0.1:$dns_port, API http://127.0.0.1:$api_port)"
  setsid /usr/sbin/pdns_server --config-dir="$RUN_DIR/conf" >"$RUN_DIR/pdns.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/pid"
  local key url="http://127.0.0.1:$api_port"
  key="$(cat "$RUN_DIR/api-key")"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null -H "X-API-Key: $key" "$url/api/v1/servers/localhost" 2>/dev/null && break
    kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null || { tail -n 30 "$RUN_DIR/pdns.log" >&2; exit 1; }
    sleep 0.1
  done
  curl -fsS -o /dev/null -X POST -H "X-API-Key: $key" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$ZONE\", \"kind\": \"Native\", \"nameservers\": [\"ns1.$ZONE\"]}" \
    "$url/api/v1/servers/localhost/zones" || { log "cannot create zone $ZONE"; tail -n 30 "$RUN_DIR/pdns.log" >&2; stop; exit 1; }
  log "ready; zone $ZONE"
  echo "$url"
  echo "$RUN_DIR/api-key"
  echo "127.0.0.1:$dns_port"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start [DNS_PORT] [API_PORT] | stop" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real Keycloak for the auth tests: fetched from Maven Central
# (org.keycloak:keycloak-quarkus-dist, zip) with Maven, checked against a pinned SHA-256,
# unpacked into a cache kept between runs, and run in dev mode on loopback.
#
#   tests/setup/keycloak.sh fetch          unpack (once) and print the Keycloak home
#   tests/setup/keycloak.sh start [PORT]   start on 127.0.0.1:PORT (default 18180) with a fresh
#                                          database, wait until ready, print the base URL
#   tests/setup/keycloak.sh stop           stop the instance `start` began
#
# The bootstrap admin is KEYCLOAK_ADMIN_USER / KEYCLOAK_ADMIN_PASSWORD (defaults below); the
# tests read the same variables. The first start of a fresh unpack builds Keycloak's Quarkus
# application, which takes a minute or two on a 2-core machine; later starts take ~20 s.
set -euo pipefail

VERSION="${KEYCLOAK_VERSION:-26.4.7}"
# SHA-256 of keycloak-quarkus-dist-26.4.7.zip as served by Maven Central (Maven also checks
# Central's own SHA-1 with --strict-checksums). Another version needs KEYCLOAK_SHA256.
PINNED_SHA256="dd9834c023460be856f731423d86228c23b5d002194a2064642bec0cc6573eaa"
SHA256="${KEYCLOAK_SHA256:-$([ "$VERSION" = 26.4.7 ] && echo "$PINNED_SHA256" || echo "")}"
CACHE="${REALMGATE_CACHE:-$HOME/.cache/realmgate}/keycloak"
HOME_DIR="$CACHE/keycloak-$VERSION"
RUN_DIR="${KEYCLOAK_RUN_DIR:-$CACHE/run}"
ADMIN_USER="${KEYCLOAK_ADMIN_USER:-admin}"
ADMIN_PASSWORD="${KEYCLOAK_ADMIN_PASSWORD:-realmgate-e2e-admin}"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "keycloak: $*" >&2; }

java_home() {
  # Keycloak 26.4 runs on Java 17 or 21; Debian 12 ships 17.
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME"
    return
  fi
  "$here/deps.sh" openjdk-17-jre-headless >&2
  dirname "$(dirname "$(readlink -f "$(command -v java)")")"
}

fetch() {
  if [ -x "$HOME_DIR/bin/kc.sh" ]; then
    echo "$HOME_DIR"
    return
  fi
  "$here/deps.sh" maven unzip openjdk-17-jdk-headless >&2
  mkdir -p "$CACHE"
  local zip="$CACHE/keycloak-quarkus-dist-$VERSION.zip"
  if [ ! -f "$zip" ]; then
    log "fetching org.keycloak:keycloak-quarkus-dist:$VERSION:zip from Maven Central"
    local tmp
    tmp="$(mktemp -d)"
    mvn -B -q --strict-checksums dependency:copy \
      -Dartifact="org.keycloak:keycloak-quarkus-dist:$VERSION:zip" \
      -DoutputDirectory="$tmp" >&2
    mv "$tmp/keycloak-quarkus-dist-$VERSION.zip" "$zip.part"
    rmdir "$tmp"
    mv "$zip.part" "$zip"
  fi
  if [ -n "$SHA256" ]; then
    if ! echo "$SHA256  $zip" | sha256sum -c --status; then
      log "checksum mismatch for $zip (want $SHA256); removing it"
      rm -f "$zip"
      exit 1
    fi
  else
    log "no pinned SHA-256 for $VERSION (set KEYCLOAK_SHA256); relying on Maven's checksum check"
  fi
  rm -rf "$HOME_DIR.part"
  mkdir -p "$HOME_DIR.part"
  unzip -q "$zip" -d "$HOME_DIR.part"
  mv "$HOME_DIR.part/keycloak-$VERSION" "$HOME_DIR"
  rmdir "$HOME_DIR.part"
  echo "$HOME_DIR"
}

start() {
  local port="${1:-${KEYCLOAK_PORT:-18180}}"
  local home url pid
  home="$(fetch)"
  url="http://127.0.0.1:$port"
  mkdir -p "$RUN_DIR"
  if [ -f "$RUN_DIR/pid" ] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
    log "already running (pid $(cat "$RUN_DIR/pid")); stopping it for a fresh start"
    stop
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is taken; choose another with KEYCLOAK_PORT"
    exit 1
  fi
  # A fresh dev database each start: tests create their realms themselves.
  rm -rf "$home/data"
  local jh
  jh="$(java_home)"
  log "starting Keycloak $VERSION on $url (log: $RUN_DIR/keycloak.log)"
  (
    cd "$RUN_DIR"
    JAVA_HOME="$jh" \
      KC_BOOTSTRAP_ADMIN_USERNAME="$ADMIN_USER" \
      KC_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
      setsid "$home/bin/kc.sh" start-dev \
      --http-host=127.0.0.1 --http-port="$port" \
      --health-enabled=true --http-management-port=$((port + 1)) \
      --hostname-strict=false \
      >"$RUN_DIR/keycloak.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/pid"
  )
  pid="$(cat "$RUN_DIR/pid")"
  local deadline=$((SECONDS + ${KEYCLOAK_START_TIMEOUT:-300}))
  until curl -fsS -o /dev/null "http://127.0.0.1:$((port + 1))/health/ready" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "exited during start; last log lines:"
      tail -n 40 "$RUN_DIR/keycloak.log" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "not ready after ${KEYCLOAK_START_TIMEOUT:-300}s; last log lines:"
      tail -n 40 "$RUN_DIR/keycloak.log" >&2
      stop
      exit 1
    fi
    sleep 1
  done
  # The master realm's token endpoint answering means the admin API is usable.
  until curl -fsS -o /dev/null "$url/realms/master/.well-known/openid-configuration"; do
    sleep 1
    [ $SECONDS -lt $deadline ] || { log "master realm not served"; stop; exit 1; }
  done
  log "ready at $url (pid $pid)"
  echo "$url"
}

stop() {
  [ -f "$RUN_DIR/pid" ] || return 0
  local pid
  pid="$(cat "$RUN_DIR/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    # kc.sh runs java as a child in its own session (setsid): end the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 fetch | start [PORT] | stop" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real Kubernetes API server for the tests: kube-apiserver and etcd built from the Go module
# proxy (k8s.io/kubernetes, the way controller-runtime's envtest runs them: no kubelet, so no
# pod ever runs, but every object is stored, validated, admitted, watched and
# server-side-applied by the real server), run on loopback with a bearer token.
#
#   tests/setup/kubernetes.sh build        build once; print the directory of the binaries
#   tests/setup/kubernetes.sh start DIR    start etcd + kube-apiserver with state in DIR, wait
#                                          for /readyz, write DIR/kubeconfig, print its path
#   tests/setup/kubernetes.sh stop DIR     stop what `start DIR` began, remove DIR
#
# Only the two binaries (~125 MB) are kept, under ~/.cache/realmgate/kubernetes-<version>;
# Go's module and build caches (~2.7 GB) live in a temporary directory during the build and
# are removed after it. A cold build takes about 8 minutes on 2 cores.
set -euo pipefail

VERSION="${KUBERNETES_VERSION:-1.34.3}"
CACHE="${REALMGATE_CACHE:-$HOME/.cache/realmgate}"
BIN="$CACHE/kubernetes-$VERSION"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "kubernetes: $*" >&2; }

build() {
  if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ]; then
    echo "$BIN"
    return
  fi
  command -v go >/dev/null || { log "Go is needed to build kube-apiserver and etcd"; exit 1; }
  "$here/deps.sh" openssl curl >&2
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/realmgate-kube-build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
  export GOPATH="$work/gopath" GOMODCACHE="$work/gomod" GOCACHE="$work/gocache" GOWORK=off \
    GOFLAGS=-mod=mod CGO_ENABLED=0
  log "fetching k8s.io/kubernetes@v$VERSION from the Go module proxy"
  local dir
  dir="$(go mod download -json "k8s.io/kubernetes@v$VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  cd "$work/src"
  # The module zip's staging replaces point at ./staging, which is not in the zip: require the
  # published staging modules of the same release instead.
  local staging
  staging="v0.${VERSION#1.}"
  go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])' | while read -r m; do
    go mod edit -dropreplace="$m" -require="$m@$staging"
  done
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$VERSION"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$VERSION"
  log "building kube-apiserver v$VERSION (several minutes)"
  go build -trimpath -ldflags "$ldflags" -o "$work/out/kube-apiserver" ./cmd/kube-apiserver
  log "building etcd"
  go build -trimpath -ldflags "-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3
  mkdir -p "$BIN.part"
  mv "$work/out/kube-apiserver" "$work/out/etcd" "$BIN.part/"
  rm -rf "$BIN"
  mv "$BIN.part" "$BIN"
  cd /
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
  build >/dev/null
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local etcd_port peer_port port
  read -r etcd_port peer_port port <<<"$(free_ports 3)"
  # A CA, a serving certificate for 127.0.0.1 (clients check SANs, never the CN), and the
  # service-account signing key.
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -days 2 -subj "/CN=realmgate-test-kube-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$dir/server.key" -out "$dir/server.csr" \
    -subj "/CN=kube-apiserver" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/server.crt" -days 2 -extfile "$dir/san.ext" 2>/dev/null
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  local token
  token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  printf '%s,admin,admin-uid,system:masters\n' "$token" >"$dir/tokens.csv"
  # A second user that no RBAC rule names: every call but discovery is 403 (tests of the
  # errors that name a missing rule).
  printf '%s,limited,limited-uid\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" \
    >>"$dir/tokens.csv"
  chmod 600 "$dir"/*.key "$dir/tokens.csv"

  "$BIN/etcd" --data-dir "$dir/etcd" --unsafe-no-fsync=true \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --name default \
    >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$dir/server.crt" --tls-private-key-file "$dir/server.key" \
    --client-ca-file "$dir/ca.crt" --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer "https://127.0.0.1:$port/" \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --disable-admission-plugins ServiceAccount \
    --endpoint-reconciler-type none >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"

  local i
  for i in $(seq 1 120); do
    if curl -fsS --cacert "$dir/ca.crt" -H "Authorization: Bearer $token" \
      "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null; then
      tail -20 "$dir/kube-apiserver.log" >&2
      log "kube-apiserver exited"
      exit 1
    fi
    [ "$i" -eq 120 ] && { tail -20 "$dir/kube-apiserver.log" >&2; log "not ready after 60 s"; exit 1; }
    sleep 0.5
  done
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$dir/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
EOF
  chmod 600 "$dir/kubeconfig"
  echo "$dir/kubeconfig"
}

stop() {
  local dir="$1"
  local name pid
  for name in kube-apiserver etcd; do
    if [ -f "$dir/$name.pid" ]; then
      pid="$(cat "$dir/$name.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}

case "${1:-}" in
  build) build ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac

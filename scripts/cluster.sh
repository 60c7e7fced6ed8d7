#!/usr/bin/env bash
# A throwaway Kubernetes control plane on loopback, from binaries built by scripts/k8s-build.sh:
# etcd, kube-apiserver (authorization mode RBAC, service-account tokens signed by a key made
# here) and kube-controller-manager (garbage collection, Deployment -> ReplicaSet -> Pod,
# namespaces, service accounts). No node: pods stay Pending (tier 1).
#
#   scripts/cluster.sh up   [DIR]   build what is missing, start, write DIR/kubeconfig (admin)
#   scripts/cluster.sh down [DIR]   stop what `up` started in DIR (by the pids it recorded)
#
# DIR defaults to .cluster (git-ignored). Both are idempotent: `up` on a running cluster only
# checks it is healthy; `down` on a stopped one does nothing. Ports are free loopback ports picked
# at start (or CLUSTER_PORT_BASE, BASE..BASE+3), recorded in DIR/ports.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${TRADEFLEET_K8S_CACHE:-/var/cache/tradefleet/k8s}
BIN="$CACHE/bin"
cmd=${1:-}
DIR=$(mkdir -p "${2:-$ROOT/.cluster}" && cd "${2:-$ROOT/.cluster}" && pwd)
COMPONENTS=(kube-controller-manager kube-apiserver etcd)

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

down() {
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then
      local pid
      pid=$(cat "$DIR/$c.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $c ($pid)"
    fi
    rm -f "$DIR/$c.pid"
  done
  rm -rf "$DIR/etcd-data"
}

# wait_for NAME URL [curl args...]: poll a health endpoint until it answers 200 (2 min at most).
wait_for() {
  local name=$1 url=$2
  shift 2
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null --max-time 2 "$@" "$url"; then return 0; fi
    if ! alive "$name"; then
      log "$name exited; last lines of $DIR/$name.log:"
      tail -n 30 "$DIR/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  log "$name did not become healthy at $url"
  tail -n 30 "$DIR/$name.log" >&2
  return 1
}

start() { # start NAME ARGS...: detached (own session), output to DIR/NAME.log, pid to DIR/NAME.pid
  local name=$1
  shift
  setsid "$BIN/$name" "$@" >"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}

free_ports() { # four free loopback ports
  if [ -n "${CLUSTER_PORT_BASE:-}" ]; then
    echo "$CLUSTER_PORT_BASE $((CLUSTER_PORT_BASE + 1)) $((CLUSTER_PORT_BASE + 2)) $((CLUSTER_PORT_BASE + 3))"
    return
  fi
  python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
}

pki() { # a CA, the API server's serving cert, client certs, and the service-account key pair
  local p="$DIR/pki"
  [ -f "$p/.done" ] && return
  mkdir -p "$p"
  ssl() { openssl "$@" 2>/dev/null; }
  ssl ecparam -name prime256v1 -genkey -noout -out "$p/ca.key"
  ssl req -x509 -new -key "$p/ca.key" -subj "/CN=tradefleet-test-ca" -days 30 -out "$p/ca.crt"
  cert() { # cert NAME SUBJECT [EXTENSIONS]
    ssl ecparam -name prime256v1 -genkey -noout -out "$p/$1.key"
    ssl req -new -key "$p/$1.key" -subj "$2" -out "$p/$1.csr"
    printf '%s\n' "${3:-extendedKeyUsage=clientAuth}" >"$p/$1.ext"
    ssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 30 \
      -extfile "$p/$1.ext" -out "$p/$1.crt"
  }
  cert apiserver "/CN=kube-apiserver" \
    "$(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth')"
  cert admin "/O=system:masters/CN=tradefleet-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  ssl ecparam -name prime256v1 -genkey -noout -out "$p/sa.key"
  ssl ec -in "$p/sa.key" -pubout -out "$p/sa.pub"
  touch "$p/.done"
}

kubeconfig() { # kubeconfig FILE USER: client-certificate kubeconfig for the API server
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tradefleet
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $DIR/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $DIR/pki/$2.crt
    client-key: $DIR/pki/$2.key
contexts:
- name: tradefleet
  context: {cluster: tradefleet, user: $2, namespace: default}
current-context: tradefleet
EOF
}

up() {
  if alive kube-apiserver && alive etcd && alive kube-controller-manager && [ -f "$DIR/kubeconfig" ]; then
    read -r _ _ API_PORT _ <"$DIR/ports"
    for _ in 1 2 3 4 5 6; do # a loaded machine may answer slowly: do not restart a healthy cluster
      if curl -sf -o /dev/null --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" \
        --key "$DIR/pki/admin.key" "https://127.0.0.1:$API_PORT/readyz"; then
        log "already up: KUBECONFIG=$DIR/kubeconfig"
        return
      fi
      sleep 1
    done
  fi
  down
  bash "$ROOT/scripts/k8s-build.sh" >&2
  pki
  read -r ETCD_PORT PEER_PORT API_PORT KCM_PORT < <(free_ports)
  echo "$ETCD_PORT $PEER_PORT $API_PORT $KCM_PORT" >"$DIR/ports"
  local t0
  t0=$(date +%s)

  # etcd: throwaway data, so no fsync (a test cluster on a shared disk).
  start etcd --name tradefleet --data-dir "$DIR/etcd-data" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "tradefleet=http://127.0.0.1:$PEER_PORT" --log-level warn
  wait_for etcd "http://127.0.0.1:$ETCD_PORT/health"

  local p="$DIR/pki"
  start kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --authorization-mode RBAC --anonymous-auth=false \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=false \
    --endpoint-reconciler-type none --profiling=false --v 1
  wait_for kube-apiserver "https://127.0.0.1:$API_PORT/readyz" \
    --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key"

  kubeconfig "$DIR/kubeconfig" admin
  kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
  start kube-controller-manager --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials --controllers '*,-nodeipam,-nodelifecycle' \
    --concurrent-gc-syncs 5 --profiling=false --v 1
  wait_for kube-controller-manager "https://127.0.0.1:$KCM_PORT/healthz" -k
  log "up in $(($(date +%s) - t0)) s: KUBECONFIG=$DIR/kubeconfig (etcd :$ETCD_PORT, apiserver :$API_PORT)"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [DIR]" >&2; exit 2 ;;
esac

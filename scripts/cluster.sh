#!/usr/bin/env bash
# A throwaway Kubernetes cluster on this machine, from binaries built by scripts/k8s-build.sh:
# etcd, kube-apiserver (authorization modes Node and RBAC, service-account tokens signed by a key
# made here) and kube-controller-manager (garbage collection, Deployment -> ReplicaSet -> Pod,
# namespaces, service accounts). Without --node pods stay Pending (tier 1, on loopback).
#
#   scripts/cluster.sh up   [DIR] [--node]  build what is missing, start, write DIR/kubeconfig (admin)
#   scripts/cluster.sh down [DIR]           stop what `up` started in DIR (by the pids it recorded)
#   scripts/cluster.sh load [DIR] IMAGE...  copy images from the Docker engine into the node
#
# --node adds a node where this machine can run one (root, containerd, runc, Debian's CNI
# plugins, a Docker engine for the images): kube-scheduler, containerd (an instance of its own,
# not Docker's), kubelet, kube-proxy (iptables) and CoreDNS (Service DNS, answering on the pod
# bridge), pods on a bridge of their own (CLUSTER_POD_CIDR, default 10.244.0.0/24) that reach
# nothing beyond this machine. The API server then listens on the bridge's address instead of
# loopback (pods reach it through the `kubernetes` Service). When the node cannot run, the reason
# is logged and written to DIR/node.unavailable and the control plane still starts. One node per
# machine: a second cluster asking for one gets the reason instead. See DESIGN.md, "A node on
# these VMs", for what these VMs refuse and the settings that work around it.
#
# DIR defaults to .cluster (git-ignored). `up` and `down` are idempotent: `up` on a running cluster
# only checks it is healthy; `down` on a stopped one does nothing. Ports are free ports picked at
# start (or CLUSTER_PORT_BASE, BASE..BASE+3), recorded in DIR/ports.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${TFTEST_K8S_CACHE:-/var/cache/tradefleet/k8s}
BIN="$CACHE/bin"
cmd=${1:-}
shift || true
WANT_NODE=0
args=()
for a in "$@"; do
  case "$a" in
    --node) WANT_NODE=1 ;;
    *) args+=("$a") ;;
  esac
done
if [ "$cmd" = load ]; then # load [DIR] IMAGE...: DIR only when it is a folder
  if [ ${#args[@]} -gt 0 ] && [ -d "${args[0]}" ]; then DIR_ARG=${args[0]}; args=("${args[@]:1}"); fi
else
  DIR_ARG=${args[0]:-}
fi
DIR=$(mkdir -p "${DIR_ARG:-$ROOT/.cluster}" && cd "${DIR_ARG:-$ROOT/.cluster}" && pwd)
COMPONENTS=(coredns kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd)
# The node: machine-wide state (one node per machine), pod network, and the names it registers.
NODE_LIB=/var/lib/tradefleet-node   # containerd's root (emptied at each node start) and the kubelet's
NODE_RUN=/run/tradefleet-node       # containerd's state and socket, CNI address leases, the owner
CONTAINERD_SOCK=$NODE_RUN/containerd.sock
NODE_NAME=tradefleet-node
BRIDGE=tfnode0
POD_CIDR=${CLUSTER_POD_CIDR:-10.244.0.0/24}
GW=${POD_CIDR%.*}.1                 # the bridge's (host's) address on the pod network
SERVICE_CIDR=10.96.0.0/16
SANDBOX_IMAGE=tradefleet.local/pause:1

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

stop() { # stop NAME...: TERM, then KILL after 10 s, by the pid `start` recorded
  local c pid
  for c in "$@"; do
    if alive "$c"; then
      pid=$(cat "$DIR/$c.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $c ($pid)"
    fi
    rm -f "$DIR/$c.pid"
  done
}

crictl() { "$BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --image-endpoint "unix://$CONTAINERD_SOCK" --timeout 60s "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# Our own firewall rules, tagged so that exactly these are removed again.
RULES=(
  "FORWARD -i $BRIDGE -o $BRIDGE -j ACCEPT -m comment --comment tradefleet-node"
  "FORWARD -s $POD_CIDR ! -o $BRIDGE -j DROP -m comment --comment tradefleet-node"
)

unmount_under() { # unmount everything mounted below a folder, deepest first
  local m
  { findmnt -rn -o TARGET | grep "^$1/" || true; } | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}

node_down() { # the node's processes and pods; only the cluster that started the node stops it
  [ -f "$DIR/node.owned" ] || return 0
  stop coredns kube-proxy kubelet kube-scheduler
  if alive containerd; then # pods out through the CRI: the CNI plugin releases their network
    crictl rmp --force --all >/dev/null 2>&1 || log "crictl rmp failed; removing what is left by hand"
  fi
  stop containerd
  local pid # shims of our containerd that outlived it (never another containerd's)
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK( |$)" || true); do kill -9 "$pid" 2>/dev/null || true; done
  unmount_under "$NODE_LIB/kubelet"
  umount "$NODE_LIB/kubelet" 2>/dev/null || true # the kubelet bind-mounts its root onto itself
  unmount_under "$NODE_RUN"
  rm -rf --one-file-system "$NODE_LIB/kubelet/pods" "$NODE_RUN/cni-ipam"
  rm -f "$NODE_RUN/owner" "$DIR/node.owned"
  log "node stopped"
}

node_net_down() { # after the API server (bound to the bridge's address) has stopped
  [ -f "$DIR/node.net" ] || return 0
  "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true # its iptables chains
  local ipt table chain # the kubelet's own chains (canaries, KUBE-FIREWALL), v4 and v6
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    while "$ipt" -C INPUT -j KUBE-FIREWALL 2>/dev/null; do "$ipt" -D INPUT -j KUBE-FIREWALL; done
    while "$ipt" -C OUTPUT -j KUBE-FIREWALL 2>/dev/null; do "$ipt" -D OUTPUT -j KUBE-FIREWALL; done
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null && "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  local r
  for r in "${RULES[@]}"; do
    # shellcheck disable=SC2086
    while iptables -C $r 2>/dev/null; do iptables -D $r; done
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -f "$DIR/node.net"
}

down() {
  node_down
  stop "${COMPONENTS[@]}"
  node_net_down
  rm -rf "$DIR/etcd-data"
  rm -f "$DIR/mode"
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
  local name=$1 exe=$BIN/$1
  shift
  [ "$name" = containerd ] && exe=containerd
  setsid "$exe" "$@" >"$DIR/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/$name.pid"
}

free_ports() { # N free ports (CLUSTER_PORT_BASE: BASE..BASE+N-1)
  if [ -n "${CLUSTER_PORT_BASE:-}" ]; then
    seq "$CLUSTER_PORT_BASE" $((CLUSTER_PORT_BASE + $1 - 1)) | tr '\n' ' '
    return
  fi
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("0.0.0.0", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
}

pki() { # a CA, the API server's serving cert, client certs, and the service-account key pair
  local p="$DIR/pki"
  [ -f "$p/.done-r2" ] && return
  rm -rf "$p"
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
  # IP:10.96.0.1 is the `kubernetes` Service's address, GW the API server's on a node's pod bridge.
  cert apiserver "/CN=kube-apiserver" \
    "$(printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth' "$GW")"
  cert admin "/O=system:masters/CN=tradefleet-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kube-proxy "/CN=system:kube-proxy"
  cert coredns "/CN=tradefleet:coredns"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  ssl ecparam -name prime256v1 -genkey -noout -out "$p/sa.key"
  ssl ec -in "$p/sa.key" -pubout -out "$p/sa.pub"
  touch "$p/.done-r2"
}

kubeconfig() { # kubeconfig FILE USER: client-certificate kubeconfig for the API server
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tradefleet
  cluster:
    server: https://$API_HOST:$API_PORT
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

api() { # api METHOD PATH [JSON]: as the admin; prints the body
  local p="$DIR/pki"
  curl -s --max-time 30 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" -X "$1" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "https://$API_HOST:$API_PORT$2"
}

# --- the node ---------------------------------------------------------------------------------

node_unavailable() { # prints why no node can run here for DIR; nothing when one can
  if [ "$(id -u)" != 0 ]; then echo "a node needs root (containerd, the kubelet, a network bridge)"; return; fi
  local b
  for b in containerd runc ctr iptables ip findmnt; do
    command -v "$b" >/dev/null || { echo "$b is not installed (Debian: containerd runc iptables iproute2 util-linux)"; return; }
  done
  for b in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$b" ] || { echo "CNI plugin /usr/lib/cni/$b is missing (Debian: containernetworking-plugins)"; return; }
  done
  local err
  err=$(bash "$ROOT/scripts/docker-engine.sh" 2>&1) || { echo "no Docker engine, where the node's images come from: $err"; return; }
  if [ -f "$NODE_RUN/owner" ]; then
    local other
    other=$(cat "$NODE_RUN/owner")
    if [ "$other" != "$DIR" ] && [ -f "$other/containerd.pid" ] && kill -0 "$(cat "$other/containerd.pid")" 2>/dev/null; then
      echo "this machine's node belongs to the cluster in $other (one node per machine; scripts/cluster.sh down $other)"
      return
    fi
  fi
  if ! ip link show "$BRIDGE" >/dev/null 2>&1 && ip -4 -o addr show | grep -q " $GW/"; then
    echo "$GW (from CLUSTER_POD_CIDR=$POD_CIDR) is already an address of this machine"
  fi
}

node_net() { # the pod bridge, up before the API server binds to its address
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip -4 -o addr show dev "$BRIDGE" | grep -q " $GW/" || ip addr add "$GW/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local r
  for r in "${RULES[@]}"; do
    # shellcheck disable=SC2086
    iptables -C $r 2>/dev/null || iptables -I $r
  done
  # Bridged pod-to-pod traffic must pass iptables for Service NAT replies (Docker sets it too).
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
  touch "$DIR/node.net"
}

node_image() { # the sandbox (pause) image, made from the static pause binary k8s-build.sh built
  if crictl inspecti "$SANDBOX_IMAGE" >/dev/null 2>&1; then return; fi
  local d
  d=$(mktemp -d)
  cp "$BIN/pause" "$d/pause"
  tar --numeric-owner --owner=0 --group=0 -C "$d" -c pause \
    | docker import --change 'ENTRYPOINT ["/pause"]' - "$SANDBOX_IMAGE" >/dev/null
  rm -rf "$d"
  docker save "$SANDBOX_IMAGE" | ctr_ images import - >/dev/null
}

load_images() { # load IMAGE...: docker save | ctr import, skipped when containerd has that image ID
  [ $# -gt 0 ] || { echo "usage: $0 load [DIR] IMAGE..." >&2; exit 2; }
  alive containerd || { echo "cluster.sh load: no node runs for $DIR (scripts/cluster.sh up $DIR --node)" >&2; exit 1; }
  local img id have t0 old replaced=()
  for img in "$@"; do
    id=$(docker image inspect --format '{{.Id}}' "$img" 2>/dev/null) \
      || { echo "cluster.sh load: the Docker engine has no image $img (scripts/images.sh builds ours)" >&2; exit 1; }
    have=$(crictl inspecti -o go-template --template '{{.status.id}}' "$img" 2>/dev/null || true)
    if [ "$have" = "$id" ]; then log "$img already on the node"; continue; fi
    t0=$(date +%s)
    docker save "$img" | ctr_ images import - >/dev/null
    [ -n "$have" ] && replaced+=("$have")
    log "loaded $img into the node in $(($(date +%s) - t0)) s"
  done
  # The images re-loaded tags named before are nobody's now unless another tag names them (the
  # kubelet's image GC is off): drop them, unless a container uses them. Only after every import:
  # the garbage collection a removal starts must not race an import's unpacking of shared layers.
  for old in "${replaced[@]}"; do
    if [ "$(crictl inspecti -o go-template --template '{{len .status.repoTags}}' "$old" 2>/dev/null)" = 0 ]; then
      crictl rmi "$old" >/dev/null 2>&1 || true
    fi
  done
}

node_up() {
  local d="$DIR/node"
  mkdir -p "$d/cni" "$NODE_LIB" "$NODE_RUN"
  # A node whose cluster was killed (not stopped) leaves volume mounts and address leases: no node
  # runs now (node_unavailable said so), so they are nobody's.
  unmount_under "$NODE_LIB/kubelet"
  umount "$NODE_LIB/kubelet" 2>/dev/null || true
  rm -rf --one-file-system "$NODE_LIB/kubelet/pods" "$NODE_RUN/cni-ipam"
  echo "$DIR" >"$NODE_RUN/owner"
  touch "$DIR/node.owned"
  read -r SCHED_PORT KUBELET_PORT KUBELET_HEALTH PROXY_HEALTH PROXY_METRICS DNS_HEALTH DNS_READY < <(free_ports 7)

  # RBAC for what has no built-in role: CoreDNS reads Services, EndpointSlices, namespaces.
  api POST /apis/rbac.authorization.k8s.io/v1/clusterroles '{"metadata":{"name":"tradefleet:coredns"},"rules":[
    {"apiGroups":[""],"resources":["endpoints","services","pods","namespaces"],"verbs":["list","watch"]},
    {"apiGroups":["discovery.k8s.io"],"resources":["endpointslices"],"verbs":["list","watch"]}]}' >/dev/null
  api POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{"metadata":{"name":"tradefleet:coredns"},
    "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"tradefleet:coredns"},
    "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"tradefleet:coredns"}]}' >/dev/null
  for c in scheduler kubelet kube-proxy coredns; do kubeconfig "$DIR/$c.kubeconfig" "$c"; done

  start kube-scheduler --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false --v 1
  wait_for kube-scheduler "https://127.0.0.1:$SCHED_PORT/healthz" -k

  # containerd: restrict_oom_score_adj because these VMs withhold CAP_SYS_RESOURCE (DESIGN.md).
  cat >"$d/cni/10-tradefleet.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "tradefleet", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GW"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$NODE_RUN/cni-ipam"}},
  {"type": "loopback"}]}
EOF
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$NODE_LIB/containerd"
state = "$NODE_RUN/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_LIB/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
EOF
  # containerd starts on an empty root every time: after one run its metadata still named a layer's
  # snapshot that the overlay snapshotter no longer had, and every later import failed ("parent
  # snapshot ... does not exist: not found"). The images come again from the Docker engine (`load`).
  unmount_under "$NODE_LIB/containerd"
  rm -rf --one-file-system "$NODE_LIB/containerd"
  start containerd --config "$d/containerd.toml"
  for _ in $(seq 1 300); do crictl version >/dev/null 2>&1 && break; alive containerd || break; sleep 0.2; done
  crictl version >/dev/null 2>&1 || { log "containerd did not answer"; tail -n 30 "$DIR/containerd.log" >&2; return 1; }
  node_image

  printf 'nameserver %s\nsearch cluster.local\noptions ndots:5\n' "$GW" >"$d/resolv.conf"
  # failCgroupV1/cgroupfs: this kernel's cgroup v1 hierarchy and a PID 1 that is not systemd;
  # oomScoreAdj 0: the kubelet cannot lower its own (no CAP_SYS_RESOURCE); eviction and image GC
  # thresholds low: the disk is shared with everything else on the machine.
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $GW
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTH
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $DIR/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$GW]
resolvConf: $d/resolv.conf
oomScoreAdj: 0
failSwapOn: false
maxPods: 40
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  start kubelet --config "$d/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
    --root-dir "$NODE_LIB/kubelet" --cert-dir "$NODE_LIB/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$GW" --v 1
  wait_for kubelet "http://127.0.0.1:$KUBELET_HEALTH/healthz"

  cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTH
metricsBindAddress: 127.0.0.1:$PROXY_METRICS
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy --config "$d/kube-proxy.yaml" --v 1
  wait_for kube-proxy "http://127.0.0.1:$PROXY_HEALTH/healthz"

  cat >"$d/Corefile" <<EOF
.:53 {
    bind $GW
    errors
    health 127.0.0.1:$DNS_HEALTH
    ready 127.0.0.1:$DNS_READY
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/coredns.kubeconfig tradefleet
        pods insecure
    }
    cache 30
}
EOF
  start coredns -conf "$d/Corefile"
  wait_for coredns "http://127.0.0.1:$DNS_READY/ready"

  # Ready: the kubelet registered the node and reports the runtime and network ready.
  local ready=""
  for _ in $(seq 1 600); do
    ready=$(api GET "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
try:
    node = json.load(sys.stdin)
except ValueError:
    sys.exit()
print(*(c["status"] for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"))' 2>/dev/null || true)
    [ "$ready" = True ] && break
    alive kubelet || break
    sleep 0.2
  done
  if [ "$ready" != True ]; then
    log "node $NODE_NAME did not become Ready; last lines of $DIR/kubelet.log:"
    tail -n 30 "$DIR/kubelet.log" >&2
    return 1
  fi
  echo node >"$DIR/mode"
  log "node $NODE_NAME Ready (pods on $POD_CIDR, DNS at $GW, containerd at $CONTAINERD_SOCK)"
}

healthy() { # the cluster in DIR runs, in the mode asked for, and answers
  local c
  for c in etcd kube-apiserver kube-controller-manager; do alive "$c" || return 1; done
  [ -f "$DIR/kubeconfig" ] && [ -f "$DIR/ports" ] || return 1
  if [ "$WANT_NODE" = 1 ] && [ ! -f "$DIR/node.unavailable" ]; then
    for c in kube-scheduler containerd kubelet kube-proxy coredns; do alive "$c" || return 1; done
  fi
  read -r _ _ API_PORT _ API_HOST <"$DIR/ports"
  for _ in 1 2 3 4 5 6; do # a loaded machine may answer slowly: do not restart a healthy cluster
    if curl -sf -o /dev/null --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" \
      --key "$DIR/pki/admin.key" "https://$API_HOST:$API_PORT/readyz"; then
      return 0
    fi
    sleep 1
  done
  return 1
}

up() {
  if healthy; then
    log "already up: KUBECONFIG=$DIR/kubeconfig"
    return
  fi
  down
  local node=0 why=""
  rm -f "$DIR/node.unavailable"
  if [ "$WANT_NODE" = 1 ]; then
    mkdir -p "$NODE_RUN"
    exec 9>"$NODE_RUN/.lock" # one cluster at a time claims the machine's node
    flock -w 600 9 || true
    why=$(node_unavailable)
    if [ -n "$why" ]; then
      echo "$why" >"$DIR/node.unavailable"
      log "no node: $why"
    else
      node=1
    fi
  fi
  if [ "$node" = 1 ]; then
    bash "$ROOT/scripts/k8s-build.sh" --node >&2
  else
    bash "$ROOT/scripts/k8s-build.sh" >&2
  fi
  pki
  API_HOST=127.0.0.1
  local bind=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  # Without a node the lifecycle controller would taint and evict the tests' hand-made node; with
  # one it lifts the not-ready taint the kubelet registers with.
  local controllers='*,-nodeipam,-nodelifecycle'
  [ "$node" = 1 ] && controllers='*,-nodeipam'
  if [ "$node" = 1 ]; then
    node_net
    API_HOST=$GW # pods reach the API server through the `kubernetes` Service, endpoint GW:port
    bind=(--bind-address "$GW" --advertise-address "$GW"
      --kubelet-client-certificate "$DIR/pki/apiserver-kubelet-client.crt"
      --kubelet-client-key "$DIR/pki/apiserver-kubelet-client.key"
      --kubelet-preferred-address-types InternalIP) # never a lookup of the node's name
  fi
  read -r ETCD_PORT PEER_PORT API_PORT KCM_PORT < <(free_ports 4)
  echo "$ETCD_PORT $PEER_PORT $API_PORT $KCM_PORT $API_HOST" >"$DIR/ports"
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
    "${bind[@]}" --secure-port "$API_PORT" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --authorization-mode Node,RBAC --anonymous-auth=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=false \
    --profiling=false --v 1
  wait_for kube-apiserver "https://$API_HOST:$API_PORT/readyz" \
    --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key"

  kubeconfig "$DIR/kubeconfig" admin
  kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
  start kube-controller-manager --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials --controllers "$controllers" \
    --concurrent-gc-syncs 5 --profiling=false --v 1
  wait_for kube-controller-manager "https://127.0.0.1:$KCM_PORT/healthz" -k
  echo control-plane >"$DIR/mode"
  if [ "$node" = 1 ] && ! node_up; then
    echo "the node did not start: see $DIR/kubelet.log, $DIR/containerd.log" >"$DIR/node.unavailable"
    node_down
    echo control-plane >"$DIR/mode"
  fi
  log "up in $(($(date +%s) - t0)) s: KUBECONFIG=$DIR/kubeconfig (etcd :$ETCD_PORT, apiserver $API_HOST:$API_PORT, $(cat "$DIR/mode"))"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  load) load_images "${args[@]}" ;;
  *) echo "usage: $0 up [DIR] [--node] | down [DIR] | load [DIR] IMAGE..." >&2; exit 2 ;;
esac

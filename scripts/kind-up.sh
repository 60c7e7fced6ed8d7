#!/usr/bin/env bash
# A local tradefleet on kind: cluster, both images built and loaded, the Helm chart (operator,
# CRDs, MongoDB, Redis), `helm test`, then the example paper bot, waited for until Ready.
#
#   make kind-up                      # or: scripts/kind-up.sh
#   KIND_CLUSTER=tf NAMESPACE=trading TAG=dev scripts/kind-up.sh
#
# Needs docker, kind, kubectl and helm on PATH. The bot reads public Binance market data, so the
# cluster needs internet access (HTTPS 443 and websockets 9443). Re-running is safe: the cluster
# is reused and the release upgraded. Tear down with `make kind-down`.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-tradefleet}
NAMESPACE=${NAMESPACE:-tradefleet}
RELEASE=${RELEASE:-tradefleet}
TAG=${TAG:-dev}
BOT=btc-usdt
EXAMPLE=crds/examples/paper-btc-usdt.yaml
WAIT=${WAIT:-15m}

step() { printf '\n==> %s\n' "$*"; }
need() {
  command -v "$1" >/dev/null 2>&1 || { printf 'kind-up: %s is not installed (%s)\n' "$1" "$2" >&2; exit 1; }
}
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"
docker info >/dev/null 2>&1 || { echo "kind-up: the Docker engine is not running" >&2; exit 1; }

step "kind cluster '$CLUSTER'"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "reusing the existing cluster"
else
  kind create cluster --name "$CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

step "native book wheel (scripts/native-wheel.sh, for the bot image)"
if [ "${NATIVE_WHEEL:-build}" = skip ]; then
  echo "NATIVE_WHEEL=skip: the bot image gets whatever dist/native/ holds"
elif command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ]; then
  bash scripts/native-wheel.sh
else
  echo "kind-up: cargo not found: the bot image runs the pure-Python book (see README: the native book)" >&2
fi

step "images tradefleet-bot:$TAG and tradefleet-operator:$TAG"
docker build --file Dockerfile.bot --tag "tradefleet-bot:$TAG" .
docker build --file Dockerfile.operator --tag "tradefleet-operator:$TAG" .
kind load docker-image --name "$CLUSTER" "tradefleet-bot:$TAG" "tradefleet-operator:$TAG"

step "helm upgrade --install $RELEASE (namespace $NAMESPACE)"
helm upgrade --install "$RELEASE" helm/tradefleet \
  --namespace "$NAMESPACE" --create-namespace \
  --set-string "operator.image.tag=$TAG" \
  --set-string "bots.image.tag=$TAG" \
  --wait --timeout 10m

step "helm test: the operator answers on /livez"
helm test "$RELEASE" --namespace "$NAMESPACE" --timeout 3m

step "TradingBot $BOT from $EXAMPLE"
kubectl apply --namespace "$NAMESPACE" -f "$EXAMPLE"
# The operator creates the Deployment within seconds; Ready needs the bot warmed up (200 daily
# candles from Binance), its book in sync and its store reachable.
kubectl wait --namespace "$NAMESPACE" "tradingbot/$BOT" --for=condition=Ready --timeout "$WAIT"

step "done"
kubectl get --namespace "$NAMESPACE" tradingbots
cat <<MSG

Next:
  kubectl -n $NAMESPACE get pods
  kubectl -n $NAMESPACE port-forward deploy/bot-$BOT 8080:8080 &
  curl -s localhost:8080/status
  make kind-down      # delete the cluster
MSG

#!/usr/bin/env bash
# Prove the images' recipe without a Docker engine: repeat what Dockerfile.bot/.operator do in a
# clean virtualenv and start what their ENTRYPOINT/CMD start.
#
#  1. Build a context holding only what the Dockerfile COPYs (read from its COPY lines), so a file
#     the image needs but does not copy fails here as it would in `docker build`.
#  2. Same install commands: the lock with --require-hashes --only-binary=:all: --no-deps, then the
#     project with --no-deps; `pip check` proves the lock is complete (nothing missing or clashing).
#  3. From a directory outside the source tree: `tradefleet --help`, `bot --help`, `operator --help`,
#     `sim --help`, `bot --check-config`, then a bot against the simulator until its /livez and
#     /readyz answer 200, probed with the Dockerfile's own HEALTHCHECK command; then the operator
#     (no API server reachable) until its Dockerfile's HEALTHCHECK passes.
#
# Usage: scripts/image-smoke.sh [--keep]     (PYTHON=python3.11 by default; needs 3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
KEEP=${1:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tradefleet-image-smoke.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" != "--keep" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
step() { printf '== %s\n' "$*"; }
die() { printf 'image-smoke: FAIL: %s\n' "$*" >&2; exit 1; }

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || die "$PYTHON is not Python 3.11 (the images' python:3.11-slim); set PYTHON="

# 1. The build context, from the build stage's COPY lines (not COPY --from).
step "context from Dockerfile COPY lines"
CTX=$WORK/src
mkdir -p "$CTX"
for dockerfile in Dockerfile.bot Dockerfile.operator; do
  while read -r -a words; do
    srcs=("${words[@]:1:${#words[@]}-2}")
    for src in "${srcs[@]}"; do
      [ -e "$src" ] || die "$dockerfile copies $src, which does not exist"
      mkdir -p "$CTX/$(dirname "$src")"
      cp -R "$src" "$CTX/$(dirname "$src")/"
    done
  done < <(grep -E '^COPY ' "$dockerfile" | grep -v -- '--from=')
done
# What .dockerignore keeps out must not reach the image either.
find "$CTX" \( -name __pycache__ -o -name '*.pyc' -o -name '*.sqlite' \) -prune -exec rm -rf {} +

# 2. The install steps, as in the build stage.
step "install the lock, then the project (as the Dockerfile's build stage)"
VENV=$WORK/opt/tradefleet
"$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
(
  cd "$CTX"
  "$VENV/bin/pip" install --quiet --require-hashes --only-binary=:all: --no-deps -r requirements.lock
  "$VENV/bin/pip" install --quiet --no-deps .
)
"$VENV/bin/python" -m compileall -q "$VENV" >/dev/null
"$VENV/bin/pip" check || die "the lock does not satisfy the project's dependencies"

# 3. The entrypoints, from the image's WORKDIR stand-in (not the source tree).
DATA=$WORK/data
mkdir -p "$DATA"
cd "$DATA"
export PATH=$VENV/bin:$PATH
step "entrypoints"
tradefleet --help >/dev/null
tradefleet bot --help >/dev/null
tradefleet operator --help >/dev/null
tradefleet sim --help >/dev/null
python -c 'import tradefleet, tradefleet_sim, tradingbot_operator, sys
for m in (tradefleet, tradefleet_sim, tradingbot_operator):
    assert "/opt/tradefleet/" in m.__file__, m.__file__  # the installed copy, not the source tree
' || die "packages are not imported from the installed venv"
# Unknown keys must stop the bot before it starts.
if TRADEFLEET_NOT_A_KEY=1 tradefleet bot --check-config >/dev/null 2>&1; then
  die "the bot accepted an unknown TRADEFLEET_* variable"
fi
tradefleet bot --check-config >/dev/null

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SIM_PORT=$(free_port)
BOT_PORT=$(free_port)
step "bot against the simulator (sim :$SIM_PORT, bot :$BOT_PORT)"
tradefleet sim --host 127.0.0.1 --port "$SIM_PORT" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
# The same environment the chart/compose give a bot, pointed at the simulator.
TRADEFLEET_REST_URL=http://127.0.0.1:$SIM_PORT \
TRADEFLEET_WS_URL=ws://127.0.0.1:$SIM_PORT \
TRADEFLEET_STORE_URL=sqlite:///$DATA/tradefleet.sqlite \
TRADEFLEET_HTTP_HOST=127.0.0.1 \
  tradefleet bot --http-port "$BOT_PORT" >"$WORK/bot.log" 2>&1 &
PIDS+=($!)

# A Dockerfile's HEALTHCHECK command (the Python snippet), so the probe tested is the shipped one.
healthcheck() {
  python - "$1" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
print(json.loads(match.group(1))[2])
PY
}
HEALTH=$(healthcheck "$ROOT/Dockerfile.bot")
HEALTH=${HEALTH//127.0.0.1:8080/127.0.0.1:$BOT_PORT}
deadline=$((SECONDS + ${SMOKE_TIMEOUT:-60}))
until python -c "$HEALTH" 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    tail -20 "$WORK/bot.log" >&2
    die "the bot's HEALTHCHECK (/livez) did not pass within ${SMOKE_TIMEOUT:-60}s"
  fi
  kill -0 "${PIDS[1]}" 2>/dev/null || { tail -20 "$WORK/bot.log" >&2; die "the bot exited"; }
  sleep 0.5
done
until python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$BOT_PORT/readyz', timeout=4).status == 200 else 1)" 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    python -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$BOT_PORT/status').read().decode())" >&2 || true
    die "the bot never became ready (/readyz) within ${SMOKE_TIMEOUT:-60}s"
  fi
  sleep 0.5
done
# The operator image's entrypoint: it must start and answer its HEALTHCHECK even before the API
# server answers (here: none, a kubeconfig pointing at a closed port).
OP_PORT=$(free_port)
step "operator entrypoint (:$OP_PORT, no API server)"
cat >"$WORK/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
users: [{name: none, user: {token: none}}]
KC
KUBECONFIG=$WORK/kubeconfig tradefleet operator --namespace default --http-port "$OP_PORT" >"$WORK/operator.log" 2>&1 &
PIDS+=($!)
OP_HEALTH=$(healthcheck "$ROOT/Dockerfile.operator")
OP_HEALTH=${OP_HEALTH//127.0.0.1:8080/127.0.0.1:$OP_PORT}
deadline=$((SECONDS + ${SMOKE_TIMEOUT:-60}))
until python -c "$OP_HEALTH" 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    tail -20 "$WORK/operator.log" >&2
    die "the operator's HEALTHCHECK (/livez) did not pass"
  fi
  kill -0 "${PIDS[2]}" 2>/dev/null || { tail -20 "$WORK/operator.log" >&2; die "the operator exited"; }
  sleep 0.5
done
step "ok: images' install steps work and both entrypoints start"

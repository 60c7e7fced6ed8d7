#!/usr/bin/env bash
# A virtualenv made as Dockerfile.bot makes the image's, to measure a bot's memory without building an
# image (README "Memory"): requirements/bot.lock only (no aiodns or test tools, which the dev .venv's
# aiohttp would pick up), the project and the native book's wheel installed without pycs, then opt-2
# pycs compiled with PYTHONNODEBUGRANGES=1. What it cannot copy is the image's base: this machine's
# Python 3.11 and OpenSSL, not python:3.11-slim's.
#
#   scripts/bot-venv.sh [DIR]     (default /tmp/tradefleet-bot-venv; recreated) prints DIR/bin/python
#
# Then run the bots with the image's environment, the stdlib's opt-2 pycs cached outside the install
# (the image compiles them at build; here the first run writes them: measure from the second run on):
#   env="--bot-env PYTHONOPTIMIZE=2 --bot-env PYTHONNODEBUGRANGES=1 --bot-env SSL_CERT_FILE=/nonexistent/ca-bundle
#        --bot-env PYTHONPYCACHEPREFIX=/tmp/tradefleet-bot-pycache"
#   .venv/bin/python -m bench.footprint --quick --bot-python DIR/bin/python $env --bot-env PYTHONDONTWRITEBYTECODE=
#   .venv/bin/python -m bench.footprint --bots 4 --quick --bot-python DIR/bin/python $env
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/tradefleet-bot-venv}
[ -x .venv/bin/pip ] || { echo "bot-venv: run \`make install\` first (its pip installs into DIR)" >&2; exit 1; }
rm -rf "$DIR"
python3.11 -m venv --without-pip "$DIR"
pip=(.venv/bin/pip --python "$DIR/bin/python" install --quiet --no-compile --no-deps)
"${pip[@]}" --require-hashes --only-binary=:all: -r requirements/bot.lock
"${pip[@]}" .
wheel=$(bash scripts/native-wheel.sh | tail -1)
"${pip[@]}" --no-index "$wheel"
PYTHONNODEBUGRANGES=1 "$DIR/bin/python" -m compileall -q -o 2 "$DIR" >/dev/null
echo "$DIR/bin/python"

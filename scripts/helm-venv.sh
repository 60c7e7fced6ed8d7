#!/usr/bin/env bash
# Create .venv-helm/: a Python >= 3.12 virtualenv with helm-sdkpy (real Helm v4 library), kmock
# and the compose-spec JSON schema, for the deploy tests (tests/deploy/). The project itself runs
# on 3.11; helm-sdkpy needs 3.12+, hence a second venv driven through a subprocess.
#
# Finds the interpreter in this order: $PYTHON312, python3.12/python3.13 on PATH, pyenv's
# installed versions. There is no offline way to get one on Debian bookworm (no python3.12 package;
# uv and pyenv download from hosts CI cannot reach), so without one this fails loudly and says how.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HELM_VENV:-.venv-helm}
STAMP="$VENV/.installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt requirements/deploy-tools.txt ] && [ "$STAMP" -nt "$0" ]; then
  exit 0
fi

ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

candidates=()
[ -n "${PYTHON312:-}" ] && candidates+=("$PYTHON312")
for name in python3.12 python3.13; do
  if command -v "$name" >/dev/null 2>&1; then candidates+=("$(command -v "$name")"); fi
done
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
if command -v pyenv >/dev/null 2>&1; then pyenv_root=$(pyenv root); fi
for dir in "$pyenv_root"/versions/3.12* "$pyenv_root"/versions/3.13*; do
  if [ -x "$dir/bin/python3" ]; then candidates+=("$dir/bin/python3"); fi
done

python=""
for candidate in "${candidates[@]}"; do
  if ok "$candidate"; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  cat >&2 <<'MSG'
helm-venv: no Python >= 3.12 found (tried $PYTHON312, python3.12/3.13 on PATH, pyenv versions).
The Helm chart tests need one for helm-sdkpy. Install one, then re-run `make test`:
  pyenv install 3.12        (needs python.org), or
  a distribution with python3.12 (Debian trixie, Ubuntu 24.04: apt-get install python3.12-venv), or
  point PYTHON312=/path/to/python3.12 at an existing build.
MSG
  exit 1
fi

echo "helm-venv: using $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements/deploy-tools.txt
# docker-compose 1.29.2 ships the compose-spec JSON schema (compose/config/compose_spec.json);
# only that file is used, so none of its dependencies are installed.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps docker-compose==1.29.2
touch "$STAMP"

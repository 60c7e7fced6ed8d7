#!/usr/bin/env bash
# Regenerate requirements.lock (runtime deps of pyproject.toml, pinned with hashes) with uv.
# uv comes from PyPI into a throwaway venv; the lock targets the images' Python (3.11, manylinux).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check uv
{
  echo "# Runtime dependencies of tradefleet, pinned with hashes, for the container images (Dockerfile.bot,"
  echo "# Dockerfile.operator) and scripts/image-smoke.sh. Generated from pyproject.toml by scripts/lock.sh;"
  echo "# do not edit by hand. Resolved for Python 3.11 on manylinux (hashes of every published file)."
  "$tmp/venv/bin/uv" pip compile pyproject.toml --quiet --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header --annotation-style line \
    --output-file -
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) packages"

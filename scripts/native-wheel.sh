#!/usr/bin/env bash
# Build the native book's wheel (native/, Rust through PyO3) into dist/native/, where Dockerfile.bot
# picks it up: the base images have no Rust toolchain (Debian bookworm's rustc is older than PyO3
# needs) and no registry is reachable, so the wheel is built here, on the host, and installed in the
# image's build stage. One abi3 wheel serves every CPython >= 3.11 on glibc >= the host's.
#
#   scripts/native-wheel.sh          prints the wheel's path as its last line
#
# Needs cargo (rustup's ~/.cargo/bin is searched too) and maturin (the .venv's, from `make install`,
# or one on PATH). Rust build outputs stay in CARGO_TARGET_DIR (default
# /var/cache/tradefleet/native-target, shared with `make install`), so a rebuild with no Rust change
# takes seconds. The wheel is rebuilt every time: an image never carries a stale one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$HOME/.cargo/bin"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/tradefleet/native-target}
OUT=dist/native

command -v cargo >/dev/null || {
  echo "native-wheel: cargo not found: install Rust (https://rustup.rs) to build tradefleet_native" >&2
  exit 1
}
MATURIN=${MATURIN:-}
if [ -z "$MATURIN" ]; then
  if [ -x .venv/bin/maturin ]; then MATURIN=.venv/bin/maturin; else MATURIN=$(command -v maturin || true); fi
fi
[ -n "$MATURIN" ] || {
  echo "native-wheel: maturin not found: run \`make install\` (it installs maturin into .venv) or pip install maturin" >&2
  exit 1
}
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3); fi
fi

mkdir -p "$CARGO_TARGET_DIR"
rm -rf "$OUT"
# manylinux_2_36: the glibc of Debian bookworm, which the images' python:3.11-slim-bookworm runs on.
nice "$MATURIN" build --release --strip --quiet --manifest-path native/Cargo.toml --interpreter "$PYTHON" \
  --compatibility manylinux_2_36 --out "$OUT" >&2
wheel=$(ls "$OUT"/tradefleet_native-*.whl)
echo "$wheel"

#!/usr/bin/env bash
# Build, on this machine and without any container registry, every image the project's tests run:
# the base images made from Debian's packages (cached, rebuilt only when their recipe changes) and
# the two product images from Dockerfile.bot and Dockerfile.operator exactly as a user builds them.
#
#   scripts/images.sh [all|base|product]     default: all
#   BUILDER=classic|buildkit                 default: classic (DOCKER_BUILDKIT=0)
#   TAG=dev                                  product tags: tradefleet-bot:$TAG, tradefleet-operator:$TAG
#
# Base images (tags as the product's Dockerfiles and compose file name them):
#   debian:bookworm-slim             debootstrap --variant=minbase bookworm, slimmed like the official
#   python:3.11-slim-bookworm (+ python:3.11-slim)   Debian's python3 + the machine's local CAs
# and, before the bot image, the native book's wheel (scripts/native-wheel.sh: needs cargo).
#   redis:7.2, prom/prometheus:v2.55.1               Debian's redis-server and prometheus
#   tradefleet-test/ferretdb:1      tests only: the compose test's `mongodb` (FerretDB over SQLite)
# Idempotent: run it as often as you like; it starts the engine (scripts/docker-engine.sh) first.
# Prints one "images: <what> <seconds>s" line per step, so CI logs show what was built and how long.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
TAG=${TAG:-dev}
BUILDER=${BUILDER:-classic}
CACHE=/var/cache/tradefleet/images
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"
bash scripts/docker-engine.sh
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
export DOCKER

timed() {  # timed LABEL CMD...: run CMD, print how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  printf 'images: %s %ss\n' "$label" $((SECONDS - start))
}
label_of() { "$DOCKER" image inspect --format "{{ index .Config.Labels \"tradefleet.recipe\" }}" "$1" 2>/dev/null || true; }

# One builder at a time on this machine: a second caller waits, then finds everything cached.
exec 8>"$CACHE/build.lock"
flock -w 1800 8

debian_base() {
  local tar=$CACHE/bookworm-minbase-v1.tar
  if "$DOCKER" image inspect debian:bookworm-slim >/dev/null 2>&1 && [ -f "$tar" ]; then return; fi
  if [ ! -f "$tar" ]; then
    local rootfs
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
    # Slim like the official image: no docs, man pages, locales or apt lists, and keep it so.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
Acquire::GzipIndexes "true";
CFG
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
      "$MIRROR" "$MIRROR" >"$rootfs/etc/apt/sources.list"
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/{man,info,locale,groff,lintian}/* "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$rootfs"
  fi
  "$DOCKER" import --change 'CMD ["bash"]' "$tar" debian:bookworm-slim >/dev/null
}

# stand_in TAG DOCKERFILE [EXTRA_TAG [FILE]]: build FROM debian:bookworm-slim unless the recipe
# (Dockerfile, local CAs, FILE put in the context, base image) is unchanged.
stand_in() {
  local tag=$1 dockerfile=$2 extra=${3:-} file=${4:-} ctx recipe
  ctx=$(mktemp -d)
  mkdir -p "$ctx/ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  cp "$dockerfile" "$ctx/Dockerfile"
  [ -z "$file" ] || cp "$file" "$ctx/"
  recipe=$(cat "$ctx/Dockerfile" "$ctx"/ca/* ${file:+"$file"} 2>/dev/null | sha256sum | cut -c1-16)-$("$DOCKER" image inspect --format '{{.Id}}' debian:bookworm-slim | cut -c8-19)
  if [ "$(label_of "$tag")" != "$recipe" ]; then
    DOCKER_BUILDKIT=0 "$DOCKER" build -q --network host --label "tradefleet.recipe=$recipe" -t "$tag" "$ctx" >/dev/null \
      || { rm -rf "$ctx"; echo "images: building $tag failed" >&2; exit 1; }
  fi
  [ -z "$extra" ] || "$DOCKER" tag "$tag" "$extra"
  rm -rf "$ctx"
}

# The compose test's `mongodb` stand-in: FerretDB (scripts/ferretdb.sh builds it from the Go module
# proxy) in a tiny image. Without that binary the compose test says so and runs without it.
ferretdb() {
  local bin=${FERRETDB_BIN:-/var/cache/tradefleet/ferretdb/bin/ferretdb}
  if [ ! -x "$bin" ] && [ -f scripts/ferretdb.sh ]; then bin=$(bash scripts/ferretdb.sh | tail -1); fi
  if [ ! -x "$bin" ]; then echo "images: no FerretDB binary ($bin): skipping tradefleet-test/ferretdb" >&2; return 0; fi
  stand_in tradefleet-test/ferretdb:1 tests/images/ferretdb.Dockerfile "" "$bin"
}

# The native book's wheel (scripts/native-wheel.sh) into dist/native/, where Dockerfile.bot installs
# it from: the bot image carries the native path. Rebuilt every time (seconds when Rust is unchanged).
native_wheel() {
  bash scripts/native-wheel.sh >"$CACHE/native-wheel.log" 2>&1 \
    || { tail -20 "$CACHE/native-wheel.log" >&2; echo "images: building the native wheel failed (needs cargo)" >&2; exit 1; }
}

product() {  # product NAME: tradefleet-NAME:$TAG from Dockerfile.NAME, with the chosen builder
  local name=$1 buildkit=0
  [ "$BUILDER" = buildkit ] && buildkit=1
  DOCKER_BUILDKIT=$buildkit "$DOCKER" build --network host -f "Dockerfile.$name" -t "tradefleet-$name:$TAG" "$ROOT" \
    >"$CACHE/build-$name-$BUILDER.log" 2>&1 \
    || { tail -30 "$CACHE/build-$name-$BUILDER.log" >&2; echo "images: building Dockerfile.$name ($BUILDER) failed" >&2; exit 1; }
}

if [ "$WHAT" = all ] || [ "$WHAT" = base ]; then
  timed "base debian:bookworm-slim" debian_base
  timed "base python:3.11-slim-bookworm" stand_in python:3.11-slim-bookworm scripts/base-images/python.Dockerfile python:3.11-slim
  timed "base redis:7.2" stand_in redis:7.2 scripts/base-images/redis.Dockerfile
  timed "base prom/prometheus:v2.55.1" stand_in prom/prometheus:v2.55.1 scripts/base-images/prometheus.Dockerfile
  timed "test tradefleet-test/ferretdb:1" ferretdb
fi
if [ "$WHAT" = all ] || [ "$WHAT" = product ]; then
  timed "native wheel dist/native/" native_wheel
  timed "tradefleet-bot:$TAG ($BUILDER)" product bot
  timed "tradefleet-operator:$TAG ($BUILDER)" product operator
fi

#!/usr/bin/env bash
# Make sure one Docker engine runs on this machine, and print nothing but errors.
#
# Idempotent and safe to call from several shells at once (tests, scripts/images.sh, the cluster
# scripts): a flock serialises the check-install-start; an engine that already answers is left alone.
# Installs Debian's docker.io when dockerd is missing (as root, through apt). The daemon's log goes to
# /var/cache/tradefleet/docker/dockerd.log; its data root is Docker's default (/var/lib/docker), so
# base images and build layers are reused by every later run on this machine.
#
# Exit status: 0 = an engine answers on /var/run/docker.sock; 1 = none could be started (the reason
# is on stderr; tests turn that into a loud skip).
set -euo pipefail
STATE=/var/cache/tradefleet/docker
mkdir -p "$STATE"
# Debian's client matches Debian's engine (its built-in BuildKit needs no buildx plugin).
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker || echo docker)}

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

exec 9>"$STATE/engine.lock"
flock -w 300 9 || { echo "docker-engine: could not take $STATE/engine.lock" >&2; exit 1; }
answers && exit 0

if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "docker-engine: dockerd is not installed and this is not root (apt-get install docker.io)" >&2
    exit 1
  fi
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends docker.io >/dev/null \
    || { echo "docker-engine: apt-get install docker.io failed" >&2; exit 1; }
  DOCKER=/usr/bin/docker
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-engine: no engine answers and starting dockerd needs root" >&2
  exit 1
fi
# setsid: the daemon must outlive the test session or shell that started it.
setsid dockerd --host unix:///var/run/docker.sock >>"$STATE/dockerd.log" 2>&1 </dev/null 9>&- 8>&- &
for _ in $(seq 1 120); do
  answers && exit 0
  sleep 0.5
done
echo "docker-engine: dockerd did not answer within 60 s; last lines of $STATE/dockerd.log:" >&2
tail -20 "$STATE/dockerd.log" >&2
exit 1

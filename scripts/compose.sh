#!/usr/bin/env bash
# Make Docker Compose v2 available without a container registry or a newer Debian: Debian bookworm's
# docker-compose (1.29) rejects our file (top-level `name:`), trixie's package carries compose v2.
# Its .deb is fetched with apt pointed at a private trixie source list (nothing from trixie is
# installed: `dpkg -x` unpacks it) into /var/cache/tradefleet/compose/, and the plugin binary is put
# in a DOCKER_CONFIG directory there, so `DOCKER_CONFIG=… docker compose` and the standalone binary
# both work. Idempotent; prints the binary's path on its last line.
set -euo pipefail
C=/var/cache/tradefleet/compose
BIN=$C/docker-config/cli-plugins/docker-compose
if [ -x "$BIN" ] && "$BIN" version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
mkdir -p "$C/apt/lists/partial" "$C/apt/archives/partial" "$C/debs" "$(dirname "$BIN")"
exec 9>"$C/install.lock"
flock -w 600 9
if [ -x "$BIN" ] && "$BIN" version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
echo "deb http://deb.debian.org/debian trixie main" >"$C/apt/sources.list"
APT=(-o Dir::Etc::SourceList="$C/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$C/apt/lists" -o Dir::Cache::Archives="$C/apt/archives" -o Debug::NoLocking=1)
apt-get "${APT[@]}" update -qq >&2
(cd "$C/debs" && apt-get "${APT[@]}" download docker-compose >&2)
deb=$(find "$C/debs" -name 'docker-compose_*.deb' -printf '%T@ %p\n' | sort -rn | head -1 | cut -d' ' -f2-)
rm -rf "$C/root" && dpkg -x "$deb" "$C/root"
found=$(find "$C/root" -type f -name docker-compose -perm -u+x | head -1)
[ -n "$found" ] || { echo "compose.sh: no docker-compose binary in $deb" >&2; exit 1; }
install -m 0755 "$found" "$BIN"
"$BIN" version >&2
echo "$BIN"

#!/usr/bin/env bash
# Delete the kind cluster made by scripts/kind-up.sh (and everything in it, volumes included).
set -euo pipefail
CLUSTER=${KIND_CLUSTER:-tradefleet}
command -v kind >/dev/null 2>&1 || { echo "kind-down: kind is not installed" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER"
else
  echo "kind-down: no cluster named '$CLUSTER'"
fi

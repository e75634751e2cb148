#!/usr/bin/env bash
# `make dev-down`: deletes the kind cluster `make dev` made (images and build caches stay).
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER="${CLUSTER:-paddock}"
export PATH="/usr/bin:$PATH"
eval "$(kind/tools.sh)"
"$PADDOCK_KIND" delete cluster --name "$CLUSTER"

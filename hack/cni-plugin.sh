#!/usr/bin/env bash
# Builds paddock's chained CNI plugin (cni/: paddock-egress, the sandbox Pods' egress redirect in
# CNI mode) from Go modules into $PADDOCK_CACHE/bin/paddock-egress-<hash of cni/> (default
# ~/.cache/paddock), once per source change, and prints the binary's path. Static (CGO off): it
# runs on the node, outside any image.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0

log() { echo "cni-plugin: $*" >&2; }

hash=$(cd "$REPO/cni" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) \
  -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
out="$PADDOCK_CACHE/bin/paddock-egress-$hash"
if [ ! -x "$out" ]; then
  take_lock "$PADDOCK_CACHE/bin/paddock-egress.lock" "another cni-plugin build"
  if [ ! -x "$out" ]; then
    log "building paddock-egress ($hash)"
    (cd "$REPO/cni" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/paddock-egress-$hash" .)
    publish "$out.tmp" "$PADDOCK_CACHE/bin"
  fi
fi
echo "$out"

#!/usr/bin/env bash
# Builds paddock's chained CNI plugin (cni/: paddock-egress, the sandbox Pods' egress redirect in
# CNI mode) from Go modules into $PADDOCK_CACHE/bin/paddock-egress-<hash of cni/> (default
# ~/.cache/paddock), once per source change, and prints the binary's path. Static (CGO off): it
# runs on the node, outside any image.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${PADDOCK_CACHE:-$HOME/.cache/paddock}"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0

hash=$(cd "$REPO/cni" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) \
  -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
out="$CACHE/bin/paddock-egress-$hash"
if [ ! -x "$out" ]; then
  echo "cni-plugin: building paddock-egress ($hash)" >&2
  mkdir -p "$CACHE/bin"
  (cd "$REPO/cni" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
fi
echo "$out"

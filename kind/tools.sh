#!/usr/bin/env bash
# Builds the Go tools the kind cluster needs besides Kubernetes itself, once per machine (cached in
# $PADDOCK_CACHE/bin, default ~/.cache/paddock): kind, CoreDNS (the version kubeadm $KUBE_VERSION
# deploys) and the local-path-provisioner (kind's default StorageClass). Prints `export` lines.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"

KIND_VERSION="${KIND_VERSION:-v0.31.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
LOCAL_PATH_PROVISIONER_VERSION="${LOCAL_PATH_PROVISIONER_VERSION:-v0.0.30}"
BIN="$PADDOCK_CACHE/bin"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

install() {  # name, version, package
  local out="$BIN/$1-$2"
  if [ ! -x "$out/$1" ]; then
    echo "kind-tools: building $1 $2" >&2
    GOBIN="$out.tmp" go install -trimpath -ldflags "-s -w" "$3@$2"
    publish "$out.tmp" "$out"
  fi
  echo "$out/$1"
}

kind=$(install kind "$KIND_VERSION" sigs.k8s.io/kind)
coredns=$(install coredns "$COREDNS_VERSION" github.com/coredns/coredns)
lpp=$(install local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" \
  github.com/rancher/local-path-provisioner)
kind_dir=$(go_module_dir "sigs.k8s.io/kind@$KIND_VERSION")

echo "export PADDOCK_KIND=$kind"
echo "export PADDOCK_COREDNS=$coredns"
echo "export PADDOCK_LOCAL_PATH_PROVISIONER=$lpp"
echo "export KIND_VERSION=$KIND_VERSION"
echo "export KIND_MODULE_DIR=$kind_dir"
echo "export LOCAL_PATH_PROVISIONER_VERSION=$LOCAL_PATH_PROVISIONER_VERSION"

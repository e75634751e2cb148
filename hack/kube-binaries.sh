#!/usr/bin/env bash
# Builds the Kubernetes binaries paddock's tests and users need from Go modules, with no container
# registry and no prebuilt downloads: etcd, kube-apiserver and kube-controller-manager (the tier-3
# API server fixture), kubectl, helm, and kube-scheduler, kubelet, kube-proxy and kubeadm (the kind
# node image, kind/build-node-image.sh).
#
# Binaries land in $PADDOCK_CACHE/bin/<name>-<version> (default ~/.cache/paddock) and are built
# once per machine; a second run only prints the paths. Prints `export` lines for the env vars the
# test fixture reads, so `eval "$(hack/kube-binaries.sh)"` wires them up.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
BIN="$PADDOCK_CACHE/bin"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { echo "kube-binaries: $*" >&2; }

kube_out="$BIN/kube-$KUBE_VERSION"
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)
etcd_out="$BIN/etcd-$ETCD_VERSION"
helm_out="$BIN/helm-$HELM_VERSION"

build_kube() {
  local work="$PADDOCK_CACHE/src/kube-$KUBE_VERSION"
  mkdir -p "$work" "$kube_out"
  log "fetching k8s.io/kubernetes@$KUBE_VERSION"
  local kdir
  kdir=$(go_module_dir "k8s.io/kubernetes@$KUBE_VERSION")
  local staging="v0${KUBE_VERSION#v1}"  # v1.34.4 -> v0.34.4
  {
    echo "module paddock.dev/kube-build"
    echo
    grep -E '^(go|godebug) ' "$kdir/go.mod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    # kubernetes' go.mod points each staging module at a local path; point it at the release.
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$kdir/go.mod"
    echo ")"
  } >"$work/go.mod"
  local date minor
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date -X $pkg.gitCommit=paddock-build"
  done
  local pkgs=()
  for b in "${KUBE_BINARIES[@]}"; do
    [ -x "$kube_out/$b" ] || pkgs+=("k8s.io/kubernetes/cmd/$b")
  done
  log "building ${pkgs[*]##*/} $KUBE_VERSION (cold: ~10-25 min on 2 cores)"
  (cd "$work" && go build -mod=mod -trimpath -ldflags "$ld" -o "$kube_out.tmp/" "${pkgs[@]}")
  publish "$kube_out.tmp" "$kube_out"
}

build_etcd() {
  local work="$PADDOCK_CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$work" "$etcd_out"
  # etcd's own main module replaces its submodules with local paths; wrap etcdmain instead.
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  local godir
  godir=$(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')
  printf 'module paddock.dev/etcd-build\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$godir" "$ETCD_VERSION" >"$work/go.mod"
  log "building etcd $ETCD_VERSION"
  (cd "$work" && go mod tidy >/dev/null && go build -trimpath -ldflags "-s -w" -o "$etcd_out.tmp/etcd" .)
  publish "$etcd_out.tmp" "$etcd_out"
}

build_helm() {
  mkdir -p "$helm_out"
  log "building helm $HELM_VERSION"
  # Without the Kubernetes version, `helm template` assumes v1.20 and refuses the chart.
  local minor ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld="$ld -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$helm_out.tmp" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  publish "$helm_out.tmp" "$helm_out"
}

built() {
  [ -x "$etcd_out/etcd" ] && [ -x "$helm_out/helm" ] || return 1
  for b in "${KUBE_BINARIES[@]}"; do
    [ -x "$kube_out/$b" ] || return 1
  done
}

# One build at a time per machine (make dev beside make test would write the same .tmp
# directories): a second caller waits, then finds what the first one built.
built || take_lock "$BIN/kube-binaries.lock" "another hack/kube-binaries.sh"
[ -x "$etcd_out/etcd" ] || build_etcd
[ -x "$helm_out/helm" ] || build_helm
for b in "${KUBE_BINARIES[@]}"; do
  [ -x "$kube_out/$b" ] || { build_kube; break; }
done
kube_module_dir=$(go_module_dir "k8s.io/kubernetes@$KUBE_VERSION")

echo "export PADDOCK_ETCD=$etcd_out/etcd"
echo "export PADDOCK_KUBE_APISERVER=$kube_out/kube-apiserver"
echo "export PADDOCK_KUBE_CONTROLLER_MANAGER=$kube_out/kube-controller-manager"
echo "export PADDOCK_KUBECTL=$kube_out/kubectl"
echo "export PADDOCK_KUBE_BIN=$kube_out"
echo "export KUBE_VERSION=$KUBE_VERSION"
echo "export KUBE_MODULE_DIR=$kube_module_dir"
echo "export PADDOCK_HELM=$helm_out/helm"

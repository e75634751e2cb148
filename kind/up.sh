#!/usr/bin/env bash
# `make dev`: everything from a fresh machine to a Ready example Agent on a local kind cluster.
# Builds what is missing (Kubernetes and kind from Go modules, the node image, paddock's images;
# all cached in ~/.cache/paddock and docker), creates the cluster "paddock" (or reuses it when its
# node image is current), loads the images, installs the chart, fills the models volume with a
# tiny generated GGUF model, applies examples/llamacpp-agent.yaml and waits for it to be Ready.
# Idempotent: run it again after a change to rebuild and roll what changed.
#
#   CLUSTER=paddock  NAMESPACE=default  RELEASE=paddock  SYSTEM_NAMESPACE=paddock-system
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

CLUSTER="${CLUSTER:-paddock}"
NAMESPACE="${NAMESPACE:-default}"
RELEASE="${RELEASE:-paddock}"
SYSTEM_NAMESPACE="${SYSTEM_NAMESPACE:-paddock-system}"
EXAMPLE="${EXAMPLE:-1}"
export PATH="/usr/bin:$PATH"  # Debian's docker client, which kind drives
log() { printf '\033[1mdev:\033[0m %s\n' "$*" >&2; }

# One at a time per cluster (make dev while the tests run): two would race on kind and helm.
take_lock "$PADDOCK_CACHE/kind-up-$CLUSTER.lock" "another kind/up.sh on cluster $CLUSTER"

hack/docker.sh 9>&-  # it may start dockerd, which must not hold the lock
eval "$(hack/kube-binaries.sh)"
eval "$(kind/tools.sh)"
kind() { "$PADDOCK_KIND" "$@"; }
kubectl() { "$PADDOCK_KUBECTL" --context "kind-$CLUSTER" "$@"; }
helm() { "$PADDOCK_HELM" --kube-context "kind-$CLUSTER" "$@"; }

log "node image"
node_image=$(kind/build-node-image.sh)
log "paddock's images"
make --no-print-directory images >&2
version=$(chart_app_version charts/paddock/Chart.yaml)
images=()
for name in operator gateway vault harness cni llama-server redis; do
  images+=("paddock/$name:$version")
done

# The cluster is current when it runs this node image with this kind/cluster.yaml.
want="$node_image $(sha256sum kind/cluster.yaml | cut -c1-12)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  have=$(kubectl -n kube-system get configmap paddock-dev -o jsonpath='{.data.cluster}' 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    log "cluster $CLUSTER is ${have:-of unknown make}, not $want: recreating it"
    kind delete cluster --name "$CLUSTER"
  fi
fi
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --image "$node_image" --config kind/cluster.yaml --wait 5m
  kubectl -n kube-system create configmap paddock-dev --from-literal=cluster="$want" >/dev/null
fi

log "loading images into the cluster"
loaded=$(kind load docker-image --name "$CLUSTER" "${images[@]}" 2>&1) || { echo "$loaded" >&2; exit 1; }

log "installing the chart (release $RELEASE in $SYSTEM_NAMESPACE)"
# Helm installs crds/ once and never upgrades them: without this, a field added to the Agent since
# the cluster was made would be pruned by the API server from every write (status.wakeTime was).
kubectl apply --server-side --force-conflicts -f charts/paddock/crds >/dev/null
# --reset-then-reuse-values: the chart's new defaults, with the values set on the release since
# (the credentials tests set sandboxInternalNetworks and sandboxUpstreamCABundle) kept.
helm upgrade --install "$RELEASE" charts/paddock --namespace "$SYSTEM_NAMESPACE" \
  --create-namespace --reset-then-reuse-values --values kind/values-dev.yaml --wait --timeout 5m >/dev/null
# The chart deploys the CNI installer exactly when sandboxes are in CNI mode (the default).
mode=init-container
if kubectl -n kube-system get daemonset "$RELEASE-cni" >/dev/null 2>&1; then mode=cni; fi
if grep -q "not yet present" <<<"$loaded"; then
  # A rebuilt image under the same tag: roll the Deployments (and the CNI installer, which holds
  # the plugin binary) so they run what was just loaded.
  log "new images: restarting the operator, the gateway and the CNI installer"
  kubectl -n "$SYSTEM_NAMESPACE" rollout restart deployment >/dev/null
  if [ "$mode" = cni ]; then
    kubectl -n kube-system rollout restart daemonset "$RELEASE-cni" >/dev/null
    kubectl -n kube-system rollout status daemonset "$RELEASE-cni" --timeout 5m >/dev/null
  fi
  kubectl -n "$SYSTEM_NAMESPACE" rollout status deployment --timeout 5m >/dev/null
fi

[ "$EXAMPLE" = 1 ] || exit 0
log "example Agent: models volume, a placeholder GitHub token, examples/llamacpp-agent.yaml"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if [ "$mode" = cni ]; then
  # Sandboxes hold no privilege in CNI mode: the example runs where `restricted` is enforced.
  kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest >/dev/null
else  # init-container mode: its root NET_ADMIN container needs `privileged`
  kubectl label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce- \
    pod-security.kubernetes.io/enforce-version- >/dev/null
fi
kubectl -n "$NAMESPACE" apply -f examples/kind/models.yaml >/dev/null
kubectl -n "$NAMESPACE" wait --for=condition=complete job/paddock-models-tiny --timeout 5m >/dev/null
kubectl -n "$NAMESPACE" get secret github >/dev/null 2>&1 ||
  kubectl -n "$NAMESPACE" create secret generic github \
    --from-literal=token="ghp_placeholder_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/dev/null
kubectl -n "$NAMESPACE" apply -f examples/llamacpp-agent.yaml >/dev/null
kubectl -n "$NAMESPACE" wait agent/coder --for=jsonpath='{.status.phase}'=Ready --timeout 5m >/dev/null
kubectl -n "$NAMESPACE" get agents >&2

cat <<MSG

paddock is running on kind cluster "$CLUSTER" (kubectl context kind-$CLUSTER).
Talk to the example Agent:

  kubectl --context kind-$CLUSTER -n $NAMESPACE create serviceaccount alice
  kubectl --context kind-$CLUSTER -n $NAMESPACE create role talk-to-coder --verb=connect --resource=agents.paddock.dev --resource-name=coder
  kubectl --context kind-$CLUSTER -n $NAMESPACE create rolebinding alice-coder --role=talk-to-coder --serviceaccount=$NAMESPACE:alice
  .venv/bin/paddock chat coder -n $NAMESPACE --gateway http://localhost:30800 --token "\$(kubectl --context kind-$CLUSTER -n $NAMESPACE create token alice)"

kubectl is $PADDOCK_KUBECTL; tear everything down with: make dev-down
MSG

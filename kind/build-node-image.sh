#!/usr/bin/env bash
# Assembles a kind node image for Kubernetes $KUBE_VERSION with no container registry: every
# binary is built from Go modules (hack/kube-binaries.sh, kind/tools.sh), every image from the
# Debian base (images/debian-base.sh), and the control-plane images are imported into the node's
# containerd before the image is committed, exactly as `kind build node-image` would have pulled
# them. Prints the node image's name; a second run with the same inputs only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export DOCKER_BUILDKIT=0
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker
BASE="${PADDOCK_BASE_IMAGE:-paddock/debian:bookworm}"
log() { echo "node-image: $*" >&2; }

eval "$(hack/kube-binaries.sh)"
eval "$(kind/tools.sh)"
[ "$BASE" != paddock/debian:bookworm ] || DOCKER=$DOCKER images/debian-base.sh "$BASE"

# Names as `kubeadm config images list --kubernetes-version $KUBE_VERSION` prints them.
mapfile -t kubeadm_images < <("$PADDOCK_KUBE_BIN/kubeadm" config images list \
  --kubernetes-version "$KUBE_VERSION" 2>/dev/null)
image_named() { printf '%s\n' "${kubeadm_images[@]}" | grep "/$1:"; }

# The node image is named by everything that goes into it.
inputs_hash=$(
  {
    echo "$KUBE_VERSION $KIND_VERSION $BASE"
    "$DOCKER" image inspect --format '{{.Id}}' "$BASE"
    sha256sum "$PADDOCK_KUBE_BIN"/* "$PADDOCK_ETCD" "$PADDOCK_COREDNS" "$PADDOCK_LOCAL_PATH_PROVISIONER"
    find kind/base kind/node-tools kind/netpol kind/manifests kind/build-node-image.sh -type f \
      ! -path '*/__pycache__/*' | sort | xargs sha256sum
  } | sha256sum | cut -c1-12
)
NODE_IMAGE="paddock/kind-node:$KUBE_VERSION-$inputs_hash"
if "$DOCKER" image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  echo "$NODE_IMAGE"
  exit 0
fi

work=$(mktemp -d)
cid=""
cleanup() {
  [ -z "$cid" ] || "$DOCKER" rm -f "$cid" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
tag="$KUBE_VERSION-$inputs_hash"

log "kind base image (systemd, Debian's containerd, runc and CNI plugins)"
mkdir -p "$work/base/kind-files"
cp -r "$KIND_MODULE_DIR/images/base/files/." "$work/base/kind-files/"
chmod -R u+w "$work/base"
rm -f "$work/base/kind-files/etc/containerd/config.toml"
cp kind/base/Dockerfile kind/base/containerd-config.toml "$work/base/"
"$DOCKER" build -q --build-arg "BASE=$BASE" -t "paddock/kind-base:$tag" "$work/base" >/dev/null

log "node tools and paddock-netpol images"
NODE_TOOLS="paddock/kind-node-tools:$tag"
NETPOL="paddock/kind-netpol:$tag"
"$DOCKER" build -q --build-arg "BASE=$BASE" -t "$NODE_TOOLS" kind/node-tools >/dev/null
"$DOCKER" build -q --build-arg "NODE_TOOLS=$NODE_TOOLS" -t "$NETPOL" kind/netpol >/dev/null

# A single static binary is all these images hold.
import_binary() {  # image, binary, path in the image, entrypoint
  local dir="$work/rootfs-${1//[\/:]/_}"
  mkdir -p "$dir$(dirname "$3")" "$dir/tmp" "$dir/etc"
  cp "$2" "$dir$3"
  echo "nobody:x:65534:65534:nobody:/:/sbin/nologin" >"$dir/etc/passwd"
  chmod 1777 "$dir/tmp"
  tar -C "$dir" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change "ENTRYPOINT $4" - "$1" >/dev/null
}
log "control-plane images"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  import_binary "$(image_named "$b")" "$PADDOCK_KUBE_BIN/$b" "/usr/local/bin/$b" "[\"/usr/local/bin/$b\"]"
done
import_binary "$(image_named etcd)" "$PADDOCK_ETCD" /usr/local/bin/etcd '["/usr/local/bin/etcd"]'
import_binary "$(image_named coredns)" "$PADDOCK_COREDNS" /coredns '["/coredns"]'
LOCAL_PATH_PROVISIONER="paddock/kind-local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION"
import_binary "$LOCAL_PATH_PROVISIONER" "$PADDOCK_LOCAL_PATH_PROVISIONER" \
  /usr/local/bin/local-path-provisioner '["/usr/local/bin/local-path-provisioner"]'
gcc -Os -static -o "$work/pause" "$KUBE_MODULE_DIR/build/pause/linux/pause.c"
strip "$work/pause"
import_binary "$(image_named pause)" "$work/pause" /pause '["/pause"]'
# kube-proxy needs iptables (with the node's backend) and conntrack: the node tools.
mkdir -p "$work/kube-proxy"
cp "$PADDOCK_KUBE_BIN/kube-proxy" "$work/kube-proxy/"
printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\n' "$NODE_TOOLS" >"$work/kube-proxy/Dockerfile"
"$DOCKER" build -q -t "$(image_named kube-proxy)" "$work/kube-proxy" >/dev/null

node_images=("${kubeadm_images[@]}" "$NETPOL" "$NODE_TOOLS" "$LOCAL_PATH_PROVISIONER")
"$DOCKER" save -o "$work/images.tar" "${node_images[@]}"

log "node image: kubelet, kubeadm, kubectl, manifests, and ${#node_images[@]} images in containerd"
mkdir -p "$work/manifests"
for m in default-cni default-storage; do
  sed -e "s#@NETPOL_IMAGE@#$NETPOL#g" -e "s#@NODE_TOOLS_IMAGE@#$NODE_TOOLS#g" \
    -e "s#@LOCAL_PATH_PROVISIONER_IMAGE@#$LOCAL_PATH_PROVISIONER#g" \
    "kind/manifests/$m.yaml" >"$work/manifests/$m.yaml"
done
echo "$KUBE_VERSION" >"$work/version"
cid=$("$DOCKER" run -d --privileged --entrypoint=sleep "paddock/kind-base:$tag" infinity)
for b in kubelet kubeadm kubectl; do
  "$DOCKER" cp "$PADDOCK_KUBE_BIN/$b" "$cid:/usr/bin/$b"
done
"$DOCKER" exec "$cid" mkdir -p /kind/manifests
"$DOCKER" cp "$work/manifests/." "$cid:/kind/manifests/"
"$DOCKER" cp "$work/version" "$cid:/kind/version"
"$DOCKER" exec -d "$cid" containerd
for _ in $(seq 30); do
  "$DOCKER" exec "$cid" ctr version >/dev/null 2>&1 && break
  sleep 1
done
"$DOCKER" exec -i "$cid" ctr --namespace=k8s.io images import --all-platforms --no-unpack \
  --digests - <"$work/images.tar" >/dev/null
"$DOCKER" exec "$cid" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
"$DOCKER" exec "$cid" pkill containerd
sleep 1
"$DOCKER" commit \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  --change 'CMD []' --change 'ENV container=docker' \
  "$cid" "$NODE_IMAGE" >/dev/null
log "built $NODE_IMAGE"
# The node images this one replaces (1.4 GB each), unless a cluster still runs on one.
for repo in kind-node kind-base kind-node-tools kind-netpol; do
  "$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}' "paddock/$repo" | grep -vx "paddock/$repo:$tag" \
    | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
done
echo "$NODE_IMAGE"

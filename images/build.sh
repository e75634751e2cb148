#!/usr/bin/env bash
# Builds paddock's container images, all from one base image:
#   operator, gateway, vault, harness   paddock's Python code (images/paddock.Dockerfile)
#   cni                                 the node installer and the paddock-egress CNI plugin
#                                       (hack/cni-plugin.sh builds the plugin from Go modules)
#   llama-server                        llama.cpp's server (images/llama-server.Dockerfile)
#   redis                               the gateway's session store (images/redis.Dockerfile)
#
# usage: images/build.sh [--base IMAGE] [--prefix NAME] [--push] [IMAGE ...]
#   --base IMAGE   what every image starts from: a Debian bookworm, since the images add packages
#                  with apt (default paddock/debian:bookworm, made by images/debian-base.sh when
#                  missing; with a registry, e.g. python:3.11-slim-bookworm, pulled when missing)
#   --prefix NAME  images are NAME/<image>:VERSION (default paddock); VERSION is the chart's
#                  appVersion (charts/paddock/Chart.yaml)
#   --push         push the images once built (for a registry prefix)
#   IMAGE ...      build only these (default: all seven)
#
# Python packages come from wheels gathered on this machine into $PADDOCK_CACHE/wheels (default
# ~/.cache/paddock), at the versions .venv holds, so `docker build` itself needs no PyPI. Every
# image is labelled with a hash of what it is built from (dev.paddock.content-hash): an image whose
# hash matches is left alone, so a second run takes seconds. Prints a table of the images' sizes
# (progress goes to stderr, the table to stdout).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR="$REPO/images"
DEFAULT_BASE=paddock/debian:bookworm
# Debian's client talks to Debian's daemon (a newer one in PATH defaults to buildx, absent here).
DOCKER="${DOCKER:-$([ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
export DOCKER_BUILDKIT=0

PYTHON_IMAGES=(operator gateway vault harness cni)
ALL_IMAGES=("${PYTHON_IMAGES[@]}" llama-server redis)
declare -A TITLE=(
  [operator]="paddock operator: turns Agents into sandbox Pods"
  [gateway]="paddock gateway: the session API"
  [vault]="paddock vault sidecar and egress-init: holds the real credentials"
  [harness]="paddock harness: the runner and the reference coding agent"
  [cni]="paddock CNI installer: chains the paddock-egress plugin on each node"
  [llama-server]="llama.cpp's llama-server for paddock sandboxes"
  [redis]="Redis for paddock's gateway sessions"
)

declare -A LICENSES=([llama-server]=MIT [redis]=BSD-3-Clause)

log() { echo "images: $*" >&2; }
die() { log "$*"; exit 1; }
sha() { sha256sum | cut -c1-16; }

base=$DEFAULT_BASE prefix=paddock push=false wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --prefix) prefix="${2%/}"; shift 2 ;;
    --push) push=true; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ " ${ALL_IMAGES[*]} " == *" $1 "* ]] || die "no image $1: one of ${ALL_IMAGES[*]}"
       wanted+=("$1"); shift ;;
  esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=("${ALL_IMAGES[@]}")
wants() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

VERSION=$(chart_app_version "$REPO/charts/paddock/Chart.yaml")
[ -n "$VERSION" ] || die "no appVersion in charts/paddock/Chart.yaml"
mkdir -p "$PADDOCK_CACHE/images/logs" "$PADDOCK_CACHE/wheels"
# One build at a time per machine: a second caller waits, then finds the images up to date.
take_lock "$PADDOCK_CACHE/images/build.lock" "another images/build.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the base ---------------------------------------------------------------------------------
if [ "$base" = "$DEFAULT_BASE" ]; then
  DOCKER="$DOCKER" "$IMAGES_DIR/debian-base.sh" "$base"
elif ! "$DOCKER" image inspect "$base" >/dev/null 2>&1; then
  log "pulling $base"
  "$DOCKER" pull -q "$base" >/dev/null
fi
# What every image is built from besides its Dockerfile: this script (it writes the labels) too.
base_id=$("$DOCKER" image inspect -f '{{.Id}}' "$base")
inputs=$(cat "${BASH_SOURCE[0]}" | sha)
base_digest=$("$DOCKER" image inspect -f '{{range .RepoDigests}}{{.}} {{end}}' "$base" | cut -d' ' -f1)
base_digest=${base_digest#*@}
base_digest=${base_digest:-$base_id}

revision=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain -- paddock operator gateway vault_sidecar runner \
  pyproject.toml images 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
source_url=$(git -C "$REPO" remote get-url origin 2>/dev/null || true)

# --- building one image -----------------------------------------------------------------------
# current NAME HASH: true when NAME's image exists and was built from the same inputs.
current() {
  [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "dev.paddock.content-hash"}}' \
    "$prefix/$1:$VERSION" 2>/dev/null)" = "$2" ]
}

# build NAME HASH DOCKERFILE CONTEXT [docker build flags...]
declare -A STATUS
build() {
  local name=$1 hash=$2 dockerfile=$3 context=$4
  shift 4
  local image="$prefix/$name:$VERSION" started=$SECONDS
  local labels=(
    --label "org.opencontainers.image.title=paddock-$name"
    --label "org.opencontainers.image.description=${TITLE[$name]}"
    --label "org.opencontainers.image.version=$VERSION"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    --label "org.opencontainers.image.licenses=${LICENSES[$name]:-Apache-2.0}"
    --label "org.opencontainers.image.base.name=$base"
    --label "org.opencontainers.image.base.digest=$base_digest"
    --label "dev.paddock.content-hash=$hash"
  )
  [ -z "$source_url" ] || labels+=(--label "org.opencontainers.image.source=$source_url")
  local previous
  previous=$("$DOCKER" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  log "building $image"
  "$DOCKER" build --force-rm --file "$dockerfile" --build-arg "BASE=$base" "${labels[@]}" \
    --tag "$image" "$@" "$context" >"$PADDOCK_CACHE/images/logs/$name.log" 2>&1 || {
    tail -30 "$PADDOCK_CACHE/images/logs/$name.log" >&2
    die "building $image failed (log: $PADDOCK_CACHE/images/logs/$name.log)"
  }
  # The image this one replaces, unless something still uses it: else every rebuild leaves one.
  if [ -n "$previous" ] && [ -z "$("$DOCKER" image inspect -f '{{.RepoTags}}' "$previous" 2>/dev/null | tr -d '[]')" ]; then
    "$DOCKER" rmi "$previous" >/dev/null 2>&1 || true
  fi
  STATUS[$name]="built in $((SECONDS - started)) s"
}

# --- paddock's wheel and its dependencies -----------------------------------------------------
# python_target: sets runtime, pyver, glibc and machine. The target Python is the base's, or
# Debian's python3 on a bare base: the Dockerfile's first stage (cached by docker after the first
# time) makes that image, which tells its version, glibc and machine.
python_target() {
  local empty="$work/empty"
  mkdir -p "$empty"
  "$DOCKER" build --file "$IMAGES_DIR/paddock.Dockerfile" --build-arg "BASE=$base" \
    --target runtime --iidfile "$work/runtime.iid" "$empty" >"$PADDOCK_CACHE/images/logs/python.log" 2>&1 || {
    tail -30 "$PADDOCK_CACHE/images/logs/python.log" >&2
    die "installing python3 in $base failed"
  }
  runtime=$(cat "$work/runtime.iid")
  read -r pyver glibc machine < <("$DOCKER" run --rm --network none --entrypoint python3 "$runtime" \
    -c 'import platform; print(platform.python_version(), platform.libc_ver()[1], platform.machine())')
  [ -n "$machine" ] || die "python3 in $base did not say its version"
}

# first_gap DIR WHEEL: the first requirement of WHEEL that DIR's wheels leave unmet, as the
# target Python's own pip resolves it (offline); empty when there is none. The host's pip evaluates
# markers for the host's Python: redis needs async-timeout below 3.11.3, and Debian has 3.11.2.
first_gap() {
  local out
  out=$("$DOCKER" run --rm --network none -v "$1:/wheels:ro" -v "$2:/in/${2##*/}:ro" \
    --entrypoint /bin/sh "$runtime" -c 'python3 "$(ls /wheels/pip-*.whl)/pip" download --quiet \
      --no-index --find-links /wheels --dest /tmp/out "/in/'"${2##*/}"'"' 2>&1) && return
  echo "$out" | sed -n 's/^ERROR: No matching distribution found for \([^ ]*\).*/\1/p' | grep . ||
    die "checking the wheels with the image's pip failed: $out"
}

# wheelhouse DIR WHEEL CONSTRAINTS PYVER GLIBC MACHINE: wheels of WHEEL's dependencies (and of
# pip) for that Python, at the versions CONSTRAINTS pins.
wheelhouse() {
  local dir=$1 wheel=$2 constraints=$3 pyver=$4 glibc=$5 machine=$6
  local abi minor legacy platforms=() wants=("$wheel" pip) gap
  abi=$(echo "$pyver" | awk -F. '{ print "cp" $1 $2 }')
  for minor in $(seq 5 "${glibc#2.}"); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
  for legacy in manylinux1 manylinux2010 manylinux2014; do platforms+=(--platform "${legacy}_$machine"); done
  log "gathering wheels for CPython $pyver ($machine, glibc $glibc) into $dir"
  rm -rf "$dir.tmp"
  for _ in 1 2 3 4 5 6; do
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
      --python-version "$pyver" --implementation cp --abi "$abi" "${platforms[@]}" \
      --constraint "$constraints" --dest "$dir.tmp" "${wants[@]}"
    gap=$(first_gap "$dir.tmp" "$wheel")
    if [ -z "$gap" ]; then
      rm -f "$dir.tmp"/paddock-*.whl
      mv "$dir.tmp" "$dir"
      return
    fi
    wants+=("$gap")
  done
  die "the wheels in $dir.tmp still miss $gap"
}

python_hash=""
if wants operator || wants gateway || wants vault || wants harness || wants cni; then
  [ -x "$PYTHON" ] || die "$PYTHON is missing: run 'make venv' (or set PYTHON)"
  # Hatchling's wheels are reproducible: the same code gives the same bytes, hence the same hash.
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
    "$REPO" -w "$work/paddock" >/dev/null
  wheel=$(ls "$work"/paddock/paddock-*.whl)
  # The images get the dependency versions the tests ran with.
  "$PYTHON" -m pip freeze --all --exclude-editable --disable-pip-version-check \
    | grep -v '^paddock==' >"$work/constraints.txt"
  python_hash=$( { echo "$VERSION $base_id $inputs"; cat "$IMAGES_DIR/paddock.Dockerfile" \
    "$REPO/pyproject.toml" "$work/constraints.txt" "$wheel"; } | sha)

  # The cni image also holds the plugin binary: its hash counts the binary too.
  declare -A HASH=()
  for name in "${PYTHON_IMAGES[@]}"; do HASH[$name]="$python_hash-$name"; done
  if wants cni; then
    plugin=$("$REPO/hack/cni-plugin.sh") || die "hack/cni-plugin.sh failed"
    HASH[cni]="$python_hash-$(sha <"$plugin")-cni"
  fi
  pending=()
  for name in "${PYTHON_IMAGES[@]}"; do
    if wants "$name" && ! current "$name" "${HASH[$name]}"; then pending+=("$name"); fi
  done
  if [ ${#pending[@]} -gt 0 ]; then
    python_target
    deps_key=$(cat "$REPO/pyproject.toml" "$work/constraints.txt" | sha)
    deps="$PADDOCK_CACHE/wheels/deps-$deps_key-cp$pyver-$machine-glibc$glibc"
    [ -d "$deps" ] || wheelhouse "$deps" "$wheel" "$work/constraints.txt" "$pyver" "$glibc" "$machine"
    context="$work/python"
    mkdir -p "$context/paddock"
    cp -al "$deps" "$context/deps" 2>/dev/null || cp -a "$deps" "$context/deps"
    cp "$wheel" "$context/paddock/"
    mkdir -p "$context/cni"
    if wants cni; then cp "$plugin" "$context/cni/paddock-egress"; fi
    for name in "${pending[@]}"; do
      build "$name" "${HASH[$name]}" "$IMAGES_DIR/paddock.Dockerfile" "$context" --target "$name"
    done
  fi
fi

# --- llama-server and redis -------------------------------------------------------------------
if wants llama-server; then
  if [ -z "${PADDOCK_LLAMA_SERVER:-}" ]; then
    exports=$(PYTHON="$PYTHON" "$REPO/hack/llama-server.sh") || die "hack/llama-server.sh failed"
    eval "$exports"
  fi
  hash=$( { echo "$VERSION $base_id $inputs"; cat "$IMAGES_DIR/llama-server.Dockerfile" \
    "$PADDOCK_LLAMA_SERVER"; } | sha)
  if ! current llama-server "$hash"; then
    mkdir -p "$work/llama-server"
    cp "$PADDOCK_LLAMA_SERVER" "$work/llama-server/llama-server"
    build llama-server "$hash" "$IMAGES_DIR/llama-server.Dockerfile" "$work/llama-server"
  fi
fi

if wants redis; then
  hash=$( { echo "$VERSION $base_id $inputs"; cat "$IMAGES_DIR/redis.Dockerfile"; } | sha)
  if ! current redis "$hash"; then
    mkdir -p "$work/redis"
    build redis "$hash" "$IMAGES_DIR/redis.Dockerfile" "$work/redis"
  fi
fi

if $push; then
  for name in "${wanted[@]}"; do
    log "pushing $prefix/$name:$VERSION"
    "$DOCKER" push -q "$prefix/$name:$VERSION" >/dev/null
  done
fi

# --- the table --------------------------------------------------------------------------------
# OWN is what an image adds to the layers it shares with others: the base, and for the Python
# images python3 and the dependencies' venv too. Shared layers are stored, and loaded, once.
mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }
# below IMAGE: bytes in the layers up to the venv's (the Python images) or in the base (the others).
below() {
  "$DOCKER" history --no-trunc --human=false --format '{{.Size}}|{{.CreatedBy}}' "$1" | awk -F'|' \
    -v base="$base_size" '$2 ~ / in \/opt\/paddock *$/ { found = 1 } found { s += $1 }
      END { print (found ? s : base) }'
}
base_size=$("$DOCKER" image inspect -f '{{.Size}}' "$base")
shared_python=0 total=$base_size rows=()
for name in "${wanted[@]}"; do
  image="$prefix/$name:$VERSION"
  bytes=$("$DOCKER" image inspect -f '{{.Size}}' "$image")
  under=$(below "$image")
  [ "$under" = "$base_size" ] || shared_python=$((under - base_size))
  total=$((total + bytes - under))
  rows+=("$image|$(mb "$bytes")|$(mb $((bytes - under)))|${STATUS[$name]:-up to date}")
done
rows+=("shared: $base|$(mb "$base_size")||every image")
[ "$shared_python" = 0 ] || rows+=("shared: python3 + venv|$(mb "$shared_python")||the Python images")
rows+=("on disk, all together|$(mb $((total + shared_python)))||")
printf '%s\n' "IMAGE|SIZE|OWN|" "${rows[@]}" | awk -F'|' '
  { for (i = 1; i <= 4; i++) cell[NR, i] = $i; if (length($1) > w) w = length($1) }
  END { for (r = 1; r <= NR; r++) printf "%-*s  %7s  %7s  %s\n", w, cell[r, 1], cell[r, 2], cell[r, 3], cell[r, 4] }'

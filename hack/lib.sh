# shellcheck shell=bash
# What paddock's build scripts (hack/, kind/, images/) share. Sourced, not run:
#   source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"

# Where builds are cached, once per machine (binaries, sources, wheels, the Debian rootfs).
PADDOCK_CACHE="${PADDOCK_CACHE:-$HOME/.cache/paddock}"

# take_lock FILE WHO: holds an exclusive lock on FILE (as fd 9) until the script exits, so one
# build at a time per machine. When WHO (another caller) holds it, says so through the script's
# log() and waits.
take_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  if ! flock -n 9; then
    log "waiting for $2 to finish (lock $1)"
    flock 9
  fi
}

# publish TMP DIR: moves every file built in TMP into DIR, one rename each (so a reader never sees
# a half-written binary), and removes TMP.
publish() {
  mkdir -p "$2"
  mv "$1"/* "$2/"
  rmdir "$1"
}

# go_module_dir MODULE@VERSION: the module's source directory in Go's module cache, downloaded
# when missing.
go_module_dir() {
  # Outside any go.mod, so no module's requirements get in the way.
  (cd /tmp && go mod download -json "$1") | sed -n 's/.*"Dir": "\(.*\)",/\1/p'
}

# chart_app_version CHART_YAML: the chart's appVersion, the tag of paddock's images.
chart_app_version() {
  sed -n 's/^appVersion: *"\{0,1\}\([^" ]*\)"\{0,1\} *$/\1/p' "$1"
}

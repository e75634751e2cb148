#!/usr/bin/env bash
# Builds paddock's Debian base image with debootstrap and `docker import`, for machines that can
# reach Debian's package mirror but no container registry. Every paddock image, and the kind node
# image, starts from it. With a registry, use a public base instead (images/build.sh --base).
#
# The rootfs tarball is cached in $PADDOCK_CACHE/images (default ~/.cache/paddock), keyed by the
# suite and the package list, so a second run only re-imports it when the image is missing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"

SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE="${1:-paddock/debian:$SUITE}"
CACHE="$PADDOCK_CACHE/images"
DOCKER="${DOCKER:-docker}"
# ca-certificates for apt over https mirrors and for the Python images' TLS.
INCLUDE=ca-certificates

log() { echo "debian-base: $*" >&2; }

# The key covers this script too: a changed recipe makes a new tarball and a new image.
key=$( { printf '%s %s %s\n' "$SUITE" "$MIRROR" "$INCLUDE"; cat "${BASH_SOURCE[0]}"; } | cksum | cut -d' ' -f1)
if [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "dev.paddock.debian-base"}}' "$IMAGE" 2>/dev/null)" = "$key" ]; then
  exit 0
fi
tarball="$CACHE/debian-$SUITE-$key.tar"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  mkdir -p "$CACHE"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap $SUITE from $MIRROR (~30 s)"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" >/dev/null
  # Smaller: no apt lists, caches, docs (but copyright files), man pages or translations; apt works
  # again after `apt-get update`. The dpkg excludes keep them out of later installs too, as
  # Debian's own -slim images do, so both bases give images of the same shape.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*
  find "$root/usr/share/doc" -xdev -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -xdev -depth -type d -empty -delete
  cat >"$root/etc/dpkg/dpkg.cfg.d/90paddock-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
DPKG
  cat >"$root/etc/apt/apt.conf.d/90paddock" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  rm -f "$CACHE/debian-$SUITE-"*.tar  # earlier recipes' tarballs
  mv "$tarball.tmp" "$tarball"
fi
log "importing $tarball as $IMAGE"
"$DOCKER" import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
  --change "LABEL dev.paddock.debian-base=$key" "$tarball" "$IMAGE" >/dev/null

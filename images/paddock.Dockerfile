# The four images that run paddock's Python code, one stage each: operator, gateway, vault and
# harness. Built by images/build.sh (`--target <image>`) from one base and a context holding deps/
# (a wheelhouse of paddock's dependencies, and pip) and paddock/ (paddock's own wheel): no network
# is needed for Python packages.
#
# Layers, bottom up: the base; python3 (Debian's, when the base has none); a venv at /opt/paddock
# with the dependencies (these three are the same in all four images, so they are stored, and
# `kind load`ed, once); each image's own packages and user; paddock's code, last, so a code
# change rebuilds only that small layer.
ARG BASE=paddock/debian:bookworm

FROM ${BASE} AS runtime
SHELL ["/bin/sh", "-eu", "-c"]
# A python:*-slim base has its own python3 in /usr/local. The venv is made --without-pip, so
# Debian's python3-venv (ensurepip) is not needed.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update -qq; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null; \
      apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    fi; \
    python3 --version
ENV PATH=/opt/paddock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

FROM runtime AS deps
COPY deps/ /wheels/
# pip runs from its own wheel and is never installed: no installer and no pip cache in the images.
# The dependencies' own test suites (numpy's: 17 MB) go too.
RUN python3 -m venv --without-pip /opt/paddock; \
    /opt/paddock/bin/python "$(ls /wheels/pip-*.whl)/pip" install --quiet --no-index --no-deps \
      --no-cache-dir --disable-pip-version-check $(ls /wheels/*.whl | grep -v '/pip-'); \
    find /opt/paddock/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +

# Not an image: paddock installed under /staging, for the images to copy, after a check that it
# imports and that every dependency is satisfied.
FROM deps AS wheel
COPY paddock/ /paddock/
RUN pip="$(ls /wheels/pip-*.whl)/pip"; \
    /opt/paddock/bin/python "$pip" install --quiet --no-index --no-deps --no-cache-dir \
      --disable-pip-version-check --root /staging /paddock/paddock-*.whl; \
    cp -a /staging/. /; \
    /opt/paddock/bin/python "$pip" check --disable-pip-version-check; \
    paddock --help >/dev/null

FROM runtime AS python
COPY --from=deps /opt/paddock /opt/paddock

# `paddock operator`, as uid 10001; the chart passes its flags as args.
FROM python AS operator
RUN groupadd --system --gid 10001 paddock-operator; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin paddock-operator
COPY --from=wheel /staging/ /
USER 10001:10001
ENTRYPOINT ["paddock"]
CMD ["operator"]

# `paddock gateway`, as uid 10002 (settings from PADDOCK_GATEWAY_* variables).
FROM python AS gateway
RUN groupadd --system --gid 10002 paddock-gateway; \
    useradd --system --uid 10002 --gid 10002 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin paddock-gateway
COPY --from=wheel /staging/ /
USER 10002:10002
ENTRYPOINT ["paddock"]
CMD ["gateway"]

# The vault sidecar (`paddock vault`, uid 1337) and, from the same image, the Pod's egress-init
# container (operator/paddock_operator/render/pod.py), which runs as root with NET_ADMIN: it writes
# the trust bundle from /etc/ssl/certs/ca-certificates.crt plus the Agent CA, then applies
# `paddock egress-script`'s rules with awk and `iptables`/`ip6tables`: Debian's default, the
# nf_tables backend (iptables-legacy is there too, for IPTABLES=iptables-legacy).
FROM python AS vault
RUN apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      iptables ca-certificates mawk >/dev/null; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    groupadd --system --gid 1337 paddock-vault; \
    useradd --system --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin paddock-vault
COPY --from=wheel /staging/ /
USER 1337:1337
ENTRYPOINT ["paddock"]
CMD ["vault"]

# The runner and the reference coding agent (`paddock runner`), as uid 1000 in /workspace. The
# agent's shell tool runs bash; git and curl reach the internet through the vault (the Pod sets
# HTTPS_PROXY and points them at its CA bundle). FROM this image to add a command-line harness.
FROM python AS harness
RUN apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      bash coreutils git curl ca-certificates >/dev/null; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    groupadd --gid 1000 agent; \
    useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash agent; \
    mkdir /workspace; chown 1000:1000 /workspace
COPY --from=wheel /staging/ /
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT ["paddock"]
CMD ["runner"]

# The node installer (`paddock cni-install`, chart: the cni DaemonSet, CNI mode) with the
# paddock-egress plugin (cni/, built by hack/cni-plugin.sh) that it copies to each node's
# /opt/cni/bin. Root without capabilities: it writes the node's root-owned CNI directories, mounted
# with hostPath, and nothing else; the plugin itself runs as the container runtime runs it.
FROM python AS cni
COPY cni/paddock-egress /opt/paddock-cni/paddock-egress
COPY --from=wheel /staging/ /
USER 0:0
ENTRYPOINT ["paddock"]
CMD ["cni-install"]

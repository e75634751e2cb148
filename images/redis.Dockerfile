# paddock/redis: Debian's redis-server and redis-cli, as uid 999, keeping an append-only file in
# /data (the chart mounts a PVC there). Protected mode is off because Kubernetes, not Redis, decides
# who may connect (the chart's NetworkPolicy); args given to the container replace these defaults.
ARG BASE=paddock/debian:bookworm
FROM ${BASE}
SHELL ["/bin/sh", "-eu", "-c"]
# The user first, so the package's postinst keeps uid 999 instead of picking one.
RUN groupadd --system --gid 999 redis; \
    useradd --system --uid 999 --gid 999 --no-create-home --home-dir /var/lib/redis \
      --shell /usr/sbin/nologin redis; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    mkdir /data; chown 999:999 /data
WORKDIR /data
USER 999:999
EXPOSE 6379
ENTRYPOINT ["redis-server"]
CMD ["--dir", "/data", "--appendonly", "yes", "--protected-mode", "no"]

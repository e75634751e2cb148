# paddock/llama-server: llama.cpp's llama-server (built by hack/llama-server.sh, linked statically
# against ggml and llama, dynamically against glibc and libstdc++), as uid 1001, plus curl for the
# Pod's model-fetch init container. The default arguments are paddock.engines.llama_server_args():
# router mode over /models, where each model is a <name>.gguf file.
ARG BASE=paddock/debian:bookworm
FROM ${BASE}
SHELL ["/bin/sh", "-eu", "-c"]
RUN apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libstdc++6 curl ca-certificates >/dev/null; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    groupadd --system --gid 1001 llama; \
    useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin llama; \
    mkdir /models; chown 1001:1001 /models
COPY llama-server /usr/local/bin/llama-server
ENV HOME=/tmp
USER 1001:1001
EXPOSE 8080
ENTRYPOINT ["llama-server"]
CMD ["--host", "0.0.0.0", "--port", "8080", "--models-dir", "/models", "--models-max", "1", "--jinja", "--metrics", "--no-webui"]

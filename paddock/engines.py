"""The model server container of an Agent's Pod, rendered from spec.model: pure functions.

llama-server runs in router mode over MODELS_DIR (each served model is a file <name>.gguf there),
so models are loaded and swapped through its API with no restart (paddock.modelserver). vllm
serve runs one model from MODELS_DIR/<name> (a PVC directory) or the Hugging Face Hub. Both listen
on MODEL_PORT with the OpenAI routes under /v1 and /health, which is all the runner relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from paddock.api.agent import ModelSpec, ServedModel
from paddock.sandbox import MODEL_CONTAINER, MODEL_NAME_ENV, MODEL_PORT, MODEL_URL_ENV, MODELS_DIR

ALL_ADDRESSES: Final = "0.0.0.0"  # noqa: S104 - the gateway-facing Pod network needs it
LLAMA_CACHE_DIR: Final = f"{MODELS_DIR}/.cache/llama.cpp"
HF_HOME_DIR: Final = f"{MODELS_DIR}/.cache/huggingface"


@dataclass(frozen=True)
class EngineContainer:
    """What the operator needs to run a model server: the container minus mounts and security."""

    command: list[str]
    args: list[str]
    env: dict[str, str]
    resources: dict[str, dict[str, str]]
    startup_probe: dict[str, Any]
    readiness_probe: dict[str, Any]
    liveness_probe: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    """Pod volumes the engine needs besides the models volume (vllm: memory-backed /dev/shm)."""
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    port: int = MODEL_PORT

    def container(self, image: str) -> dict[str, Any]:
        """The Kubernetes container; the operator adds mounts of MODELS_DIR and security context."""
        return {
            "name": MODEL_CONTAINER,
            "image": image,
            "command": self.command,
            "args": self.args,
            "env": [{"name": k, "value": v} for k, v in sorted(self.env.items())],
            "ports": [{"name": "http", "containerPort": self.port, "protocol": "TCP"}],
            "resources": self.resources,
            "startupProbe": self.startup_probe,
            "readinessProbe": self.readiness_probe,
            "livenessProbe": self.liveness_probe,
            "volumeMounts": self.volume_mounts,
        }


def http_probe(period_s: int, failure_threshold: int, timeout_s: int = 5) -> dict[str, Any]:
    """An httpGet probe of /health on the model port."""
    return {
        "httpGet": {"path": "/health", "port": MODEL_PORT},
        "periodSeconds": period_s,
        "failureThreshold": failure_threshold,
        "timeoutSeconds": timeout_s,
    }


def model_url(spec: ModelSpec) -> str:
    """The OpenAI base URL for PADDOCK_MODEL_URL: the Pod's own server, or the external one."""
    if spec.engine == "external" and spec.external is not None:
        return spec.external.base_url.rstrip("/")
    return f"http://127.0.0.1:{MODEL_PORT}/v1"


def harness_env(spec: ModelSpec) -> dict[str, str]:
    """Variables the harness container needs to reach its model (see paddock.sandbox).

    The runner uses the model its server has loaded and falls back to PADDOCK_RUNNER_MODEL only
    when that names no single model (nothing loaded yet, or an external API offering many). So a
    swap through the router needs no change of these variables, and no restart.
    """
    return {MODEL_URL_ENV: model_url(spec), MODEL_NAME_ENV: spec.default}


def llama_server_args(
    models_dir: str = MODELS_DIR,
    host: str = ALL_ADDRESSES,
    port: int = MODEL_PORT,
    models_max: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """llama-server's arguments for router mode over `models_dir`; `extra` comes last and wins."""
    return [
        "--host",
        host,
        "--port",
        str(port),
        "--models-dir",
        models_dir,
        # One model at a time by default: a swap frees the memory of the previous one.
        "--models-max",
        str(models_max),
        # Chat templates run as Jinja, which is what parses tool calls.
        "--jinja",
        "--metrics",
        "--no-webui",
        *extra,
    ]


def llama_server(spec: ModelSpec) -> EngineContainer:
    """llama-server in router mode serving spec.model.models from MODELS_DIR."""
    extra = ["--n-gpu-layers", "all"] if spec.gpus else []
    return EngineContainer(
        command=["llama-server"],
        args=llama_server_args(extra=[*extra, *spec.args]),
        # The router also lists models from its download cache: keep that on the models volume.
        env={"LLAMA_CACHE": LLAMA_CACHE_DIR},
        resources=_resources(spec, spec.gpus or 0),
        # The router answers /health at once; models load later, through its API.
        startup_probe=http_probe(period_s=2, failure_threshold=60),
        readiness_probe=http_probe(period_s=5, failure_threshold=3),
        liveness_probe=http_probe(period_s=10, failure_threshold=6),
    )


def vllm_model_ref(model: ServedModel) -> list[str]:
    """The model argument of vllm serve (and its revision), from where the weights are."""
    source = model.source
    if source is not None and source.hugging_face is not None:
        return [source.hugging_face.repo, "--revision", source.hugging_face.revision]
    return [f"{MODELS_DIR}/{model.name}"]


def vllm(spec: ModelSpec) -> EngineContainer:
    """vllm serve with the Agent's one model, on spec.model.gpus GPUs (1 unless set)."""
    gpus = 1 if spec.gpus is None else spec.gpus
    (model,) = spec.models
    parallel = ["--tensor-parallel-size", str(gpus)] if gpus > 1 else []
    args = [
        *vllm_model_ref(model),
        "--served-model-name",
        model.name,
        "--host",
        ALL_ADDRESSES,
        "--port",
        str(MODEL_PORT),
        *parallel,
        *spec.args,
    ]
    return EngineContainer(
        command=["vllm", "serve"],
        args=args,
        env={"HF_HOME": HF_HOME_DIR, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"},
        resources=_resources(spec, gpus),
        # Downloading and compiling a model takes minutes: allow 30 before giving up.
        startup_probe=http_probe(period_s=10, failure_threshold=180),
        readiness_probe=http_probe(period_s=5, failure_threshold=3),
        liveness_probe=http_probe(period_s=15, failure_threshold=4, timeout_s=10),
        # NCCL and the tokenizer workers share memory through /dev/shm, 64 MiB by default.
        volumes=[{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
        volume_mounts=[{"name": "dshm", "mountPath": "/dev/shm"}],  # noqa: S108 - a mount
    )


def render(spec: ModelSpec) -> EngineContainer | None:
    """The model server container for spec.model; None when the engine is external."""
    if spec.engine == "llamacpp":
        return llama_server(spec)
    if spec.engine == "vllm":
        return vllm(spec)
    return None


def _resources(spec: ModelSpec, gpus: int) -> dict[str, dict[str, str]]:
    requests = {k: str(v) for k, v in spec.resources.requests.items()}
    limits = {k: str(v) for k, v in spec.resources.limits.items()}
    if gpus:
        # Extended resources are requested through limits; requests default to them.
        limits[spec.gpu_resource_name] = str(gpus)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out

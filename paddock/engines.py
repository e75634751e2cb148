"""What each model server engine is, from spec.model: its command, arguments, probes and needs.

Facts only, no Kubernetes objects: the operator's renderer (paddock_operator.render.model) builds
the Pod's model container from them, and the test helpers start llama-server with the same
arguments. llama-server runs in router mode over MODELS_DIR (each served model is a file
<name>.gguf there), so models are loaded and swapped through its API with no restart
(paddock.modelserver). vllm serve runs one model from MODELS_DIR/<name> (a PVC directory) or the
Hugging Face Hub. Both listen on MODEL_PORT with the OpenAI routes under /v1 and
HEALTH_PATH, which is all the runner relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from paddock.api.agent import ModelSpec, ServedModel
from paddock.sandbox import MODEL_NAME_ENV, MODEL_PORT, MODEL_URL_ENV, MODELS_DIR

HEALTH_PATH: Final = "/health"
"""Both engines answer it on MODEL_PORT; every probe asks it."""
ALL_ADDRESSES: Final = "0.0.0.0"  # noqa: S104 - the gateway-facing Pod network needs it
LLAMA_CACHE_DIR: Final = f"{MODELS_DIR}/.cache/llama.cpp"
HF_HOME_DIR: Final = f"{MODELS_DIR}/.cache/huggingface"


@dataclass(frozen=True)
class Probe:
    """How often the kubelet asks HEALTH_PATH on the model port, and how many failures it takes."""

    period_s: int
    failure_threshold: int
    timeout_s: int = 5


@dataclass(frozen=True)
class Engine:
    """The facts of one model server: how to start it and how to tell it is well.

    The operator's renderer (paddock_operator.render.model) turns them into the Pod's container.
    """

    command: list[str]
    args: list[str]
    env: dict[str, str]
    gpus: int
    """GPUs to request (0: none)."""
    startup: Probe
    readiness: Probe
    liveness: Probe
    shared_memory: str | None = None
    """Size of a memory-backed /dev/shm to give the server, when it needs more than the default."""


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


def llama_server(spec: ModelSpec) -> Engine:
    """llama-server in router mode serving spec.model.models from MODELS_DIR."""
    extra = ["--n-gpu-layers", "all"] if spec.gpus else []
    return Engine(
        command=["llama-server"],
        args=llama_server_args(extra=[*extra, *spec.args]),
        # The router also lists models from its download cache: keep that on the models volume.
        env={"LLAMA_CACHE": LLAMA_CACHE_DIR},
        gpus=spec.gpus or 0,
        # The router answers /health at once; models load later, through its API.
        startup=Probe(period_s=1, failure_threshold=120),
        readiness=Probe(period_s=5, failure_threshold=3),
        liveness=Probe(period_s=10, failure_threshold=6),
    )


def model_file(spec: ModelSpec, model: ServedModel) -> str:
    """Where a served model's weights go under MODELS_DIR for the engine.

    llama-server's router names each model after its file; vllm serves a directory.
    """
    return f"{model.name}.gguf" if spec.engine == "llamacpp" else model.name


def vllm_model_ref(spec: ModelSpec, model: ServedModel) -> list[str]:
    """The model argument of vllm serve (and its revision), from where the weights are."""
    source = model.source
    if source is not None and source.hugging_face is not None:
        return [source.hugging_face.repo, "--revision", source.hugging_face.revision]
    return [f"{MODELS_DIR}/{model_file(spec, model)}"]


def vllm(spec: ModelSpec) -> Engine:
    """vllm serve with the Agent's one model, on spec.model.gpus GPUs (1 unless set)."""
    gpus = 1 if spec.gpus is None else spec.gpus
    (model,) = spec.models
    parallel = ["--tensor-parallel-size", str(gpus)] if gpus > 1 else []
    args = [
        *vllm_model_ref(spec, model),
        "--served-model-name",
        model.name,
        "--host",
        ALL_ADDRESSES,
        "--port",
        str(MODEL_PORT),
        *parallel,
        *spec.args,
    ]
    return Engine(
        command=["vllm", "serve"],
        args=args,
        env={"HF_HOME": HF_HOME_DIR, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"},
        gpus=gpus,
        # Downloading and compiling a model takes minutes: allow 30 before giving up.
        startup=Probe(period_s=10, failure_threshold=180),
        readiness=Probe(period_s=5, failure_threshold=3),
        liveness=Probe(period_s=15, failure_threshold=4, timeout_s=10),
        # NCCL and the tokenizer workers share memory through /dev/shm, 64 MiB by default.
        shared_memory="2Gi",
    )


def engine_for(spec: ModelSpec) -> Engine | None:
    """The model server spec.model runs in the Pod; None when the engine is external."""
    if spec.engine == "llamacpp":
        return llama_server(spec)
    if spec.engine == "vllm":
        return vllm(spec)
    return None

"""The model server container (llama-server or vllm serve) and the volumes its models come from.

Built here once, from the engine's facts in paddock.engines (command, arguments, probes, GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from paddock import engines, sandbox
from paddock.api.agent import ModelSpec
from paddock.engines import Engine, Probe
from paddock.kubeobj import Obj
from paddock_operator.render.security import restricted
from paddock_operator.settings import OperatorSettings

MODELS_VOLUME = "models"
SHARED_MEMORY_VOLUME = "dshm"


@dataclass
class ModelMounts:
    """Volumes and mounts that put each served model under sandbox.MODELS_DIR."""

    volumes: list[Obj] = field(default_factory=list)
    mounts: list[Obj] = field(default_factory=list)
    downloads: list[tuple[str, str]] = field(default_factory=list)
    """(url, file under MODELS_DIR) pairs an init container fetches before the server starts."""


@dataclass(frozen=True)
class ModelServerParts:
    """What the model server adds to the sandbox Pod."""

    container: Obj
    init_containers: list[Obj]
    """The download of URL models, when there are any."""
    volumes: list[Obj]


def _claim_volume(claim: str) -> str:
    return f"model-{claim}"[:63]


def hugging_face_url(repo: str, revision: str, file: str) -> str:
    """The download URL of one file of a Hugging Face repository."""
    return f"https://huggingface.co/{repo}/resolve/{revision}/{file}"


def model_mounts(spec: ModelSpec) -> ModelMounts:
    """Where each model's weights come from, laid out for the engine."""
    out = ModelMounts(volumes=[{"name": MODELS_VOLUME, "emptyDir": {}}])
    out.mounts.append({"name": MODELS_VOLUME, "mountPath": sandbox.MODELS_DIR})
    claims: set[str] = set()
    for model in spec.models:
        source = model.source
        if source is None:
            continue
        target = engines.model_file(spec, model)
        if source.pvc is not None:
            if source.pvc.claim_name not in claims:
                claims.add(source.pvc.claim_name)
                out.volumes.append(
                    {
                        "name": _claim_volume(source.pvc.claim_name),
                        "persistentVolumeClaim": {
                            "claimName": source.pvc.claim_name,
                            "readOnly": True,
                        },
                    }
                )
            out.mounts.append(
                {
                    "name": _claim_volume(source.pvc.claim_name),
                    "mountPath": f"{sandbox.MODELS_DIR}/{target}",
                    "subPath": source.pvc.path,
                    "readOnly": True,
                }
            )
        elif source.url is not None:
            out.downloads.append((source.url, target))
        elif source.hugging_face is not None and spec.engine == "llamacpp":
            hf = source.hugging_face
            out.downloads.append((hugging_face_url(hf.repo, hf.revision, hf.file or ""), target))
    return out


HUGGING_FACE_HOSTS = ("huggingface.co", "*.huggingface.co", "*.hf.co")


def download_hosts(spec: ModelSpec) -> list[str]:
    """Hosts the Pod downloads model weights from, which the vault must let through."""
    hosts: list[str] = []
    for model in spec.models:
        source = model.source
        if source is not None and source.url is not None:
            hosts.append(urlsplit(source.url).hostname or "")
        if source is not None and source.hugging_face is not None:
            hosts += HUGGING_FACE_HOSTS
    return list(dict.fromkeys(h for h in hosts if h))


def model_server(spec: ModelSpec, settings: OperatorSettings) -> ModelServerParts | None:
    """The model server's container, init containers and volumes; None for an external engine."""
    engine = engines.engine_for(spec)
    if engine is None:
        return None
    image = spec.image or (
        settings.llamacpp_image if spec.engine == "llamacpp" else settings.vllm_image
    )
    mounts = model_mounts(spec)
    volumes = list(mounts.volumes)
    volume_mounts = [*mounts.mounts, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    if engine.shared_memory:
        volumes.append(
            {
                "name": SHARED_MEMORY_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": engine.shared_memory},
            }
        )
        volume_mounts.append({"name": SHARED_MEMORY_VOLUME, "mountPath": "/dev/shm"})  # noqa: S108
    container: Obj = {
        "name": sandbox.MODEL_CONTAINER,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": engine.command,
        "args": engine.args,
        "env": [
            *({"name": k, "value": v} for k, v in sorted(engine.env.items())),
            {"name": "HOME", "value": "/tmp"},  # noqa: S108
        ],
        "ports": [
            {
                "name": sandbox.MODEL_PORT_NAME,
                "containerPort": sandbox.MODEL_PORT,
                "protocol": "TCP",
            }
        ],
        "resources": model_resources(spec, engine),
        "startupProbe": health_probe(engine.startup),
        "readinessProbe": health_probe(engine.readiness),
        "livenessProbe": health_probe(engine.liveness),
        "volumeMounts": volume_mounts,
        "securityContext": restricted(sandbox.MODEL_UID),
    }
    fetch = fetch_container(mounts, settings, image)
    return ModelServerParts(container, [fetch] if fetch else [], volumes)


def health_probe(probe: Probe) -> Obj:
    """An httpGet probe of the engine's health route on the model port."""
    return {
        "httpGet": {"path": engines.HEALTH_PATH, "port": sandbox.MODEL_PORT},
        "periodSeconds": probe.period_s,
        "failureThreshold": probe.failure_threshold,
        "timeoutSeconds": probe.timeout_s,
    }


def model_resources(spec: ModelSpec, engine: Engine) -> dict[str, dict[str, str]]:
    """spec.model.resources, with the engine's GPUs as a limit of spec.model.gpuResourceName."""
    requests = {k: str(v) for k, v in spec.resources.requests.items()}
    limits = {k: str(v) for k, v in spec.resources.limits.items()}
    if engine.gpus:
        # Extended resources are requested through limits; requests default to them.
        limits[spec.gpu_resource_name] = str(engine.gpus)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def fetch_container(mounts: ModelMounts, settings: OperatorSettings, image: str) -> Obj | None:
    """An init container that downloads URL models through the vault; None when none are needed."""
    if not mounts.downloads:
        return None
    script = ["set -eu"]
    for url, target in mounts.downloads:
        dest = f"{sandbox.MODELS_DIR}/{target}"
        script.append(f'[ -s "{dest}" ] || curl -fsSL --retry 5 -o "{dest}.part" "{url}"')
        script.append(f'[ -s "{dest}" ] || mv "{dest}.part" "{dest}"')
    proxy = f"http://127.0.0.1:{sandbox.VAULT_PROXY_PORT}"
    return {
        "name": "model-fetch",
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["/bin/sh", "-c", "\n".join(script)],
        "env": [
            {"name": "HTTPS_PROXY", "value": proxy},
            {"name": "CURL_CA_BUNDLE", "value": sandbox.CA_CERT_FILE},
        ],
        "volumeMounts": [
            {"name": MODELS_VOLUME, "mountPath": sandbox.MODELS_DIR},
            {"name": "trust", "mountPath": sandbox.CA_CERT_DIR, "readOnly": True},
        ],
        "securityContext": restricted(sandbox.MODEL_UID),
    }

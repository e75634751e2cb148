"""The model server container (llama-server or vllm serve) and the volumes its models come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from paddock import engines, sandbox
from paddock.api.agent import ModelSpec, ServedModel
from paddock_operator.render.security import restricted
from paddock_operator.settings import OperatorSettings

Obj = dict[str, Any]

MODELS_VOLUME = "models"


@dataclass
class ModelMounts:
    """Volumes and mounts that put each served model under sandbox.MODELS_DIR."""

    volumes: list[Obj] = field(default_factory=list)
    mounts: list[Obj] = field(default_factory=list)
    downloads: list[tuple[str, str]] = field(default_factory=list)
    """(url, file under MODELS_DIR) pairs an init container fetches before the server starts."""


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
        target = _target(spec, model)
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


def _target(spec: ModelSpec, model: ServedModel) -> str:
    # llama-server's router names each model after its file; vllm serves a directory.
    return f"{model.name}.gguf" if spec.engine == "llamacpp" else model.name


def model_container(
    spec: ModelSpec, settings: OperatorSettings, mounts: ModelMounts
) -> tuple[Obj, list[Obj]]:
    """The model server (command, probes, resources from paddock.engines) and the extra volumes it
    needs; only for engines that run in the Pod."""
    engine = engines.render(spec)
    if engine is None:
        raise ValueError(f"engine {spec.engine} runs no model server in the Pod")
    image = spec.image or (
        settings.llamacpp_image if spec.engine == "llamacpp" else settings.vllm_image
    )
    container = engine.container(image)
    container["imagePullPolicy"] = settings.image_pull_policy
    container["ports"] = [{"name": "model", "containerPort": engine.port, "protocol": "TCP"}]
    container["env"].append({"name": "HOME", "value": "/tmp"})  # noqa: S108
    container["volumeMounts"] = [
        *mounts.mounts,
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        *engine.volume_mounts,
    ]
    container["securityContext"] = restricted(sandbox.MODEL_UID)
    return container, engine.volumes


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

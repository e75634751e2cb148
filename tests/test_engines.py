"""The model server container rendered from an Agent: llama-server's router, vllm serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from paddock import engines
from paddock.api.agent import Agent, ModelSpec
from paddock.sandbox import MODEL_NAME_ENV, MODEL_PORT, MODEL_URL_ENV, MODELS_DIR

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> ModelSpec:
    return Agent.model_validate(yaml.safe_load((EXAMPLES / name).read_text())).spec.model


def spec(**fields: Any) -> ModelSpec:
    base: dict[str, Any] = {
        "models": [{"name": "tiny", "source": {"pvc": {"claimName": "m", "path": "t.gguf"}}}],
        "default": "tiny",
    }
    return ModelSpec.model_validate(base | fields)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_llama_server_runs_the_router_over_the_models_directory() -> None:
    container = engines.render(example("llamacpp-agent.yaml"))

    assert container is not None
    assert container.command == ["llama-server"]
    assert flag(container.args, "--models-dir") == MODELS_DIR
    assert flag(container.args, "--port") == str(MODEL_PORT)
    assert flag(container.args, "--host") == "0.0.0.0"  # noqa: S104
    assert "--jinja" in container.args, "tool calls are parsed by the Jinja chat templates"
    assert "--model" not in container.args, "no model on the command line: router mode"
    assert container.args[-2:] == ["--ctx-size", "16384"], "the Agent's own args come last"
    assert container.resources == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    assert "limits" not in container.resources


def test_llama_server_on_gpus_offloads_every_layer() -> None:
    container = engines.llama_server(spec(gpus=2, gpuResourceName="amd.com/gpu"))

    assert flag(container.args, "--n-gpu-layers") == "all"
    assert container.resources == {"limits": {"amd.com/gpu": "2"}}


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_both_engines_are_probed_on_health_at_the_model_port(engine: str) -> None:
    container = engines.render(spec(engine=engine))

    assert container is not None
    for probe in (container.startup_probe, container.readiness_probe, container.liveness_probe):
        assert probe["httpGet"] == {"path": "/health", "port": MODEL_PORT}
    # Loading a model takes longer than a router's start: the startup window says so.
    window = container.startup_probe["periodSeconds"] * container.startup_probe["failureThreshold"]
    assert window >= (1800 if engine == "vllm" else 120)


def test_vllm_serves_the_hugging_face_model_under_its_name_on_one_gpu() -> None:
    container = engines.render(example("vllm-agent.yaml"))

    assert container is not None
    assert container.command == ["vllm", "serve"]
    assert container.args[:3] == ["Qwen/Qwen2.5-Coder-7B-Instruct", "--revision", "main"]
    assert flag(container.args, "--served-model-name") == "qwen2.5-coder-7b"
    assert flag(container.args, "--port") == str(MODEL_PORT)
    assert "--tensor-parallel-size" not in container.args
    assert container.args[-2:] == ["--tool-call-parser", "hermes"]
    assert container.resources["limits"] == {"memory": "32Gi", "nvidia.com/gpu": "1"}
    assert container.volume_mounts == [{"name": "dshm", "mountPath": "/dev/shm"}]  # noqa: S108
    assert container.volumes[0]["emptyDir"]["medium"] == "Memory"


def test_vllm_serves_a_pvc_model_from_the_models_directory_across_gpus() -> None:
    container = engines.vllm(spec(engine="vllm", gpus=4))

    assert container.args[0] == f"{MODELS_DIR}/tiny"
    assert flag(container.args, "--tensor-parallel-size") == "4"
    assert container.resources == {"limits": {"nvidia.com/gpu": "4"}}


def test_an_external_engine_has_no_container_and_its_url_goes_to_the_harness() -> None:
    model = example("external-agent.yaml")

    assert engines.render(model) is None
    assert engines.harness_env(model) == {
        MODEL_URL_ENV: "https://inference.example.com/v1",
        MODEL_NAME_ENV: "qwen2.5-coder-32b",
    }
    assert engines.harness_env(spec())[MODEL_URL_ENV] == f"http://127.0.0.1:{MODEL_PORT}/v1"


def test_the_container_is_a_kubernetes_container() -> None:
    container = engines.llama_server(spec()).container("paddock/llama-server:0.1.0")

    assert container["name"] == "model"
    assert container["ports"] == [{"name": "http", "containerPort": MODEL_PORT, "protocol": "TCP"}]
    assert {"name": "LLAMA_CACHE", "value": engines.LLAMA_CACHE_DIR} in container["env"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"

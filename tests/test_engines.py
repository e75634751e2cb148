"""The model server engines an Agent runs: llama-server's router, vllm serve."""

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
    server = engines.engine_for(example("llamacpp-agent.yaml"))

    assert server is not None
    assert server.command == ["llama-server"]
    assert flag(server.args, "--models-dir") == MODELS_DIR
    assert flag(server.args, "--port") == str(MODEL_PORT)
    assert flag(server.args, "--host") == "0.0.0.0"  # noqa: S104
    assert "--jinja" in server.args, "tool calls are parsed by the Jinja chat templates"
    assert "--model" not in server.args, "no model on the command line: router mode"
    assert server.args[-2:] == ["--ctx-size", "16384"], "the Agent's own args come last"
    assert server.gpus == 0


def test_llama_server_on_gpus_offloads_every_layer() -> None:
    server = engines.llama_server(spec(gpus=2, gpuResourceName="amd.com/gpu"))

    assert flag(server.args, "--n-gpu-layers") == "all"
    assert server.gpus == 2


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_both_engines_allow_for_their_start_before_the_probes_give_up(engine: str) -> None:
    server = engines.engine_for(spec(engine=engine))

    assert server is not None
    # Loading a model takes longer than a router's start: the startup window says so.
    window = server.startup.period_s * server.startup.failure_threshold
    assert window >= (1800 if engine == "vllm" else 120)


def test_vllm_serves_the_hugging_face_model_under_its_name_on_one_gpu() -> None:
    server = engines.engine_for(example("vllm-agent.yaml"))

    assert server is not None
    assert server.command == ["vllm", "serve"]
    assert server.args[:3] == ["Qwen/Qwen2.5-Coder-7B-Instruct", "--revision", "main"]
    assert flag(server.args, "--served-model-name") == "qwen2.5-coder-7b"
    assert flag(server.args, "--port") == str(MODEL_PORT)
    assert "--tensor-parallel-size" not in server.args
    assert server.args[-2:] == ["--tool-call-parser", "hermes"]
    assert server.gpus == 1
    assert server.shared_memory == "2Gi"


def test_vllm_serves_a_pvc_model_from_the_models_directory_across_gpus() -> None:
    server = engines.vllm(spec(engine="vllm", gpus=4))

    assert server.args[0] == f"{MODELS_DIR}/tiny"
    assert flag(server.args, "--tensor-parallel-size") == "4"
    assert server.gpus == 4


def test_an_external_engine_has_no_container_and_its_url_goes_to_the_harness() -> None:
    model = example("external-agent.yaml")

    assert engines.engine_for(model) is None
    assert engines.harness_env(model) == {
        MODEL_URL_ENV: "https://inference.example.com/v1",
        MODEL_NAME_ENV: "qwen2.5-coder-32b",
    }
    assert engines.harness_env(spec())[MODEL_URL_ENV] == f"http://127.0.0.1:{MODEL_PORT}/v1"

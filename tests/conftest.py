"""Fixtures shared by every tier: repository paths, a real kube-apiserver, a real llama-server."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paddock.models.tiny import write_tiny_llama
from paddock_testing.apiserver import ApiServer, KubeBinaries
from paddock_testing.leaks import dropping_leftovers
from paddock_testing.llamaserver import LlamaServer, LlamaServerError, llama_server_binary
from paddock_testing.proc import script_exports
from paddock_testing.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "charts" / "paddock" / "crds"
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session", autouse=True)
def _in_process_operators_leftovers() -> Iterator[None]:
    """Drop only what an in-process operator leaves connected when it stops (paddock_testing.
    leaks); every other unraisable exception still fails the test it shows up in."""
    with dropping_leftovers():
        yield


@pytest.fixture(scope="module", autouse=True)
def _collect_what_the_module_left() -> Iterator[None]:
    """Collect garbage at the end of each module, so that something a module left unclosed (a
    socket held by a reference cycle) is reported as that module's ResourceWarning, not as an
    unraisable exception in whichever later test the collector happened to run."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def kube_tools() -> dict[str, str]:
    """PADDOCK_* paths of etcd, kube-apiserver, controller-manager, kubectl and helm.

    From the environment (`make test` exports them), else from hack/kube-binaries.sh, which
    builds whatever is missing once per machine.
    """
    if all(os.environ.get(name) for name in (*KubeBinaries.ENV, "PADDOCK_HELM")):
        return dict(os.environ)
    return script_exports(REPO / "hack" / "kube-binaries.sh")


@pytest.fixture(scope="session")
def kube_binaries(kube_tools: dict[str, str]) -> KubeBinaries:
    """etcd, kube-apiserver, kube-controller-manager and kubectl."""
    return KubeBinaries.from_env(kube_tools)


@pytest.fixture(scope="session")
def helm(kube_tools: dict[str, str]) -> str:
    """The helm binary built from its Go module."""
    return kube_tools["PADDOCK_HELM"]


@pytest.fixture(scope="session")
def apiserver(
    kube_binaries: KubeBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A real etcd + kube-apiserver with the chart's CRDs installed and established."""
    with ApiServer(kube_binaries, tmp_path_factory.mktemp("apiserver"), crds=[CRDS]) as server:
        yield server


@pytest.fixture
def namespace(apiserver: ApiServer) -> str:
    """A fresh namespace for one test (never deleted: no namespace controller runs)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    apiserver.kubectl("create", "namespace", name)

    def has_service_account() -> bool:
        apiserver.check_alive()
        return apiserver.kubectl("-n", name, "get", "sa", "default", check=False).returncode == 0

    # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    wait_for(has_service_account, f"namespace {name}'s default ServiceAccount", every=0.1)
    return name


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def llama_server_path() -> Path:
    """llama-server: from PADDOCK_LLAMA_SERVER, else built (once) by hack/llama-server.sh."""
    try:
        return llama_server_binary()
    except LlamaServerError:
        return llama_server_binary(script_exports(REPO / "hack" / "llama-server.sh"))


TINY_MODELS = {"tiny-a": 1, "tiny-b": 2}
"""The generated models the shared llama-server offers: name -> seed."""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding tiny random-weight GGUFs (TINY_MODELS)."""
    models = tmp_path_factory.mktemp("models")
    for name, seed in TINY_MODELS.items():
        write_tiny_llama(models / f"{name}.gguf", seed=seed)
    return models


@pytest.fixture(scope="session")
def llama_server(
    llama_server_path: Path, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """One real llama-server in router mode over tiny_models, shared by the whole run."""
    # One slot per model instance: the tiny models need no parallelism, the 2-core machines do.
    extra = ["--parallel", "1"]
    with LlamaServer(llama_server_path, tiny_models, tmp_path_factory.mktemp("llama"), extra) as s:
        yield s

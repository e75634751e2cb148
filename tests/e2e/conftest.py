"""Tier 4 fixtures: the kind cluster with paddock installed (kind/up.sh), fresh namespaces."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from paddock_testing.kind import CLUSTER, REPO, Kind


@pytest.fixture(scope="session")
def kind(kube_tools: dict[str, str]) -> Kind:
    """The kind cluster with paddock installed and the example Agent Ready (kind/up.sh)."""
    env = {**os.environ, **kube_tools, "CLUSTER": CLUSTER}
    done = subprocess.run(
        [str(REPO / "kind" / "up.sh")], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=3600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"kind/up.sh failed ({done.returncode}):\n{done.stderr[-6000:]}")
    return Kind(kube_tools["PADDOCK_KUBECTL"], kube_tools["PADDOCK_HELM"], f"kind-{CLUSTER}")


@pytest.fixture
def namespace(kind: Kind) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kind.kubectl("create", "namespace", name)
    yield name
    kind.kubectl("delete", "namespace", name, "--wait=false", check=False)

"""The operator running against the real API server, and a kubelet played by the tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from kopf.testing import KopfRunner

from paddock_testing.apiserver import ApiServer
from paddock_testing.cluster import Cluster
from paddock_testing.leaks import tolerate_leftovers_on
from paddock_testing.proc import free_port


@pytest.fixture(scope="module")
def operator(apiserver: ApiServer) -> Iterator[KopfRunner]:
    """The operator, in this process, watching every namespace of the test API server."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", str(apiserver.kubeconfig))
        env.setenv("PADDOCK_OPERATOR_RETRY_DELAY", "1")
        env.setenv("PADDOCK_OPERATOR_METRICS_HOST", "127.0.0.1")
        metrics_port = free_port()
        env.setenv("PADDOCK_OPERATOR_METRICS_PORT", str(metrics_port))
        tolerate_leftovers_on(apiserver.port, metrics_port)
        args = ["run", "--all-namespaces", "--standalone", "-m", "paddock_operator.handlers"]
        with KopfRunner(args, timeout=60) as runner:
            yield runner
    gc.collect()  # now, while the leftovers it names are known to be the operator's
    assert runner.exit_code == 0, runner.output


@pytest.fixture
def cluster(apiserver: ApiServer, namespace: str) -> Cluster:
    """kubectl for a fresh namespace."""
    return Cluster(apiserver, namespace)

"""A cluster admin opens internal networks and an upstream CA: the sandboxes roll into them."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kopf.testing import KopfRunner

from paddock import pki, sandbox
from paddock_testing.apiserver import ApiServer
from paddock_testing.cluster import Cluster, wait_for
from paddock_testing.leaks import tolerate_leftovers_on

pytestmark = pytest.mark.apiserver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamacpp-agent.yaml"
REAL = "ghp_REAL_github_value_7f3a"
INTERNAL_CA = pki.new_ca("internal CA").cert_pem.decode()


@contextmanager
def operator(apiserver: ApiServer, namespace: str, **settings: str) -> Iterator[KopfRunner]:
    """The operator with PADDOCK_OPERATOR_<name> settings, watching one namespace."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", str(apiserver.kubeconfig))
        env.setenv("PADDOCK_OPERATOR_RETRY_DELAY", "1")
        for name, value in settings.items():
            env.setenv(f"PADDOCK_OPERATOR_{name.upper()}", value)
        args = [
            "run",
            f"--namespace={namespace}",
            "--standalone",
            "-m",
            "paddock_operator.handlers",
        ]
        tolerate_leftovers_on(apiserver.port)
        with KopfRunner(args, timeout=60) as runner:
            yield runner
    gc.collect()  # now, while the leftovers it names are known to be the operator's
    assert runner.exit_code == 0, runner.output


def test_opening_a_network_rolls_the_sandboxes_into_it(
    apiserver: ApiServer, namespace: str
) -> None:
    cluster = Cluster(apiserver, namespace)
    agent = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d)
    name = agent["metadata"]["name"]
    cluster.apply(cluster.secret("github", token=REAL), agent)
    with operator(apiserver, namespace):
        before = cluster.wait_pod(name)
        cluster.play_kubelet(name)
        wait_for(lambda: cluster.agent_status(name).get("phase") == "Ready", f"{name} Ready")

    opened = {"internal_networks": '["10.96.0.200/29"]', "upstream_ca_bundle": INTERNAL_CA}
    with operator(apiserver, namespace, **opened):
        after = cluster.wait_pod(name, other_than=before["metadata"]["uid"])
        vault = next(
            c for c in after["spec"]["initContainers"] if c["name"] == sandbox.VAULT_CONTAINER
        )
        env = {e["name"]: e["value"] for e in vault["env"]}
        assert json.loads(env["PADDOCK_VAULT_INTERNAL_NETWORKS"]) == ["10.96.0.200/29"]
        (ca_file,) = json.loads(env["PADDOCK_VAULT_UPSTREAM_CA_FILES"])
        wait_for(
            lambda: (
                (cluster.get("configmap", f"{name}-vault") or {})["data"].get(Path(ca_file).name)
                == INTERNAL_CA
            ),
            "the internal CA in the vault's ConfigMap",
        )
        policy = cluster.get("networkpolicy", f"{name}-sandbox")
        assert policy is not None
        assert {"to": [{"ipBlock": {"cidr": "10.96.0.200/29"}}]} in policy["spec"]["egress"]
        cluster.play_kubelet(name)
        wait_for(lambda: cluster.agent_status(name).get("phase") == "Ready", f"{name} Ready")
        harness = next(c for c in after["spec"]["containers"] if c["name"] == "harness")
        assert all(m["name"] != "upstream-ca" for m in harness["volumeMounts"])

"""What `helm template` makes of the chart and a user's values (helm's output is a pure function
of the values, so these are unit tests of the chart)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from paddock import pki
from paddock.api.agent import AgentSpec
from paddock.cli import parser
from paddock_gateway.settings import GatewaySettings
from paddock_operator.names import AgentRef
from paddock_operator.render import objects
from paddock_operator.render.pod import pod
from paddock_operator.settings import OperatorSettings
from paddock_operator.stubs import reconcile_stubs
from paddock_testing.agents import minimal_agent

pytestmark = pytest.mark.unit

EXTERNAL = {"redis": {"enabled": False, "external": {"url": "redis://:pw@redis.example:6380/2"}}}


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def gateway_settings(rendered: Any, monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    """What the gateway the chart rendered would read from its environment."""
    (gateway,) = rendered.find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    for name, value in rendered.env(gateway).items():
        monkeypatch.setenv(name, value)
    return GatewaySettings(kube_url="https://kubernetes.default.svc")


def test_every_container_is_non_root_with_no_capabilities_and_a_read_only_root(chart: Any) -> None:
    specs = dict(chart.render().pod_specs())
    # The CNI installer is root, to write the node's CNI directories (tests/charts/test_cni.py).
    del specs["DaemonSet/paddock-cni"]
    assert set(specs) == {
        "Deployment/paddock-operator",
        "Deployment/paddock-gateway",
        "StatefulSet/paddock-redis",
        "Pod/paddock-test",
    }
    for where, spec in specs.items():
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, where
        assert pod_context["runAsUser"] > 0, where
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where
    # Only the two that call the API server get a token.
    for where in ("StatefulSet/paddock-redis", "Pod/paddock-test"):
        assert specs[where]["automountServiceAccountToken"] is False, where
    assert specs["Deployment/paddock-gateway"]["securityContext"]["runAsUser"] == 10002
    assert specs["StatefulSet/paddock-redis"]["securityContext"]["runAsUser"] == 999


def test_gateway_runs_paddock_gateway_with_probes_on_its_health_endpoints(chart: Any) -> None:
    service_values = {"type": "NodePort", "nodePort": 30080}
    rendered = chart.render({"gateway": {"replicas": 3, "service": service_values}})
    deployment = rendered.find("Deployment", "gateway")
    assert deployment["spec"]["replicas"] == 3
    spec = deployment["spec"]["template"]["spec"]
    (gateway,) = spec["containers"]
    assert gateway["image"] == "paddock/gateway:0.1.0"
    assert gateway["args"] == ["gateway"]
    assert gateway["ports"] == [{"name": "http", "containerPort": 8000}]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert (
        spec["serviceAccountName"] == rendered.find("ServiceAccount", "gateway")["metadata"]["name"]
    )
    service = rendered.find("Service", "gateway")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "nodePort": 30080}
    ]
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_gateway_environment_is_accepted_by_the_gateways_own_settings(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {
        "tokenAudiences": ["paddock"],
        "authCacheSeconds": 2.5,
        "maxEventsPerSession": 5_000_000,  # helm's numbers are floats: this must not be 5e+06
        "sessionIdleSeconds": 86400,
        "restartTimeoutSeconds": 60,
        "leaseSeconds": 1,
    }
    rendered = chart.render({"gateway": {"settings": settings}})
    parsed = gateway_settings(rendered, monkeypatch)
    assert parsed.token_audiences == ["paddock"]
    assert parsed.auth_cache_seconds == 2.5
    assert parsed.max_events_per_session == 5_000_000
    assert parsed.session_idle_seconds == 86400
    assert parsed.restart_timeout_seconds == 60
    assert parsed.lease_seconds == 1
    password = rendered.find("Secret", "redis")["stringData"]["password"]
    assert parsed.redis_url == f"redis://:{password}@paddock-redis.paddock-system.svc:6379/0"


def test_chart_defaults_are_the_gateways_defaults(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaving gateway.settings alone changes nothing in the gateway's behaviour."""
    defaults = GatewaySettings(kube_url="https://kubernetes.default.svc")
    rendered = gateway_settings(chart.render(), monkeypatch)
    assert rendered.model_copy(update={"redis_url": defaults.redis_url}) == defaults


def test_external_redis_url_replaces_the_statefulset_and_reaches_the_gateway(chart: Any) -> None:
    rendered = chart.render(EXTERNAL)
    assert not rendered.all("StatefulSet")
    assert [s["metadata"]["name"] for s in rendered.all("Service")] == ["paddock-gateway"]
    (gateway,) = rendered.find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    assert (
        rendered.env(gateway)["PADDOCK_GATEWAY_REDIS_URL"] == EXTERNAL["redis"]["external"]["url"]
    )
    assert "redis://:pw@" not in yaml.safe_dump(gateway), "the URL's password is in a Secret"
    policy = rendered.find("NetworkPolicy", "gateway")
    assert {"ports": [{"protocol": "TCP", "port": 6380}]} in policy["spec"]["egress"]
    assert [p["metadata"]["name"] for p in rendered.all("NetworkPolicy")] == [
        "paddock-operator",
        "paddock-gateway",
    ]


def test_external_redis_from_an_existing_secret(chart: Any) -> None:
    values = {
        "redis": {
            "enabled": False,
            "external": {"existingSecret": {"name": "my-redis", "key": "uri"}, "port": 6390},
        }
    }
    rendered = chart.render(values)
    assert not rendered.all("Secret")
    (gateway,) = rendered.find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    url = next(e for e in gateway["env"] if e["name"] == "PADDOCK_GATEWAY_REDIS_URL")
    assert url["valueFrom"] == {"secretKeyRef": {"name": "my-redis", "key": "uri"}}
    policy = rendered.find("NetworkPolicy", "gateway")
    assert {"ports": [{"protocol": "TCP", "port": 6390}]} in policy["spec"]["egress"]


def test_redis_keeps_an_append_only_file_on_a_claim_it_keeps(chart: Any) -> None:
    values = {"redis": {"persistence": {"size": "5Gi", "storageClass": "fast"}}}
    statefulset = chart.render(values).find("StatefulSet", "redis")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    config = chart.render().find("ConfigMap", "redis")["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in config
    assert "appendfsync everysec" in config
    assert "dir /data" in config
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in mounts

    dropped = {"redis": {"persistence": {"keepOnUninstall": False}}}
    policy = chart.render(dropped).find("StatefulSet", "redis")["spec"]
    assert policy["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    ephemeral = chart.render({"redis": {"persistence": {"enabled": False}}})
    spec = ephemeral.find("StatefulSet", "redis")["spec"]
    assert "volumeClaimTemplates" not in spec
    assert {"name": "data", "emptyDir": {}} in spec["template"]["spec"]["volumes"]


def test_redis_password_is_only_in_the_secret(chart: Any) -> None:
    rendered = chart.render()
    secret = rendered.find("Secret", "redis")["stringData"]
    assert len(secret["password"]) == 32
    assert secret["auth.conf"] == f"requirepass {secret['password']}\n"
    assert secret["password"] not in yaml.safe_dump_all(
        [o for o in rendered if o["kind"] != "Secret"]
    )
    open_redis = chart.render({"redis": {"auth": {"enabled": False}}}).find("Secret", "redis")
    assert open_redis["stringData"]["auth.conf"] == ""
    assert open_redis["stringData"]["url"] == "redis://paddock-redis.paddock-system.svc:6379/0"


def test_operator_gets_the_sandbox_images_and_their_pull_policy(chart: Any) -> None:
    values = {
        "operator": {
            "sandboxImagePullPolicy": "Never",
            "sandboxImages": {"llamacpp": "registry.example/llama:1", "vault": "v:2"},
        }
    }
    rendered = chart.render(values, namespace="agents-system")
    (operator,) = rendered.find("Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    env = rendered.env(operator)
    assert all(name.startswith("PADDOCK_OPERATOR_") for name in env), env
    settings = OperatorSettings.model_validate(
        {k.removeprefix("PADDOCK_OPERATOR_").lower(): v for k, v in env.items()}
    )
    assert settings.image_pull_policy == "Never"
    assert settings.llamacpp_image == "registry.example/llama:1"
    assert settings.vault_image == "v:2"
    assert settings.vllm_image == "vllm/vllm-openai:v0.11.0"
    assert settings.system_namespace == "agents-system"


def test_operator_opens_the_internal_networks_and_cas_it_is_given(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = pki.new_ca("internal CA").cert_pem.decode()
    values = {
        "operator": {
            "sandboxInternalNetworks": ["10.20.0.0/16", "fd12:3456::/48"],
            "sandboxUpstreamCABundle": bundle,
        }
    }
    rendered = chart.render(values)
    (operator,) = rendered.find("Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    for name, value in rendered.env(operator).items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()  # what the operator reads from that environment
    assert [str(n) for n in settings.internal_networks] == ["10.20.0.0/16", "fd12:3456::/48"]
    assert settings.upstream_ca_bundle == bundle
    defaults = chart.render()
    (operator,) = defaults.find("Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    assert "PADDOCK_OPERATOR_INTERNAL_NETWORKS" not in defaults.env(operator)
    with_key = {"operator": {"sandboxUpstreamCABundle": bundle + pki.new_ca("x").key_pem.decode()}}
    with pytest.raises(chart.Error, match="sandboxUpstreamCABundle holds a private key"):
        chart.render(with_key)


def sandbox_pod(settings: OperatorSettings) -> dict[str, Any]:
    """The Pod the operator renders for a minimal Agent."""
    spec = AgentSpec.model_validate(minimal_agent("coder")["spec"])
    return pod(AgentRef("coder", "team-a", "uid-1"), spec, settings, reconcile_stubs(spec, {}))


def test_operator_metrics_are_announced_and_reachable_only_from_who_is_named(chart: Any) -> None:
    rendered = chart.render()
    template = rendered.find("Deployment", "operator")["spec"]["template"]
    (operator,) = template["spec"]["containers"]
    port = next(p["containerPort"] for p in operator["ports"] if p["name"] == "metrics")
    settings = OperatorSettings.model_validate(
        {k.removeprefix("PADDOCK_OPERATOR_").lower(): v for k, v in rendered.env(operator).items()}
    )
    assert port == settings.metrics_port  # the port the operator listens on
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert rendered.find("NetworkPolicy", "operator")["spec"]["ingress"] == []
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    opened = chart.render({"networkPolicy": {"operator": {"metricsFrom": [prometheus]}}})
    (rule,) = opened.find("NetworkPolicy", "operator")["spec"]["ingress"]
    assert rule == {"from": [prometheus], "ports": [{"protocol": "TCP", "port": port}]}


def test_gateway_metrics_are_announced_on_the_port_it_serves_them_and_its_clients_reach(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = chart.render()
    template = rendered.find("Deployment", "gateway")["spec"]["template"]
    (gateway,) = template["spec"]["containers"]
    (port,) = [p["containerPort"] for p in gateway["ports"] if p["name"] == "http"]
    settings = gateway_settings(rendered, monkeypatch)
    assert (settings.port, settings.metrics) == (port, True)  # served there, and on
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # The API's port: open to everyone by default, so to a scraper too ...
    (rule,) = rendered.find("NetworkPolicy", "gateway")["spec"]["ingress"]
    assert rule == {"ports": [{"protocol": "TCP", "port": port}]}
    # ... and, once narrowed, to whom ingressFrom names (your Prometheus among them).
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    narrowed = chart.render({"networkPolicy": {"gateway": {"ingressFrom": [prometheus]}}})
    (rule,) = narrowed.find("NetworkPolicy", "gateway")["spec"]["ingress"]
    assert prometheus in rule["from"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]


def test_network_policies_let_each_component_reach_only_its_peers(chart: Any) -> None:
    rendered = chart.render()
    labels = rendered.pod_labels()
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.all("NetworkPolicy")}
    for name, policy in policies.items():
        assert policy["policyTypes"] == ["Ingress", "Egress"], name
        assert chart.selects(policy["podSelector"], labels[name]), name
    api_server = {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
    }
    dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}

    operator = policies["paddock-operator"]
    assert operator["ingress"] == []
    assert operator["egress"] == [dns, api_server]

    redis = policies["paddock-redis"]
    assert redis["egress"] == []
    (allowed,) = redis["ingress"]
    assert allowed["ports"] == [{"protocol": "TCP", "port": 6379}]
    reach_redis = {
        name for name, pod_labels in labels.items()
        if any(chart.selects(peer["podSelector"], pod_labels) for peer in allowed["from"])
    }  # fmt: skip
    assert reach_redis == {"paddock-gateway", "paddock-test"}

    gateway = policies["paddock-gateway"]
    assert gateway["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8000}]}]
    assert gateway["egress"][:2] == [dns, api_server]
    # The runner port of the very Pod the operator renders for an Agent, in any namespace.
    sandbox = sandbox_pod(OperatorSettings())
    runner_rule = next(
        r for r in gateway["egress"] if {"protocol": "TCP", "port": 7000} in r.get("ports", [])
    )
    (peer,) = runner_rule["to"]
    assert peer["namespaceSelector"] == {}
    assert chart.selects(peer["podSelector"], sandbox["metadata"]["labels"])
    redis_rule = next(
        r for r in gateway["egress"] if {"protocol": "TCP", "port": 6379} in r.get("ports", [])
    )
    assert chart.selects(redis_rule["to"][0]["podSelector"], labels["paddock-redis"])


def test_sandbox_policy_the_operator_writes_admits_the_charts_gateway(chart: Any) -> None:
    """The operator's own NetworkPolicy for each sandbox selects the gateway Pods of this chart."""
    rendered = chart.render(namespace="paddock-prod")
    (operator,) = rendered.find("Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    env = rendered.env(operator)
    settings = OperatorSettings(system_namespace=env["PADDOCK_OPERATOR_SYSTEM_NAMESPACE"])
    policy = objects.network_policy(AgentRef("coder", "team-a", "uid-1"), settings)
    gateway_labels = rendered.pod_labels()["paddock-gateway"]
    namespace_labels = {"kubernetes.io/metadata.name": "paddock-prod"}
    (rule,) = policy["spec"]["ingress"]
    assert any(
        chart.selects(peer["namespaceSelector"], namespace_labels)
        and chart.selects(peer["podSelector"], gateway_labels)
        for peer in rule["from"]
    )


def test_gateway_ingress_can_be_narrowed_and_network_policies_turned_off(chart: Any) -> None:
    only_ingress = [{"namespaceSelector": {"matchLabels": {"team": "edge"}}}]
    values = {"networkPolicy": {"gateway": {"ingressFrom": only_ingress}}}
    (rule,) = chart.render(values).find("NetworkPolicy", "gateway")["spec"]["ingress"]
    assert rule["from"][0] == only_ingress[0]
    test_pod = chart.render(values).find("Pod", "test")["metadata"]["labels"]
    assert any(
        chart.selects(peer.get("podSelector", {"matchLabels": {"x": "never"}}), test_pod)
        for peer in rule["from"]
    )
    assert not chart.render({"networkPolicy": {"enabled": False}}).all("NetworkPolicy")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"gateway": {"replicas": -1}}, "/gateway/replicas"),
        ({"gateway": {"replica": 2}}, "'replica'"),
        ({"redis": {"persistance": {"size": "1Gi"}}}, "'persistance'"),
        ({"redis": {"persistence": {"size": "lots"}}}, "/redis/persistence/size"),
        ({"operator": {"sandboxImagePullPolicy": "Sometimes"}}, "/operator/sandboxImagePullPolicy"),
        (
            {"operator": {"sandboxInternalNetworks": ["github.internal"]}},
            "/operator/sandboxInternalNetworks/0",
        ),
        (
            {"operator": {"sandboxUpstreamCABundle": "/etc/ssl/internal-ca.pem"}},
            "/operator/sandboxUpstreamCABundle",
        ),
        (
            {"gateway": {"settings": {"sessionIdleSeconds": 10}}},
            "/gateway/settings/sessionIdleSeconds",
        ),
        ({"gateway": {"settings": {"sessionIdle": 600}}}, "'sessionIdle'"),
        ({"gateway": {"service": {"type": "Ingress"}}}, "/gateway/service/type"),
        ({"redis": {"external": {"url": "http://redis:6379"}}}, "/redis/external/url"),
        ({"redis": {"enabled": False}}, "redis.external.url or redis.external.existingSecret.name"),
    ],
)
def test_bad_values_are_refused_naming_the_field(chart: Any, values: Any, named: str) -> None:
    with pytest.raises(chart.Error) as refused:
        chart.render(values)
    assert named in str(refused.value)


def test_notes_tell_the_next_commands_and_they_parse(chart: Any) -> None:
    notes = chart.notes(namespace="paddock-system")
    lines = [line.strip() for line in notes.splitlines()]
    assert "kubectl get agents -w" in lines
    assert "helm test paddock -n paddock-system" in lines
    forward = next(line for line in lines if "port-forward" in line)
    service = chart.render().find("Service", "gateway")["metadata"]["name"]
    assert f"svc/{service} 8000:8000" in forward
    chat = next(line for line in lines if line.startswith("paddock chat"))
    args = parser().parse_args(shlex.split(chat)[1:])
    assert args.agent == "coder"
    assert args.gateway == ["http://localhost:8000"]
    # The shell expands it when the user runs the line.
    assert args.token == "$(kubectl create token alice)"  # noqa: S105 - not a secret

    node_port = chart.notes({"gateway": {"service": {"type": "NodePort"}}})
    assert "port-forward" not in node_port
    assert "node port" in node_port


def test_gateway_settings_schema_bounds_match_the_gateway(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lowest value the chart accepts, the gateway accepts too."""
    lowest = {
        "authCacheSeconds": 0,
        "maxEventsPerSession": 100,
        "sessionIdleSeconds": 60,
        "restartTimeoutSeconds": 0.1,
        "leaseSeconds": 1,
    }
    settings = gateway_settings(chart.render({"gateway": {"settings": lowest}}), monkeypatch)
    assert settings.max_events_per_session == 100
    for field, below in [("session_idle_seconds", 59), ("max_events_per_session", 99)]:
        with pytest.raises(ValidationError):
            GatewaySettings.model_validate({**settings.model_dump(), field: below})

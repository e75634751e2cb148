"""paddock-netpol's compiler: NetworkPolicy semantics into iptables rules (pure logic).

The enforcement itself is proven on the kind cluster (tests/e2e); these pin the API's rules that
are easy to get wrong: which Pods a policy isolates, defaulted policyTypes, namespace and pod
selectors together, ipBlock excepts, named ports.
"""

from __future__ import annotations

from typing import Any

import pytest
from paddock_netpol import Compiler, Ruleset, policy_types, selects

pytestmark = pytest.mark.unit

NODE = "node-a"


def pod(
    name: str,
    ip: str,
    labels: dict[str, str],
    *,
    ns: str = "default",
    node: str = NODE,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def policy(name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def compile_(pods: list[dict[str, Any]], policies: list[dict[str, Any]]) -> Ruleset:
    namespaces = [namespace("default"), namespace("other", team="x")]
    return Compiler(NODE, pods, namespaces, policies).compile()


def chain_rules(rules: Ruleset, prefix: str) -> list[str]:
    return [line for line in rules.filter_lines if line.startswith(f"-A {prefix}")]


def test_selector_operators() -> None:
    labels = {"app": "web", "tier": "front"}
    assert selects({}, labels)
    assert not selects(None, labels)
    assert selects({"matchLabels": {"app": "web"}}, labels)
    assert not selects({"matchLabels": {"app": "db"}}, labels)
    expr = {"key": "tier", "operator": "In", "values": ["front", "back"]}
    assert selects({"matchExpressions": [expr]}, labels)
    assert not selects({"matchExpressions": [{**expr, "operator": "NotIn"}]}, labels)
    assert selects(
        {"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1"]}]}, labels
    )
    assert selects({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels)


def test_policy_types_default_from_the_rules() -> None:
    assert policy_types(policy("p", {"podSelector": {}})) == {"Ingress"}
    assert policy_types(policy("p", {"podSelector": {}, "egress": [{}]})) == {"Ingress", "Egress"}
    assert policy_types(policy("p", {"podSelector": {}, "policyTypes": ["Egress"]})) == {"Egress"}


def test_unselected_pods_are_not_isolated() -> None:
    rules = compile_(
        [pod("web", "10.0.0.2", {"app": "web"})],
        [policy("db-only", {"podSelector": {"matchLabels": {"app": "db"}}})],
    )
    assert rules.chains == []


def test_ingress_deny_all_rejects_everything_to_the_pod() -> None:
    rules = compile_(
        [pod("web", "10.0.0.2", {"app": "web"})], [policy("deny", {"podSelector": {}})]
    )
    (chain,) = rules.chains
    assert chain.startswith("PNP-I-")
    assert f"-A PADDOCK-NETPOL -d 10.0.0.2/32 -j {chain}" in rules.filter_lines
    assert chain_rules(rules, chain) == [
        f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {chain} -j REJECT",
    ]


def test_pods_on_other_nodes_get_no_chain_but_count_as_peers() -> None:
    web = pod("web", "10.0.0.2", {"app": "web"})
    client = pod("client", "10.0.1.5", {"role": "client"}, node="node-b")
    spec = {
        "podSelector": {},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
    }
    rules = compile_([web, client], [policy("from-clients", spec)])
    assert len(rules.chains) == 1
    (members,) = [entries for kind, entries in rules.sets.values() if kind == "hash:ip"]
    assert members == ["10.0.1.5"]


def test_namespace_and_pod_selector_in_one_peer_mean_both() -> None:
    target = pod("api", "10.0.0.2", {"app": "api"})
    peers = [
        pod("a", "10.0.0.10", {"role": "client"}, ns="other"),  # both match
        pod("b", "10.0.0.11", {"role": "other"}, ns="other"),  # wrong labels
        pod("c", "10.0.0.12", {"role": "client"}, ns="default"),  # wrong namespace
    ]
    peer = {
        "namespaceSelector": {"matchLabels": {"team": "x"}},
        "podSelector": {"matchLabels": {"role": "client"}},
    }
    spec = {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [peer]}]}
    rules = compile_([target, *peers], [policy("p", spec)])
    assert [entries for _, entries in rules.sets.values()] == [["10.0.0.10"]]


def test_pod_selector_alone_means_the_policys_namespace() -> None:
    target = pod("api", "10.0.0.2", {"app": "api"})
    same = pod("c", "10.0.0.12", {"role": "client"})
    elsewhere = pod("a", "10.0.0.10", {"role": "client"}, ns="other")
    spec = {
        "podSelector": {},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
    }
    rules = compile_([target, same, elsewhere], [policy("p", spec)])
    assert ["10.0.0.12"] in [entries for _, entries in rules.sets.values()]
    assert ["10.0.0.10"] not in [entries for _, entries in rules.sets.values()]


def test_ip_block_excepts_are_nomatch_entries_and_slash_zero_is_split() -> None:
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": "0.0.0.0/0",
                            "except": ["10.0.0.0/8", "169.254.169.254/32"],
                        }
                    }
                ]
            }
        ],
    }
    rules = compile_([pod("sandbox", "10.0.0.2", {})], [policy("public", spec)])
    ((kind, entries),) = rules.sets.values()
    assert kind == "hash:net"
    assert entries == sorted(
        ["0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8 nomatch", "169.254.169.254/32 nomatch"]
    )
    (chain,) = rules.chains
    assert chain.startswith("PNP-E-")
    # Egress is checked on the way out (FORWARD) and towards the node itself (INPUT).
    assert f"-A PADDOCK-NETPOL -s 10.0.0.2/32 -j {chain}" in rules.filter_lines
    assert f"-A PADDOCK-NETPOL-INPUT -s 10.0.0.2/32 -j {chain}" in rules.filter_lines


def test_ports_ranges_and_named_ports() -> None:
    target = pod("web", "10.0.0.2", {"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
    spec = {
        "podSelector": {},
        "ingress": [
            {
                "ports": [
                    {"port": "http"},
                    {"protocol": "UDP", "port": 5000, "endPort": 5010},
                    {"port": "missing"},
                ]
            }
        ],
    }
    rules = compile_([target], [policy("p", spec)])
    (chain,) = rules.chains
    allowed = [line for line in chain_rules(rules, chain) if line.endswith("RETURN")]
    assert allowed == [
        f"-A {chain} -p tcp -m tcp --dport 8080 -j RETURN",
        f"-A {chain} -p udp -m udp --dport 5000:5010 -j RETURN",
    ]


def test_a_rule_with_no_peers_and_no_ports_allows_everything() -> None:
    rules = compile_(
        [pod("web", "10.0.0.2", {})], [policy("all", {"podSelector": {}, "ingress": [{}]})]
    )
    (chain,) = rules.chains
    assert chain_rules(rules, chain)[0] == f"-A {chain} -j RETURN"


def test_host_network_and_finished_pods_are_ignored() -> None:
    host = pod("kubelet-ish", "172.18.0.2", {})
    host["spec"]["hostNetwork"] = True
    done = pod("job", "10.0.0.9", {})
    done["status"]["phase"] = "Succeeded"
    rules = compile_([host, done], [policy("deny", {"podSelector": {}})])
    assert rules.chains == []

"""The CRD the chart ships is the one the models generate, and Kubernetes can take it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from paddock.api import agent, crd

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "paddock" / "crds" / crd.CRD_FILE


def test_chart_crd_is_generated_from_the_models() -> None:
    assert CHART_CRD.read_text() == crd.render(), "the chart's CRD is stale: run `make crds`"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


def test_schema_is_structural() -> None:
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(schema):
        assert "$ref" not in node, path
        assert "$defs" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node, path
            assert "allOf" not in node, path
            assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path


def test_every_spec_field_is_described_for_kubectl_explain() -> None:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    undocumented = [path for path, node in _nodes(spec, "spec") if not node.get("description")]
    # Items of plain lists and maps describe themselves through their parent.
    undocumented = [p for p in undocumented if not p.endswith(("[]", ".*"))]
    assert undocumented == []


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_examples_parse_into_the_models(example: str) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / example).read_text()) if d]
    agents = [agent.Agent.model_validate(d) for d in docs if d["kind"] == "Agent"]
    assert len(agents) == 1
    again = agent.Agent.model_validate(agents[0].model_dump(by_alias=True))
    assert again == agents[0]


LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")


@given(labels=st.lists(LABEL, min_size=1, max_size=4), wildcard=st.booleans())
def test_host_patterns_that_name_hosts_are_accepted(labels: list[str], wildcard: bool) -> None:
    host = ("*." if wildcard else "") + ".".join(labels + (["com"] if wildcard else []))
    egress = agent.Egress(allow=[host])
    assert egress.allow == [host]


@pytest.mark.parametrize(
    "host",
    ["*", "*.com", "http://x", "api.github.com:443", "API.github.com", "a/b", "", "-a.com", "a..b"],
)
def test_host_patterns_that_do_not_name_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="allow"):
        agent.Egress(allow=[host])


@pytest.mark.parametrize("name", ["1BAD", "A-B", "", "a b"])
def test_env_names_are_checked_in_python_too(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        agent.EnvVar(name=name)


def test_readable_pattern_becomes_a_cel_rule_with_its_message() -> None:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    name = spec["properties"]["credentials"]["items"]["properties"]["name"]
    assert "pattern" not in name
    assert name["x-kubernetes-validations"][0] == {
        "rule": "self.matches(r'^[A-Za-z_][A-Za-z0-9_]*$')",
        "message": "must be an environment variable name: letters, digits and '_', "
        "not starting with a digit",
    }

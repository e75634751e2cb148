"""Every value in values.yaml is documented there, typed in values.schema.json, and listed in
docs/chart.md. `python tests/charts/test_docs.py` rewrites that list from values.yaml."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "paddock"
DOCS = REPO / "docs" / "chart.md"
START = "<!-- values: generated from charts/paddock/values.yaml by tests/charts/test_docs.py -->"
END = "<!-- end of values -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_]+):")


def descriptions(text: str) -> dict[str, str]:
    """Dotted path -> the `# --` comment (and the `#` lines after it) right above that key."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
        elif stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
        elif match := KEY.match(line):
            indent, key = len(match[1]), match[2]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            if pending is not None:
                found[".".join(k for _, k in stack)] = " ".join(pending)
            pending = None
        elif not stripped:
            pending = None
    return found


def leaves(values: Any, path: str = "") -> list[str]:
    """Paths of every scalar, list and empty map."""
    if isinstance(values, dict) and values:
        return [leaf for k, v in values.items() for leaf in leaves(v, f"{path}{k}.")]
    return [path.rstrip(".")]


def at(values: Any, path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema of the value at path, $refs followed; KeyError if the schema lacks it."""
    node = schema
    for key in path.split("."):
        node = resolve(schema, node)["properties"][key]
    return resolve(schema, node)


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def schema_paths(schema: dict[str, Any], node: dict[str, Any], path: str = "") -> list[str]:
    """Every named property in the schema, as a dotted path."""
    node = resolve(schema, node)
    return [
        found
        for key, child in node.get("properties", {}).items()
        for found in [f"{path}{key}", *schema_paths(schema, child, f"{path}{key}.")]
    ]


def type_of(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " or ".join(f"`{v}`" for v in node["enum"])
    if "anyOf" in node:
        return " or ".join(
            type_of(n) if "const" not in n else f"`{n['const']}`" for n in node["anyOf"]
        )
    kind = node["type"]
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def table() -> str:
    """The values table of docs/chart.md."""
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    described = descriptions(text)
    rows = ["| value | type | default | what |", "| --- | --- | --- | --- |"]
    for path, what in described.items():
        parent = any(other.startswith(f"{path}.") for other in described)
        default = "" if parent else f"`{json.dumps(at(values, path))}`"
        cells = [f"`{path}`", type_of(schema_node(schema, path)), default, what.replace("|", "\\|")]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def with_table(doc: str) -> str:
    before, rest = doc.split(START)
    _, after = rest.split(END)
    return f"{before}{START}\n{table()}\n{END}{after}"


def test_every_value_is_described_where_it_is_set() -> None:
    text = (CHART / "values.yaml").read_text()
    described = descriptions(text)
    undescribed = [
        leaf
        for leaf in leaves(yaml.safe_load(text))
        if not any(leaf == d or leaf.startswith(f"{d}.") for d in described)
    ]
    assert not undescribed, "values with no `# --` comment (on them or a parent)"


def test_every_value_is_typed_and_the_schema_names_no_value_that_is_not_set() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in descriptions(text):
        node = schema_node(schema, path)
        assert {"type", "enum", "anyOf"} & node.keys(), f"{path} has no type in the schema"
    for path in schema_paths(schema, schema):
        try:
            at(values, path)
        except KeyError:
            pytest.fail(f"values.schema.json types {path}, which values.yaml does not set")


def test_docs_list_every_value_as_values_yaml_describes_it() -> None:
    doc = DOCS.read_text()
    assert doc == with_table(doc), "docs/chart.md is stale: run python tests/charts/test_docs.py"


if __name__ == "__main__":
    DOCS.write_text(with_table(DOCS.read_text()))
    sys.stdout.write(f"wrote {DOCS}\n")

"""Building blocks for API models whose constraints must hold both in Python and in the API server.

A constraint is written once, here or on a model, and ends up in two places: pydantic enforces it
when Python code builds or parses an object, and the generated CRD carries it so that `kubectl
apply` of a bad spec fails with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

# Marks a pattern whose API-server error should read as a sentence instead of a regular expression;
# the CRD generator turns pattern + message into a CEL rule (paddock.api.crd).
PATTERN_MESSAGE = "x-paddock-pattern-message"

# Quantities as Kubernetes writes them (resource.Quantity), e.g. 500m, 10Gi, 1e3.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, descriptions from attribute docstrings."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
    )


def rule(
    expression: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One CEL validation rule (x-kubernetes-validations entry)."""
    out = {"rule": expression, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules for a model or field."""
    return {"x-kubernetes-validations": list(rules)}


def matching(pattern: str, message: str, *, max_length: int) -> Any:
    """A string constraint: a regular expression (RE2 and Python alike) with a readable message."""
    return Field(
        pattern=pattern,
        max_length=max_length,
        json_schema_extra={PATTERN_MESSAGE: message},
    )


def empty(factory: Callable[[], Any]) -> Any:
    """A field that defaults to an empty list, map or object, in Python and in the API server.

    The API server only defaults fields inside objects that exist, so an object field needs a
    default of {} for its own fields' defaults to apply.
    """
    wire: Any = [] if factory is list else {}
    return Field(default_factory=factory, json_schema_extra={"default": wire})


def list_map(*keys: str) -> dict[str, Any]:
    """json_schema_extra for a list whose items are unique by the given keys."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)],
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity: 2, 500m, 10Gi."""

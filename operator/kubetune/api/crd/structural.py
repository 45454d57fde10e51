"""pydantic JSON Schema -> Kubernetes structural schema.

The API server only accepts structural schemas: every node typed, no `$ref`, no `anyOf` with
null, no titles, OpenAPI v3.0 bounds, and no `additionalProperties: false` next to
`properties`. Discriminated unions become one object holding every variant's blocks, with CEL
rules (from `TaggedUnion.block_rules`) saying which blocks go with which `type`.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

from kubetune.api.unions import TaggedUnion

_DROPPED_KEYS = frozenset({"title", "discriminator", "propertyNames", "const"})


class _DefaultsFromFactories(GenerateJsonSchema):
    """Also publish defaults made by `default_factory`, so the API server applies them too.

    A nested model default is published fully expanded: the API server checks CEL rules against
    defaults as written, so `{}` would fail rules that read fields the server fills in later.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        json_schema = self.generate_inner(schema["schema"])
        value = factory()  # type: ignore[call-arg]
        json_schema["default"] = to_jsonable_python(
            value.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(value, BaseModel) else value
        )
        return json_schema


def structural_schema(model: type[BaseModel], unions: tuple[TaggedUnion, ...]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, schema_generator=_DefaultsFromFactories)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, unions)


def _convert(node: dict[str, Any], defs: dict[str, Any], unions: tuple[TaggedUnion, ...]) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **node}
        if "x-kubernetes-validations" in target and "x-kubernetes-validations" in node:
            merged["x-kubernetes-validations"] = target["x-kubernetes-validations"] + node["x-kubernetes-validations"]
        return _convert(merged, defs, unions)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf with {len(options)} non-null options structurally")
        node.pop("default", None)
        return _convert({**options[0], **node}, defs, unions)
    if "oneOf" in node:
        return _convert(_flatten_union(node, defs, unions), defs, unions)
    if "const" in node:
        node["enum"] = [node["const"]]
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    _openapi_v3_bounds(node)
    if node.get("type") == "object":
        props = node.get("properties")
        if props is not None:
            node.pop("additionalProperties", None)
            node["properties"] = {k: _convert(v, defs, unions) for k, v in props.items()}
        elif "patternProperties" in node:
            (value_schema,) = node.pop("patternProperties").values()
            node["additionalProperties"] = _convert(value_schema, defs, unions)
        elif isinstance(node.get("additionalProperties"), dict):
            node["additionalProperties"] = _convert(node["additionalProperties"], defs, unions)
        elif node.get("additionalProperties") in (True, None):
            node.pop("additionalProperties", None)
            node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "array":
        node["items"] = _convert(node["items"], defs, unions)
    if "type" not in node:
        raise ValueError(f"untyped schema node: {node}")
    return node


def _flatten_union(node: dict[str, Any], defs: dict[str, Any], unions: tuple[TaggedUnion, ...]) -> dict[str, Any]:
    tags = sorted(node["discriminator"]["mapping"])
    union = next(u for u in unions if sorted(u.tags) == tags)
    properties: dict[str, Any] = {}
    for tag in union.tags:
        variant = defs[node["discriminator"]["mapping"][tag].rsplit("/", 1)[-1]]
        for name, prop in variant["properties"].items():
            if name != "type":
                properties.setdefault(name, {k: v for k, v in prop.items() if k != "default"})
    properties = {
        "type": {"type": "string", "enum": union.tags, "description": f"Which {union.field} variant this is."},
        **properties,
    }
    flat = {
        "type": "object",
        "description": node.get("description", ""),
        "required": ["type"],
        "properties": properties,
        "x-kubernetes-validations": [r.as_crd() for r in union.block_rules()],
    }
    return {**flat, "default": node["default"]} if "default" in node else flat


def _openapi_v3_bounds(node: dict[str, Any]) -> None:
    """JSON Schema 2020 numeric exclusive bounds -> OpenAPI v3.0 boolean form."""
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True

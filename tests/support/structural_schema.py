"""Hypothesis strategies for objects shaped by a CRD's structural schema (the OpenAPI v3 subset CRDs use).

hypothesis-jsonschema would be the library for this, but its last release (0.23.1) drives Hypothesis
internals that current Hypothesis no longer has (`many.more()`), so this covers the keywords our generated
CRDs use: type, properties/required, additionalProperties (maps), items, enum, minimum/maximum with
OpenAPI's boolean exclusiveMinimum/exclusiveMaximum, minLength/maxLength, pattern, minItems/maxItems and
maxProperties. CEL rules (x-kubernetes-validations) are not followed: objects that break them are what the
API server and the operator's validation must reject, and a good share of the rest is accepted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from kubetune.api.problems import UNIONS

REPO = Path(__file__).resolve().parents[2]
CRDS = {
    "FineTuneJob": REPO / "crds" / "finetunejobs.kubetune.io.yaml",
    "Adapter": REPO / "crds" / "adapters.kubetune.io.yaml",
}
INT64 = (-(2**63), 2**63 - 1)
"""The integers the API server stores (it decodes JSON integers into int64)."""
MAX_COLLECTION = 3
"""Lists and maps stay small: size is not what breaks a reconcile, shape is."""


def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load(CRDS[kind].read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    pattern = schema.get("pattern")
    if pattern is None:
        return st.text(min_size=low, max_size=min(high or 24, low + 24))
    # Go's RE2 classes (\w, \d, \s) are ASCII; Python's match Unicode unless told otherwise
    strings = st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True)
    return strings.filter(lambda text: low <= len(text) <= (high or len(text)))


def _number(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    above, below = bool(schema.get("exclusiveMinimum")), bool(schema.get("exclusiveMaximum"))
    if integer:
        low = INT64[0] if low is None else int(low) + (1 if above and low == int(low) else 0)
        high = INT64[1] if high is None else int(high) - (1 if below and high == int(high) else 0)
        return st.integers(min_value=low, max_value=high)
    return st.floats(
        min_value=low, max_value=high, exclude_min=above, exclude_max=below, allow_nan=False, allow_infinity=False
    )


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties") or {}
    if properties:
        required = set(schema.get("required") or [])
        return st.fixed_dictionaries(
            {key: from_schema(sub) for key, sub in properties.items() if key in required},
            optional={key: from_schema(sub) for key, sub in properties.items() if key not in required},
        )
    values = schema.get("additionalProperties")
    if isinstance(values, dict):
        keys = st.from_regex(r"[a-z0-9]([a-z0-9./-]{0,14}[a-z0-9])?", fullmatch=True)
        size = min(schema.get("maxProperties", MAX_COLLECTION), MAX_COLLECTION)
        return st.dictionaries(keys, from_schema(values), max_size=size)
    return st.fixed_dictionaries({})


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy the schema's structural constraints (not its CEL rules)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema)
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + MAX_COLLECTION), low + MAX_COLLECTION)
        return st.lists(from_schema(schema.get("items") or {}), min_size=low, max_size=high)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return st.booleans()
    raise ValueError(f"no strategy for schema type {kind!r}")


@st.composite
def _union_blocks_consistent(draw: st.DrawFn, spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The blocks of each tagged union (a FineTuneJob's method and objective) made to match its drawn `type`:
    blocks of other variants dropped, required ones drawn. Structural schemas cannot say this; CEL rules do."""
    spec = dict(spec)
    for union in UNIONS:
        value = spec.get(union.field)
        if not isinstance(value, dict):
            continue
        value = spec[union.field] = dict(value)
        properties = schema["properties"][union.field]["properties"]
        for block, (allowed, required) in union.blocks().items():
            if value["type"] not in allowed:
                value.pop(block, None)
            elif value["type"] in required and block not in value:
                value[block] = draw(from_schema(properties[block]))
    return spec


@st.composite
def _exactly_one_of(draw: st.DrawFn, spec: dict[str, Any], schema: dict[str, Any], blocks: tuple[str, ...]) -> Any:
    """Exactly one of `blocks` (an Adapter's artifact or merge): the others dropped, or one drawn."""
    present = [block for block in blocks if block in spec]
    keep = present[0] if present else draw(st.sampled_from(blocks))
    spec = {key: value for key, value in spec.items() if key == keep or key not in blocks}
    if keep not in spec:
        spec[keep] = draw(from_schema(schema["properties"][keep]))
    return spec


@st.composite
def _hub_output_consistent(draw: st.DrawFn, spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """An hf:// output gets what the CEL rules ask of it: a token Secret and durable checkpoint storage."""
    output = spec.get("output")
    if not (isinstance(output, dict) and str(output.get("uri", "")).startswith("hf://")):
        return spec
    properties = schema["properties"]
    spec = dict(spec)
    if "credentialsSecretRef" not in output:
        credentials = properties["output"]["properties"]["credentialsSecretRef"]
        spec["output"] = {**output, "credentialsSecretRef": draw(from_schema(credentials))}
    checkpointing = dict(spec.get("checkpointing") or {})
    storage = dict(checkpointing.get("storage") or {})
    if "uri" not in storage:
        storage_schema = properties["checkpointing"]["properties"]["storage"]
        storage["uri"] = draw(from_schema(storage_schema["properties"]["uri"]))
        spec["checkpointing"] = {**checkpointing, "storage": storage}
    return spec


EXCLUSIVE_BLOCKS = {"Adapter": ("artifact", "merge")}
"""Spec blocks of which the CRD's CEL rules want exactly one."""


def crd_objects(
    kind: str, namespace: str, names: st.SearchStrategy[str], *, consistent_unions: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """Whole objects of a kubetune kind: metadata from `names`, spec from the CRD's schema. With
    `consistent_unions`, tagged unions agree with their tag, exclusive blocks come one at a time and an hf://
    output has its token and checkpoint storage, so far more of them are valid."""
    schema = crd_schema(kind)["properties"]["spec"]
    specs = from_schema(schema)
    if consistent_unions and kind == "FineTuneJob":  # the tagged unions are the FineTuneJob's method and objective
        specs = specs.flatmap(lambda spec: _union_blocks_consistent(spec, schema))
        specs = specs.flatmap(lambda spec: _hub_output_consistent(spec, schema))
    if consistent_unions and kind in EXCLUSIVE_BLOCKS:
        specs = specs.flatmap(lambda spec: _exactly_one_of(spec, schema, EXCLUSIVE_BLOCKS[kind]))
    return st.builds(
        lambda name, spec: {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        },
        names,
        specs,
    )

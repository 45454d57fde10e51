"""Shared base for every API model.

One base so every resource speaks Kubernetes conventions (camelCase on the wire, unknown fields
rejected instead of silently dropped) and so the cross-field rules written in CEL for the API
server are enforced by the very same expressions in the CLI and the operator. Keeping one copy of
each rule means `kubetune validate` and `kubectl apply` can never disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Self

import celpy
from celpy.adapter import json_to_cel
from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


@dataclass(frozen=True)
class CelRule:
    """A CEL validation rule, rendered into `x-kubernetes-validations` and evaluated locally.

    `transition` rules compare with `oldSelf`; they only make sense on updates, so only the API
    server evaluates them.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: str = "FieldValueInvalid"
    transition: bool = False

    def as_crd(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason != "FieldValueInvalid":
            out["reason"] = self.reason
        return out


@cache
def _compiled(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


VERDICTS_KEPT = 4096
"""Verdicts remembered by (rule, digest of what it reads): about 100 bytes each, so at most ~0.5 MB."""
_verdicts: OrderedDict[tuple[str, bytes], bool] = OrderedDict()
_verdicts_guard = threading.Lock()
_SELF_PATH = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\s*\()?")
_HAS_SELF_PATH = re.compile(r"\bhas\(\s*self(?:\.[A-Za-z_][A-Za-z0-9_]*)+\s*\)")


@cache
def read_paths(rule: str) -> tuple[tuple[str, ...], ...] | None:
    """The field paths of `self` a rule reads (`self.a.b`, `has(self.a.b)`; a method's name is no field:
    `self.uri.startsWith(...)` reads `uri`); None when it reads `self` as a whole (`self.size()`, `self[...]`)."""
    paths = {path for path, _ in _path_reads(rule)}
    return None if () in paths else tuple(sorted(paths))


@cache
def presence_paths(rule: str) -> frozenset[tuple[str, ...]]:
    """The paths a rule reads only through `has()`: whether they are there decides, not what they hold (a trainer
    config's whole `job`, an Adapter's `artifact`: digests of their values would differ for every run)."""
    reads = _path_reads(rule)
    by_value = {path for path, presence in reads if not presence}
    return frozenset(path for path, presence in reads if presence and path not in by_value)


def _path_reads(rule: str) -> list[tuple[tuple[str, ...], bool]]:
    """(path, read inside has()) for each `self...` in the rule; () for `self` itself."""
    inside_has = [found.span() for found in _HAS_SELF_PATH.finditer(rule)]
    reads = []
    for found in _SELF_PATH.finditer(rule):
        segments = tuple(found[1].split(".")[1:])
        if found[2]:
            segments = segments[:-1]
        reads.append((segments, any(start <= found.start() < end for start, end in inside_has)))
    return reads


def _read(value: Any, path: tuple[str, ...], presence: bool) -> list[Any]:
    """What a rule can see of `path`: how many of its fields are there (with whether the last one found is an
    object: `has(self.a.b)` is false when `a` is an object without `b`, an error when `a` is absent or a string), and
    the value itself unless the rule only asks whether it is there. Null is there: `has()` tells null from absent."""
    for depth, key in enumerate(path):
        if not isinstance(value, dict) or key not in value:
            return [depth, isinstance(value, dict)]
        value = value[key]
    return [len(path)] if presence else [len(path), value]


def _read_digest(rule: str, value: dict[str, Any]) -> bytes:
    paths = read_paths(rule)
    presence = presence_paths(rule)
    read = value if paths is None else [_read(value, path, path in presence) for path in paths]
    return hashlib.blake2b(json.dumps(read, sort_keys=True).encode(), digest_size=16).digest()


def cel_holds(rule: str, value: dict[str, Any]) -> bool:
    """Evaluates one rule against a JSON-shaped object the way the API server would.

    The interpreter (cel-python) takes about a millisecond per rule, and the operator validates every object on
    every reconcile, mostly unchanged: verdicts are remembered, least recently used first out, by a digest of the
    fields the rule reads, never the object itself. Runs that differ only in fields a rule does not read share its
    verdict, so a burst of new runs adds few entries; those it adds (rules that read a run's output path) are
    dropped by `forget_verdicts` once the operator is idle.
    """
    digest = _read_digest(rule, value)
    with _verdicts_guard:
        known = _verdicts.get((rule, digest))
        if known is not None:
            _verdicts.move_to_end((rule, digest))
            return known
    result = _compiled(rule).evaluate({"self": json_to_cel(value)})
    if isinstance(result, Exception):
        raise result
    with _verdicts_guard:
        _verdicts[(rule, digest)] = bool(result)
        while len(_verdicts) > VERDICTS_KEPT:
            _verdicts.popitem(last=False)
    return bool(result)


def forget_verdicts() -> int:
    """Drops every remembered verdict; returns how many there were.

    The operator calls it when it has nothing to do: the verdicts a burst of runs added were allocated among the
    burst's short-lived objects, and kept after the runs are gone they would keep those heap pages resident
    (docs/benchmarks.md). The next reconcile evaluates its rules again, about a millisecond each.
    """
    with _verdicts_guard:
        count = len(_verdicts)
        _verdicts.clear()
    return count


def compile_all_rules() -> int:
    """Compiles the rules of every model loaded so far, now; returns how many distinct rules there are.

    The operator calls it at startup. The CEL parser and each rule's program live as long as the process; compiled
    by the first reconcile that needs them, in a burst of new runs, they would sit among the burst's short-lived
    objects and keep the heap's pages resident after those are freed (docs/benchmarks.md).
    """
    seen: set[type[KubeModel]] = set()
    pending: list[type[KubeModel]] = [KubeModel]
    rules: set[str] = set()
    while pending:
        for model in pending.pop().__subclasses__():
            if model not in seen:
                seen.add(model)
                pending.append(model)
                rules.update(rule.rule for rule in model.cel_rules if not rule.transition)
    for rule in sorted(rules):
        _compiled(rule)
    return len(rules)


class KubeModel(BaseModel):
    """Base of all spec/status models: camelCase aliases, closed objects, CEL rules."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=True,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        rules = [r for r in type(self).cel_rules if not r.transition]
        if rules:
            wire = self.to_wire()
            for rule in rules:
                if not cel_holds(rule.rule, wire):
                    raise ValueError(rule.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        rules = [rule.as_crd() for rule in cls.cel_rules]
        if rules:
            handler.resolve_ref_schema(schema)["x-kubernetes-validations"] = rules
        return schema

    def to_wire(self) -> dict[str, Any]:
        """The object as it travels to and from the API server (camelCase, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

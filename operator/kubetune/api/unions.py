"""Discriminated unions, and how they look on the wire and in the CRD.

In Python a method or objective is one of several typed variants (a tagged union on `type`). A
structural CRD schema cannot express that directly, so the CRD carries one object with every
variant's blocks and CEL rules saying which blocks go with which `type`. Both the rules and the
messages the CLI shows for the same mistakes come from `block_rules`, so they always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel

from kubetune.api.base import CelRule


@dataclass(frozen=True)
class TaggedUnion:
    """One discriminated union: the field that holds it and its variant models."""

    field: str
    variants: tuple[type[BaseModel], ...]

    def tag_of(self, variant: type[BaseModel]) -> str:
        annotation = variant.model_fields["type"].annotation
        (tag,) = get_args(annotation)
        return str(tag)

    @property
    def tags(self) -> list[str]:
        return [self.tag_of(v) for v in self.variants]

    def blocks(self) -> dict[str, tuple[list[str], list[str]]]:
        """For each non-`type` property (wire name): (tags allowing it, tags requiring it)."""
        out: dict[str, tuple[list[str], list[str]]] = {}
        for variant in self.variants:
            tag = self.tag_of(variant)
            for name, info in variant.model_fields.items():
                if name == "type":
                    continue
                wire = info.alias or name
                allowed, required = out.setdefault(wire, ([], []))
                allowed.append(tag)
                if info.is_required():
                    required.append(tag)
        return out

    def required_message(self, prop: str) -> str:
        _, required = self.blocks()[prop]
        return f"{self.field}.{prop} is required when {self.field}.type is {_either(required)}: add a {prop} block"

    def forbidden_message(self, prop: str) -> str:
        allowed, _ = self.blocks()[prop]
        return (
            f"{self.field}.{prop} is only allowed when {self.field}.type is {_either(allowed)}: "
            f"remove {prop} or change {self.field}.type"
        )

    def block_rules(self) -> list[CelRule]:
        rules: list[CelRule] = []
        every = set(self.tags)
        for prop, (allowed, required) in self.blocks().items():
            if set(allowed) != every:
                rules.append(
                    CelRule(
                        f"!has(self.{prop}) || self.type in {_cel_list(allowed)}",
                        self.forbidden_message(prop),
                    )
                )
            if required:
                rules.append(
                    CelRule(
                        f"!(self.type in {_cel_list(required)}) || has(self.{prop})",
                        self.required_message(prop),
                    )
                )
        return rules


def _either(tags: list[str]) -> str:
    return tags[0] if len(tags) == 1 else ", ".join(tags[:-1]) + " or " + tags[-1]


def _cel_list(tags: list[str]) -> str:
    return "[" + ", ".join(f"'{t}'" for t in tags) + "]"


def variant_classes(annotation: Any) -> tuple[type[BaseModel], ...]:
    """The variant models of an `Annotated[A | B | ..., Field(discriminator=...)]` annotation."""
    inner = get_args(annotation)[0] if get_args(annotation) else annotation
    return tuple(v for v in get_args(inner) if isinstance(v, type) and issubclass(v, BaseModel))

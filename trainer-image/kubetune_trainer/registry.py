"""The trainer's plug-ins (methods, objectives): units that each serve one variant of an API union.

Like PEFT's tuner registry and TRL's trainers, each unit declares what it serves and the registry
is built from an explicit list. Building it fails at import when a variant of the API union has no
unit, or a unit serves no variant, so a method or objective cannot be half added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel

from kubetune.api.unions import TaggedUnion
from kubetune_trainer.errors import ConfigError

T = TypeVar("T")


class VariantUnit:
    """Serves one variant of `union`; its `name` is the variant's `type`."""

    union: ClassVar[TaggedUnion]
    variant: ClassVar[type[BaseModel]]

    @property
    def name(self) -> str:
        return self.union.tag_of(self.variant)


def as_variant(block: object, variant: type[T]) -> T:
    """The job's `block` as `variant`: a registry only hands a unit the jobs of its own variant."""
    assert isinstance(block, variant), f"{type(block).__name__} is not {variant.__name__}"
    return block


U = TypeVar("U", bound=VariantUnit)


class Registry(Generic[U]):
    """Units by API `type`; complete for `expected` or it refuses to exist."""

    def __init__(self, kind: str, units: Iterable[U], expected: Iterable[str]) -> None:
        self.kind = kind
        self._units: dict[str, U] = {}
        for unit in units:
            if unit.name in self._units:
                raise TypeError(f"two {kind} units serve {unit.name}")
            self._units[unit.name] = unit
        wanted = list(expected)
        missing = [name for name in wanted if name not in self._units]
        unknown = [name for name in self._units if name not in wanted]
        if missing or unknown:
            raise TypeError(f"{kind} units out of step with the API: no unit for {missing}, no variant for {unknown}")

    def __getitem__(self, name: str) -> U:
        try:
            return self._units[name]
        except KeyError:
            raise ConfigError(
                f"{self.kind} {name} is not available in this trainer; available: {', '.join(sorted(self._units))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._units

    def __iter__(self) -> Iterator[U]:
        return iter(self._units.values())

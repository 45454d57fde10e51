"""A registry of the trainer's plug-ins (methods, objectives), keyed by the API `type` they serve.

Like PEFT's tuner registry and TRL's trainers, each unit declares what it serves and the registry
is built from an explicit list. Building it fails at import when a variant of the API union has no
unit, or a unit serves no variant, so a method or objective cannot be half added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from kubetune_trainer.errors import ConfigError


class Unit(Protocol):
    @property
    def name(self) -> str:
        """The API `type` this unit serves."""
        ...


U = TypeVar("U", bound=Unit)


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

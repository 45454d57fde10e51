"""Conditions with stable transition times: only a change of status moves lastTransitionTime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kubetune.api.v1alpha1.common import Condition

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Verdict:
    """The phase plus why, in words a user can act on."""

    phase: str
    reason: str
    message: str = ""


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Conditions:
    """Builds conditions against the previous ones, so unchanged statuses keep their transition time."""

    previous: Sequence[Condition]
    generation: int | None
    now: datetime

    def make(self, kind: str, status: Status, reason: str, message: str = "") -> Condition:
        before = next((c for c in self.previous if c.type == kind), None)
        keep = before is not None and before.status == status and before.last_transition_time is not None
        return Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message[:2048],
            last_transition_time=before.last_transition_time if keep and before else timestamp(self.now),
            observed_generation=self.generation,
        )

    def flag(self, kind: str, on: bool, found: Verdict) -> Condition:
        """True exactly in some phases, carrying the verdict; when False its reason is the current phase."""
        if on:
            return self.make(kind, "True", found.reason, found.message)
        return self.make(kind, "False", found.phase)

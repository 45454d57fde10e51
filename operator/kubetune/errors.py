"""Errors that carry a user-facing, actionable message (never a traceback for bad input)."""

from __future__ import annotations

from kubetune.api.problems import Problem


class InvalidResourceError(ValueError):
    """A document that does not validate against the API models; one line per problem."""

    def __init__(self, kind: str, problems: list[Problem]) -> None:
        self.kind = kind
        self.problems = problems
        super().__init__("; ".join(p.line(kind) for p in problems))

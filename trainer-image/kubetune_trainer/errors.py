"""Errors the trainer raises for bad input, so the entrypoint can tell them from retryable failures.

A `ConfigError` means the job's spec (or the data it points at) is wrong: retrying the pod will not help,
so the entrypoint exits with the documented config-error code and the operator shows the message in
status. Every message is one actionable line (newlines are folded) because it ends up in a condition.
Anything that is not a `ConfigError` (network, OOM, preemption) is treated as retryable.
"""

from __future__ import annotations

import re

__all__ = [
    "ConfigError",
    "DataConfigError",
    "DataFormatError",
    "EmptyDataError",
    "LicenseError",
    "UriError",
]

_WHITESPACE = re.compile(r"\s+")


class ConfigError(Exception):
    """The spec or its inputs are wrong; the message says what to change. Exit code: config error."""

    def __init__(self, message: str) -> None:
        self.message = _WHITESPACE.sub(" ", message).strip()
        super().__init__(self.message)


class DataConfigError(ConfigError):
    """Something about `spec.dataset` (location, format, content after prep) is wrong."""


class UriError(DataConfigError):
    """A dataset or model URI cannot be parsed or does not point at anything that exists."""


class DataFormatError(DataConfigError):
    """The dataset's columns or row shapes do not match the requested (or any known) format."""


class EmptyDataError(DataConfigError):
    """No rows are left (empty input, or everything removed by prep); the message carries the counts."""


class LicenseError(DataConfigError):
    """The dataset's declared license is not in `prep.licenses.allow`."""

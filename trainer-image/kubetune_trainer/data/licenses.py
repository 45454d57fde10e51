"""License allow-list: data under a license the job's owner did not allow is never trained on.

A dataset can declare one license for all of it (`prep.licenses.declared`) and rows can carry their
own in a `license` column (mixed-source corpora). A declared license outside the list refuses the
whole job (config error); a row's license outside it removes that row. Rows with no license at all
(neither column value nor declaration) are kept and counted, since nothing was declared to refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from kubetune_trainer.errors import LicenseError

__all__ = ["LicenseDecision", "LicensePolicy", "normalize_license"]

LicenseDecision = Literal["allowed", "refused", "unknown"]

_SEPARATORS = re.compile(r"[\s_]+")


def normalize_license(value: str) -> str:
    """Compare licenses case-insensitively with `-` for blanks: `Apache 2.0` == `apache-2.0`."""
    return _SEPARATORS.sub("-", value.strip().lower())


class LicensePolicy:
    """An allow-list plus the dataset's declared license; checks the declaration on construction."""

    def __init__(self, allowed: Iterable[str], declared: str | None = None) -> None:
        self.allowed = frozenset(normalize_license(a) for a in allowed)
        if not self.allowed:
            raise LicenseError("prep.licenses.allow is empty; list the licenses you accept, e.g. apache-2.0, mit")
        self.declared = normalize_license(declared) if declared and declared.strip() else None
        if self.declared is not None and self.declared not in self.allowed:
            raise LicenseError(
                f"dataset license {declared!r} is not in prep.licenses.allow ({', '.join(sorted(self.allowed))}); "
                "use data under an allowed license or extend the list"
            )

    def decide(self, row_license: object) -> LicenseDecision:
        """Whether a row (with its `license` value, possibly None) may be used."""
        value = row_license if isinstance(row_license, str) and row_license.strip() else None
        effective = normalize_license(value) if value is not None else self.declared
        if effective is None:
            return "unknown"
        return "allowed" if effective in self.allowed else "refused"

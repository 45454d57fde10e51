"""Find personal data and secrets in training text, and redact them.

Why this mix of tools: the maintained detectors that need no network at run time are checksum and
numbering-plan libraries - `python-stdnum` (Luhn for card numbers, ISO 13616 mod-97 for IBANs, SSA
rules for US SSNs) and `phonenumbers` (Google's libphonenumber metadata). Presidio would need spaCy
models fetched at install time, which the trainer image cannot do offline. Regexes only propose
candidates; a checksum or parser decides, so a 16-digit order number that fails Luhn stays untouched.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import phonenumbers
from stdnum import iban, luhn
from stdnum.us import ssn

__all__ = ["ALL_KINDS", "PLACEHOLDERS", "PiiKind", "PiiMatch", "find_pii", "redact"]

PiiKind = Literal["api_key", "email", "iban", "credit_card", "ssn", "ipv6", "ipv4", "phone"]
ALL_KINDS: tuple[PiiKind, ...] = get_args(PiiKind)
"""Also the precedence when matches overlap: a key containing digits is a key, not a phone number."""

PLACEHOLDERS: dict[PiiKind, str] = {
    "api_key": "[API_KEY]",
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "credit_card": "[CREDIT_CARD]",
    "ssn": "[SSN]",
    "ipv6": "[IP_ADDRESS]",
    "ipv4": "[IP_ADDRESS]",
    "phone": "[PHONE]",
}


@dataclass(frozen=True)
class PiiMatch:
    """One finding: its kind and the half-open character span it covers."""

    kind: PiiKind
    start: int
    end: int


# --- candidates ------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN_COMPACT = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}[A-Z0-9]{11,30}(?![A-Za-z0-9])")
_IBAN_GROUPED = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
_SECRETS = re.compile(
    "|".join(
        (
            r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",  # AWS access key id
            r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic style
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
            r"\bglpat-[A-Za-z0-9_-]{20}\b",  # GitLab
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
            r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
            r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b",  # Stripe
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        )
    )
)
# "Bearer <token>" and "api_key = <value>": only the value is redacted, and only if it looks random.
_ASSIGNED_SECRET = re.compile(
    r"(?i)(?:\bbearer\s+|\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9_\-+/=.~]{16,})"
)
_MIN_ENTROPY_BITS = 3.0
_PHONE_DIGITS = re.compile(r"\d")


def _shannon_bits(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_random(value: str) -> bool:
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return has_digit and has_alpha and _shannon_bits(value) >= _MIN_ENTROPY_BITS


def _api_keys(text: str) -> Iterator[tuple[int, int]]:
    for match in _SECRETS.finditer(text):
        yield match.span()
    for match in _ASSIGNED_SECRET.finditer(text):
        if _looks_random(match.group(1)):
            yield match.span(1)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for match in _EMAIL.finditer(text):
        yield match.span()


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield match.span()


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for match in _IBAN_COMPACT.finditer(text):
        if iban.is_valid(match.group()):
            yield match.span()
    for match in _IBAN_GROUPED.finditer(text):
        # a trailing upper-case word may have been swallowed as a group: try the longest valid prefix
        groups = match.group().split(" ")
        for count in range(len(groups), 2, -1):
            candidate = " ".join(groups[:count])
            if iban.is_valid(candidate):
                yield match.start(), match.start() + len(candidate)
                break


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for match in _SSN.finditer(text):
        if ssn.is_valid(match.group().replace(" ", "-")):
            yield match.span()


def _ipv4s(text: str) -> Iterator[tuple[int, int]]:
    for match in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        yield match.span()


def _ipv6s(text: str) -> Iterator[tuple[int, int]]:
    for match in _IPV6.finditer(text):
        value = match.group()
        if sum(c.isalnum() for c in value) < 4:
            continue  # "::1", or C++ scope operators such as a::b
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield match.span()


def _phone_finder(regions: Sequence[str]) -> Callable[[str], Iterator[tuple[int, int]]]:
    def find(text: str) -> Iterator[tuple[int, int]]:
        if len(_PHONE_DIGITS.findall(text)) < 7:
            return  # cheap pre-check: the matcher is slow and most rows have no phone numbers
        for region in regions:
            for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
                yield match.start, match.end

    return find


_DETECTORS: dict[PiiKind, Callable[[str], Iterator[tuple[int, int]]]] = {
    "api_key": _api_keys,
    "email": _emails,
    "iban": _ibans,
    "credit_card": _cards,
    "ssn": _ssns,
    "ipv6": _ipv6s,
    "ipv4": _ipv4s,
}


def find_pii(
    text: str, kinds: Collection[PiiKind] = ALL_KINDS, phone_regions: Sequence[str] = ("US",)
) -> list[PiiMatch]:
    """All non-overlapping findings in `text`, in order; overlaps go to the kind listed first in ALL_KINDS.

    `phone_regions` are the countries whose national formats are recognised without a `+` prefix;
    numbers written with a country code are found whatever the region.
    """
    accepted: list[PiiMatch] = []
    for kind in ALL_KINDS:
        if kind not in kinds:
            continue
        detector = _phone_finder(phone_regions) if kind == "phone" else _DETECTORS[kind]
        for start, end in detector(text):
            if all(end <= m.start or start >= m.end for m in accepted):
                accepted.append(PiiMatch(kind, start, end))
    return sorted(accepted, key=lambda m: m.start)


def redact(
    text: str, kinds: Collection[PiiKind] = ALL_KINDS, phone_regions: Sequence[str] = ("US",)
) -> tuple[str, Counter[PiiKind]]:
    """`text` with every finding replaced by its placeholder (e.g. `[EMAIL]`), and counts by kind."""
    matches = find_pii(text, kinds, phone_regions)
    counts: Counter[PiiKind] = Counter(m.kind for m in matches)
    if not matches:
        return text, counts
    pieces: list[str] = []
    cursor = 0
    for match in matches:
        pieces.append(text[cursor : match.start])
        pieces.append(PLACEHOLDERS[match.kind])
        cursor = match.end
    pieces.append(text[cursor:])
    return "".join(pieces), counts

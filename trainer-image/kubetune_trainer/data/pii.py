"""Find personal data and secrets in training text, and redact them.

Three kinds of detector, each a maintained library deciding: checksum and numbering-plan libraries
(`python-stdnum`: Luhn for cards, ISO 13616 mod-97 for IBANs, SSA rules for US SSNs; `phonenumbers`:
libphonenumber's metadata), detect-secrets for keys and passwords (`secrets.py`), and - as the `ner`
option - Presidio with a spaCy model for names and places, plus a postal-address pattern (`ner.py`).
Regexes only propose candidates; a checksum, parser or model decides, so a 16-digit order number that
fails Luhn stays untouched.

Speed: most rows hold nothing to find, so one RE2 set (a DFA over every detector's candidate pattern,
~1 us per short row) says which detectors could match, and only those run. Candidate patterns are
supersets of what their detector accepts (zero-width assertions removed), so the prefilter never
hides a finding. NER cannot be prefiltered (a name has no pattern) and runs on every text.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import phonenumbers
from stdnum import iban, luhn
from stdnum.us import ssn

from kubetune_trainer.data.secrets import SecretScanner, candidate_patterns

if TYPE_CHECKING:
    from kubetune_trainer.data.ner import NerDetector

__all__ = ["ALL_KINDS", "PLACEHOLDERS", "Detector", "PiiMatch", "PiiScanner", "find_pii", "placeholder", "redact"]

Detector = Literal["secret", "email", "iban", "credit_card", "ssn", "ipv6", "ipv4", "phone"]
ALL_KINDS: tuple[Detector, ...] = get_args(Detector)
"""The pattern detectors, in precedence order when matches overlap: a key containing digits is a key,
not a phone number. NER findings (`ner.py`) come last."""

PLACEHOLDERS: dict[str, str] = {
    "secret": "[SECRET]",
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "credit_card": "[CREDIT_CARD]",
    "ssn": "[SSN]",
    "ipv6": "[IP_ADDRESS]",
    "ipv4": "[IP_ADDRESS]",
    "phone": "[PHONE]",
    "street_address": "[ADDRESS]",
    "person": "[PERSON]",
    "location": "[LOCATION]",
}


def placeholder(kind: str) -> str:
    """What replaces a finding: secret kinds (`secret_github_token`) all read `[SECRET]`."""
    return PLACEHOLDERS["secret" if kind.startswith("secret_") else kind]


@dataclass(frozen=True)
class PiiMatch:
    """One finding: its kind (e.g. `email`, `secret_aws_access_key`, `person`) and its half-open span."""

    kind: str
    start: int
    end: int


# --- precise detectors (Python regexes with look-arounds propose, libraries decide) ------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN_COMPACT = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}[A-Z0-9]{11,30}(?![A-Za-z0-9])")
_IBAN_GROUPED = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
_PHONE_RUN = re.compile(r"[+(]?\d(?:[\s().\-/]{0,3}\d){6,}")
"""A run of 7+ digits with short separators: where libphonenumber's matcher may find a number."""
_MIN_PHONE_DIGITS = 7
_PHONE_CONTEXT = 3
"""Characters kept around a run: the matcher's own checks (a preceding letter, a following `:30`) look
only this far, so matching in the window decides as matching in the whole text would."""

Spans = Iterator[tuple[int, int]]


def _emails(text: str) -> Spans:
    for match in _EMAIL.finditer(text):
        yield match.span()


def _cards(text: str) -> Spans:
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield match.span()


def _ibans(text: str) -> Spans:
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


def _ssns(text: str) -> Spans:
    for match in _SSN.finditer(text):
        if ssn.is_valid(match.group().replace(" ", "-")):
            yield match.span()


def _ipv4s(text: str) -> Spans:
    for match in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        yield match.span()


def _ipv6s(text: str) -> Spans:
    for match in _IPV6.finditer(text):
        value = match.group()
        if sum(c.isalnum() for c in value) < 4:
            continue  # "::1", or C++ scope operators such as a::b
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield match.span()


def national_digits(regions: Sequence[str]) -> int:
    """Digits a number written without `+` has at least: the shortest valid number of the regions (10 in
    the US), so an ISO date or a 9-digit order number never reaches the (slow) matcher."""
    descriptions = (getattr(phonenumbers.PhoneMetadata.metadata_for_region(r), "general_desc", None) for r in regions)
    shortest = [min(d.possible_length) for d in descriptions if d is not None and d.possible_length]
    return max(_MIN_PHONE_DIGITS, min(shortest, default=_MIN_PHONE_DIGITS))


def _phone_candidate(regions: Sequence[str]) -> str:
    """The prefilter's phone pattern: an international run of 7+ digits, or a national run long enough."""
    separated = r"(?:[\s().\-/]{0,3}\d)"
    return rf"\+\d{separated}{{{_MIN_PHONE_DIGITS - 1},}}|\(?\d{separated}{{{national_digits(regions) - 1},}}"


def _phone_finder(regions: Sequence[str]) -> Callable[[str, Sequence[tuple[str, int, int]]], Spans]:
    national = national_digits(regions)

    def find(text: str, taken: Sequence[tuple[str, int, int]] = ()) -> Spans:
        """Numbers in `text`; a run inside an earlier finding (a card number) is not looked at again."""
        for run in _PHONE_RUN.finditer(text):
            value = run.group()
            if sum(c.isdigit() for c in value) < (_MIN_PHONE_DIGITS if value.startswith("+") else national):
                continue
            if any(start <= run.start() and run.end() <= end for _, start, end in taken):
                continue
            offset = max(0, run.start() - _PHONE_CONTEXT)
            window = text[offset : run.end() + _PHONE_CONTEXT]
            for region in regions:
                for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID):
                    yield offset + match.start, offset + match.end

    return find


_PRECISE: dict[Detector, Callable[[str], Spans]] = {
    "email": _emails,
    "iban": _ibans,
    "credit_card": _cards,
    "ssn": _ssns,
    "ipv6": _ipv6s,
    "ipv4": _ipv4s,
}

# --- the prefilter -----------------------------------------------------------------------------------

_CANDIDATES: dict[Detector, str] = {
    "email": r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.[A-Za-z0-9.-]*[A-Za-z]",
    "iban": r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11}",
    "credit_card": r"\d(?:[ -]?\d){12}",
    "ssn": r"\d{3}[- ]\d{2}[- ]\d{4}",
    "ipv6": r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    "ipv4": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
}
_LOOKAROUND = re.compile(r"\(\?<?[=!]")
_HUGE_REPEAT = re.compile(r"\{(\d+),\d{4,}\}")


def superset_pattern(pattern: str) -> str:
    """`pattern` without look-arounds (zero-width, so removing one only widens the match) and with
    repeat bounds RE2 refuses (> 1000) left open: what RE2 can run and never misses a match of."""
    out, i = [], 0
    while i < len(pattern):
        if _LOOKAROUND.match(pattern, i):
            depth, i = 1, pattern.index("(", i) + 1
            while depth:
                step = _atom_length(pattern, i)
                depth += (pattern[i] == "(") - (pattern[i] == ")") if step == 1 else 0
                i += step
            continue
        step = _atom_length(pattern, i)
        out.append(pattern[i : i + step])
        i += step
    return _HUGE_REPEAT.sub(r"{\1,}", "".join(out))


def _atom_length(pattern: str, i: int) -> int:
    """Length of the escape or character class starting at `i` (whose parentheses are literal), else 1."""
    if pattern[i] == "\\":
        return 2
    if pattern[i] != "[":
        return 1
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1 - i


class _Prefilter:
    """One RE2 set over all candidate patterns: which detectors could match `text`."""

    def __init__(self, detectors: Collection[Detector], phone_regions: Sequence[str] = ("US",)) -> None:
        import re2

        options = re2.Options()
        options.log_errors = False
        self._set = re2.Set.SearchSet(options)
        self._owner: list[Detector] = []
        fallback: list[str] = []
        entries: list[tuple[Detector, str, int]] = [(d, p, 0) for d, p in _CANDIDATES.items() if d in detectors]
        if "phone" in detectors:
            entries.append(("phone", _phone_candidate(phone_regions), 0))
        if "secret" in detectors:
            entries += [("secret", p, f) for p, f in candidate_patterns()]
        for detector, pattern, flags in entries:
            scoped = f"(?i:{superset_pattern(pattern)})" if flags & re.IGNORECASE else superset_pattern(pattern)
            try:
                self._set.Add(scoped)
            except re2.error:
                fallback.append(f"(?i:{pattern})" if flags & re.IGNORECASE else pattern)
                continue
            self._owner.append(detector)
        self._set.Compile()
        self._fallback = re.compile("|".join(fallback)) if fallback else None

    def any(self, text: str) -> bool:
        """Whether any detector could match (the common answer, no, costs one DFA pass)."""
        return self._set.Match(text) is not None or (
            self._fallback is not None and self._fallback.search(text) is not None
        )

    def candidates(self, text: str) -> set[Detector]:
        hits = self._set.Match(text)
        found = {self._owner[i] for i in hits} if hits else set()
        if self._fallback is not None and "secret" not in found and self._fallback.search(text):
            found.add("secret")
        return found


class PiiScanner:
    """All detectors of one configuration; build once per process (detect-secrets and NER load models)."""

    def __init__(
        self,
        detectors: Collection[Detector] = ALL_KINDS,
        phone_regions: Sequence[str] = ("US",),
        ner: NerDetector | None = None,
    ) -> None:
        self.detectors = tuple(d for d in ALL_KINDS if d in detectors)
        self._prefilter = _Prefilter(self.detectors, phone_regions)
        self._phone = _phone_finder(phone_regions)
        self._secrets = SecretScanner() if "secret" in self.detectors else None
        self._ner = ner

    def find_batch(self, texts: Sequence[str]) -> list[list[PiiMatch]]:
        """Findings of each text; NER (when configured) runs over the batch at once, which is faster."""
        if self._ner is None:
            return [self._resolve(self._pattern_spans(text), []) if self._prefilter.any(text) else [] for text in texts]
        ner_spans = self._ner.find_batch(texts)
        return [self._resolve(self._pattern_spans(text), extra) for text, extra in zip(texts, ner_spans, strict=True)]

    def find(self, text: str) -> list[PiiMatch]:
        """All non-overlapping findings in `text`, in order; overlaps go to the earlier detector."""
        return self.find_batch([text])[0]

    def redact_batch(self, texts: Sequence[str]) -> list[tuple[str, Counter[str]]]:
        """Each text with every finding replaced by its placeholder (e.g. `[EMAIL]`), and counts by kind."""
        return [_apply(text, matches) for text, matches in zip(texts, self.find_batch(texts), strict=True)]

    def _pattern_spans(self, text: str) -> list[tuple[str, int, int]]:
        candidates = self._prefilter.candidates(text)
        spans: list[tuple[str, int, int]] = []
        for detector in self.detectors:
            if detector not in candidates:
                continue
            if detector == "secret":
                assert self._secrets is not None
                spans += self._secrets.find(text)
            elif detector == "phone":
                spans += [("phone", start, end) for start, end in self._phone(text, spans)]
            else:
                spans += ((detector, start, end) for start, end in _PRECISE[detector](text))
        return spans

    @staticmethod
    def _resolve(spans: list[tuple[str, int, int]], extra: list[tuple[str, int, int]]) -> list[PiiMatch]:
        accepted: list[PiiMatch] = []
        for kind, start, end in [*spans, *extra]:
            if all(end <= m.start or start >= m.end for m in accepted):
                accepted.append(PiiMatch(kind, start, end))
        return sorted(accepted, key=lambda m: m.start)


_NOTHING: Counter[str] = Counter()
"""Shared by every text without findings (most of them): read, never updated."""


def _apply(text: str, matches: list[PiiMatch]) -> tuple[str, Counter[str]]:
    if not matches:
        return text, _NOTHING
    counts: Counter[str] = Counter(m.kind for m in matches)
    pieces: list[str] = []
    cursor = 0
    for match in matches:
        pieces += [text[cursor : match.start], placeholder(match.kind)]
        cursor = match.end
    pieces.append(text[cursor:])
    return "".join(pieces), counts


_SCANNERS: dict[tuple[Any, ...], PiiScanner] = {}


def _scanner(detectors: Collection[Detector], phone_regions: Sequence[str]) -> PiiScanner:
    key = (tuple(sorted(detectors)), tuple(phone_regions))
    if key not in _SCANNERS:
        _SCANNERS[key] = PiiScanner(detectors, phone_regions)
    return _SCANNERS[key]


def find_pii(
    text: str, kinds: Collection[Detector] = ALL_KINDS, phone_regions: Sequence[str] = ("US",)
) -> list[PiiMatch]:
    """`PiiScanner(kinds, phone_regions).find(text)`, with the scanner kept for the next call.

    `phone_regions` are the countries whose national formats are recognised without a `+` prefix;
    numbers written with a country code are found whatever the region.
    """
    return _scanner(kinds, phone_regions).find(text)


def redact(
    text: str, kinds: Collection[Detector] = ALL_KINDS, phone_regions: Sequence[str] = ("US",)
) -> tuple[str, Counter[str]]:
    """`text` with every finding replaced by its placeholder, and counts by kind (a fresh Counter)."""
    redacted, counts = _apply(text, find_pii(text, kinds, phone_regions))
    return redacted, Counter(counts)

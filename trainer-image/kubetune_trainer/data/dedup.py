"""Duplicate removal: exact (hash of normalised text) and near (MinHash LSH through `rensa`).

Duplicates waste compute and make a model memorise; near duplicates (boilerplate, templated rows with
one word changed) do the same. Work is split in two so that prep can spread it over processes: the
keys (`exact_key`, `signatures`: normalising, shingling and MinHash, the expensive part) depend on one
row only, while the decision (`check`) must see rows in order, since the first occurrence is kept.

Near duplicates: `rensa`'s Rust MinHash over character 5-grams, and its `RMinHashDeduplicator`, which
proposes candidates by LSH bands and confirms each by the estimated Jaccard similarity, so band
collisions below the threshold do not remove rows. The band count is chosen so that a pair exactly
at the threshold is found with probability >= 0.99 (`lsh_bands`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

__all__ = [
    "DuplicateReason",
    "ExactDeduplicator",
    "NearDeduplicator",
    "dedup_keys",
    "exact_key",
    "lsh_bands",
    "normalize_text",
    "shingles",
    "signatures",
]

DuplicateReason = Literal["duplicate", "near_duplicate"]

_WHITESPACE = re.compile(r"\s+")
NUM_PERM = 128
SHINGLE_SIZE = 5
SEED = 1
MIN_RECALL_AT_THRESHOLD = 0.99


def normalize_text(text: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed: what "the same text" means for dedup."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def exact_key(text: str) -> bytes:
    """16-byte digest of the normalised text: equal keys mean equal texts."""
    return _digest(normalize_text(text))


def _digest(norm: str) -> bytes:
    return hashlib.blake2b(norm.encode(), digest_size=16).digest()


def shingles(norms: Sequence[str], size: int = SHINGLE_SIZE) -> list[list[bytes]]:
    """Character n-grams of each normalised text (the whole text when it is not longer than `size`).

    Made in one pass for all texts: the texts are joined as UTF-32 (4 bytes a character) and numpy
    views every `size`-character window as one fixed-width byte string, so no Python loop builds a
    string per n-gram (that loop was most of near dedup's cost). numpy drops trailing NUL bytes, so a
    window ending in NUL characters is not told apart from the same window without them.
    """
    import numpy as np

    joined = "".join(norms)
    width = 4 * size
    windows: list[bytes] = []
    if len(joined) >= size:
        buffer = joined.encode("utf-32-le")
        windows = np.ndarray(shape=(len(joined) - size + 1,), dtype=f"S{width}", buffer=buffer, strides=(4,)).tolist()
    out: list[list[bytes]] = []
    start = 0
    for norm in norms:
        length = len(norm)
        whole = [norm.encode("utf-32-le").rstrip(b"\0")]
        out.append(windows[start : start + length - size + 1] if length > size else whole)
        start += length
    return out


def signatures(texts: Sequence[str]) -> list[Any]:
    """rensa `RMinHash` signatures of the texts' shingles, computed in one call."""
    return dedup_keys(texts, near=True)[1] or []


def dedup_keys(texts: Sequence[str], *, near: bool) -> tuple[list[bytes], list[Any] | None]:
    """Exact keys of the texts and, for near dedup, their MinHash signatures (normalising each text once)."""
    norms = [normalize_text(t) for t in texts]
    keys = [_digest(n) for n in norms]
    if not near:
        return keys, None
    from rensa import RMinHash

    return keys, list(RMinHash.from_token_sets(shingles(norms), num_perm=NUM_PERM, seed=SEED))


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> int:
    """The fewest bands (so the fewest false candidates) that find a pair at `threshold` with p >= 0.99.

    A pair with Jaccard similarity s shares at least one of b bands of r = num_perm/b rows with
    probability 1 - (1 - s^r)^b; more bands raise recall and the number of candidates to confirm.
    """
    for bands in (b for b in range(1, num_perm + 1) if num_perm % b == 0):
        rows = num_perm // bands
        if 1 - (1 - threshold**rows) ** bands >= MIN_RECALL_AT_THRESHOLD:
            return bands
    return num_perm


class ExactDeduplicator:
    """Remembers the key of every distinct normalised text."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def check_key(self, key: bytes) -> DuplicateReason | None:
        """`"duplicate"` if the key was seen before; otherwise remember it and return None."""
        if key in self._seen:
            return "duplicate"
        self._seen.add(key)
        return None

    def check(self, text: str) -> DuplicateReason | None:
        """`check_key` of the text's key."""
        return self.check_key(exact_key(text))


class NearDeduplicator:
    """Exact repeats first (reported as `duplicate`), then MinHash LSH at a Jaccard `threshold`."""

    def __init__(self, threshold: float = 0.85) -> None:
        from rensa import RMinHashDeduplicator

        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._exact = ExactDeduplicator()
        self._near = RMinHashDeduplicator(threshold, NUM_PERM, True, lsh_bands(threshold), SEED)
        self._count = 0

    def check_key(self, key: bytes, signature: Any) -> DuplicateReason | None:
        """The reason a row (its exact key and MinHash) duplicates an earlier one, or None (it is remembered)."""
        if self._exact.check_key(key):
            return "duplicate"
        self._count += 1
        return None if self._near.add(str(self._count), signature) else "near_duplicate"

    def check(self, text: str) -> DuplicateReason | None:
        """`check_key` with the text's key and signature."""
        keys, minhashes = dedup_keys([text], near=True)
        assert minhashes is not None
        return self.check_key(keys[0], minhashes[0])

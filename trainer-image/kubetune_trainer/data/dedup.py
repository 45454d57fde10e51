"""Duplicate removal: exact (hash of normalised text) and near (MinHash LSH through datasketch).

Duplicates waste compute and make a model memorise; near duplicates (boilerplate, templated rows with
one word changed) do the same. Both deduplicators are streaming - `check` sees each row once and
remembers it - so prep makes a single pass. The first occurrence is kept.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

__all__ = ["DuplicateReason", "ExactDeduplicator", "NearDeduplicator", "normalize_text", "shingles"]

DuplicateReason = Literal["duplicate", "near_duplicate"]

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed: what "the same text" means for dedup."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def shingles(text: str, size: int = 5) -> set[bytes]:
    """Character n-grams of the normalised text (the whole text when it is shorter than `size`)."""
    norm = normalize_text(text)
    if len(norm) <= size:
        return {norm.encode()}
    return {norm[i : i + size].encode() for i in range(len(norm) - size + 1)}


class ExactDeduplicator:
    """Remembers a 16-byte digest per distinct normalised text."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def check(self, text: str) -> DuplicateReason | None:
        """`"duplicate"` if an equal text was seen before; otherwise remember this one and return None."""
        digest = hashlib.blake2b(normalize_text(text).encode(), digest_size=16).digest()
        if digest in self._seen:
            return "duplicate"
        self._seen.add(digest)
        return None


class NearDeduplicator:
    """MinHash signatures of character shingles, indexed with LSH at a Jaccard `threshold`.

    LSH proposes candidates; each is confirmed by the estimated Jaccard similarity so that band
    collisions below the threshold do not remove rows. Exact repeats are reported as `duplicate`.
    """

    def __init__(self, threshold: float = 0.85, num_perm: int = 128, shingle_size: int = 5, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._num_perm = num_perm
        self._shingle_size = shingle_size
        self._seed = seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[int, object] = {}
        self._exact = ExactDeduplicator()

    def check(self, text: str) -> DuplicateReason | None:
        """The reason this text duplicates an earlier one, or None (and it is remembered)."""
        from datasketch import MinHash

        if self._exact.check(text):
            return "duplicate"
        signature = MinHash(num_perm=self._num_perm, seed=self._seed)
        signature.update_batch(list(shingles(text, self._shingle_size)))
        for key in self._lsh.query(signature):
            if signature.jaccard(self._signatures[key]) >= self.threshold:
                return "near_duplicate"
        key = len(self._signatures)
        self._signatures[key] = signature
        self._lsh.insert(key, signature)
        return None

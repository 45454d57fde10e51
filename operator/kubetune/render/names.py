"""Deterministic names and label values for children.

Children are found again after a restart by name, so names must be a pure function of the owner.
Kubernetes caps most names and every label value at 63 characters; a long owner name is
truncated and gets a short hash of the full name, so two long names never collide.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
JOB_NAME_MAX = 52
"""Indexed Job pods get the hostname JOB-INDEX and names JOB-INDEX-xxxxx; 52 leaves room for both."""

_INVALID = re.compile(r"[^a-z0-9-]+")
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def dns_label(*parts: str, max_length: int = MAX_NAME) -> str:
    """`parts` joined by '-' as a DNS-1123 label of at most `max_length` characters."""
    full = "-".join(p for p in parts if p)
    clean = _INVALID.sub("-", full.lower()).strip("-") or "x"
    if len(clean) <= max_length and clean == full:
        return clean
    head = clean[: max_length - 9].rstrip("-")
    return f"{head}-{_digest(full)}"


def label_value(text: str) -> str:
    """A valid label value (<= 63, alphanumeric at both ends) that still identifies `text`."""
    clean = _LABEL_INVALID.sub("-", text).strip("-._")
    if len(clean) <= MAX_NAME and clean == text:
        return clean
    head = clean[: MAX_NAME - 9].strip("-._")
    return f"{head}-{_digest(text)}" if head else _digest(text)


def job_name(owner: str) -> str:
    """Also the name of the run's own ServiceAccount, Role and RoleBinding when it has them (names are per kind)."""
    return dns_label(owner, "train", max_length=JOB_NAME_MAX)


def preflight_job_name(owner: str, spec_digest: str) -> str:
    """One preflight Job per version of the spec (a Job's pod template is immutable; an edited spec before
    the run starts gets its own check): the digest's first 8 hex digits tell them apart."""
    return dns_label(owner, "preflight", spec_digest.removeprefix("sha256:")[:8], max_length=JOB_NAME_MAX)


def merge_job_name(adapter: str) -> str:
    return dns_label(adapter, "merge", max_length=JOB_NAME_MAX)


def service_name(owner: str) -> str:
    """The headless Service is the pods' subdomain: a DNS-1035 label (starts with a letter)."""
    name = dns_label(owner, "rdzv")
    return name if name[0].isalpha() else dns_label("r", owner, "rdzv")


def pvc_volume_name(claim: str) -> str:
    return dns_label("pvc", claim)

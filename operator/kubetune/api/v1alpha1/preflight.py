"""The preflight check: a CPU pod that checks the spec against the model's config and tokenizer first.

`spec.preflight` is the user's side (run it or not, what a memory miss does, the GPU size to check
against); `PreflightReport` is what the check found. The trainer writes the report as its
termination message (`--preflight` mode), the operator copies it into `status.preflight`, so the
verdict costs no API write by the pod, and `spec_digest` ties it to the exact spec it checked: an
unchanged spec is never checked twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import Quantity

if TYPE_CHECKING:
    from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec

MemoryCheck = Literal["enforce", "warn", "off"]
MemoryFit = Literal["Fits", "Exceeds", "Unknown", "NotChecked"]
SpecDigest = Annotated[str, StringConstraints(max_length=71, pattern=r"^sha256:[0-9a-f]{64}$")]

_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_SUFFIXES["Ti"] = 2**40
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
_PRODUCT_SIZE = re.compile(r"(?:^|[-_ ])(\d{1,4})\s?GB(?:$|[-_ ])", re.IGNORECASE)


class PreflightSpec(KubeModel):
    """Checks that need only the model's config and tokenizer, run in a CPU pod before the GPU Job exists."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.gpuMemory) || self.memoryCheck != 'off'",
            "preflight.gpuMemory is only read by the memory check: remove it, or set preflight.memoryCheck "
            "to enforce or warn",
        ),
    )

    enabled: bool = Field(
        default=True,
        description="Run the checks (target modules, vocabulary, data format, memory estimate) in a small CPU pod "
        "that downloads only config and tokenizer files, and create the GPU Job only when they pass; false leaves "
        "them to the training pod, after it has its GPUs.",
    )
    memory_check: MemoryCheck = Field(
        default="enforce",
        description="What a memory estimate above the per-device memory does: enforce fails the run (before any "
        "GPU is requested), warn reports it in status and trains anyway, off skips the comparison. Applies to the "
        "preflight pod and the training pod alike.",
    )
    gpu_memory: Quantity | None = Field(
        default=None,
        description="Memory of one GPU, for the memory check before a GPU is claimed (e.g. 80Gi). Default: the size "
        "in resources.gpuProduct (NVIDIA-H100-80GB-HBM3 counts as 80Gi); without either, the estimate is reported "
        "and the fit is checked by the training pod on the GPU it gets.",
    )


class PreflightReport(KubeModel):
    """What the preflight pod found; `status.preflight`, also the pod's termination message (at most 4 KiB)."""

    spec_digest: SpecDigest = Field(description="Digest of the spec that was checked (spec.suspend excluded).")
    method: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="The method the run will train (what auto resolved to); unset when not resolved."
    )
    memory_estimate_bytes: int | None = Field(default=None, ge=0, description="Estimated bytes per device.")
    device_memory_bytes: int | None = Field(
        default=None, ge=0, description="Bytes per device the estimate was compared with; unset when unknown."
    )
    memory_fit: MemoryFit = Field(
        default="Unknown",
        description="Fits, Exceeds (allowed by preflight.memoryCheck warn), Unknown (no device size known before "
        "the GPU pod) or NotChecked (preflight.memoryCheck off).",
    )
    summary: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="One line: the estimate's breakdown and the verdict."
    )
    notes: Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=8)] = Field(
        default_factory=list, description="Warnings the run survives (capability fallbacks, auto decisions)."
    )


def spec_digest(spec: FineTuneJobSpec) -> str:
    """sha256 over the canonical wire form of the spec without `suspend` (pausing changes nothing checked)."""
    wire = {key: value for key, value in spec.to_wire().items() if key != "suspend"}
    canonical = json.dumps(wire, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes quantity (the `Quantity` pattern) as a whole number of bytes."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a quantity like 80Gi or 24G")
    return int(float(match[1]) * _SUFFIXES[match[2] or ""])


def gpu_memory_bytes(spec: FineTuneJobSpec) -> int | None:
    """Memory of one of the run's GPUs as far as the spec says: `preflight.gpuMemory`, else the size in the
    product name; None when the spec does not say (or the run has no GPU)."""
    if spec.resources.gpus == 0:
        return None
    if spec.preflight.gpu_memory is not None:
        return quantity_bytes(spec.preflight.gpu_memory)
    product = spec.resources.gpu_product or ""
    match = _PRODUCT_SIZE.search(product)
    return int(match[1]) * 2**30 if match else None

"""GPU memory by `nvidia.com/gpu.product` label (what `resources.gpuProduct` selects on), for `kubetune estimate`.

The label is the product name as NVIDIA's GPU feature discovery writes it (spaces become dashes).
Memory is nominal (the product's GB read as GiB); CUDA reports a little less (an H100 80GB about
79.2 GiB), and the trainer's preflight on the node uses what CUDA reports, so a run within about a
GiB of the limit can pass the estimate and still be refused on the node.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubetune.api.estimate import GIB

GPU_MEMORY_GIB: Mapping[str, int] = {
    "Tesla-T4": 16,
    "Tesla-V100-SXM2-16GB": 16,
    "Tesla-V100-SXM2-32GB": 32,
    "NVIDIA-A10G": 24,
    "NVIDIA-L4": 24,
    "NVIDIA-GeForce-RTX-4090": 24,
    "NVIDIA-A100-SXM4-40GB": 40,
    "NVIDIA-L40S": 48,
    "NVIDIA-A100-SXM4-80GB": 80,
    "NVIDIA-A100-80GB-PCIe": 80,
    "NVIDIA-H100-80GB-HBM3": 80,
    "NVIDIA-H100-PCIe": 80,
    "NVIDIA-H100-NVL": 94,
    "NVIDIA-H200": 141,
}


def gpu_memory_bytes(product: str) -> int | None:
    gib = GPU_MEMORY_GIB.get(product)
    return gib * GIB if gib is not None else None

"""Reading the trainer's measurements out of raw run records, shared by the labs' analyses; pure.

A raw run is `RunRecord.to_json()`: `metrics` (the trainer's flat metrics, see
kubetune_trainer.measure), `history` (the training log), `files` (artifact file sizes).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Run = Mapping[str, Any]


def metric(run: Run, key: str) -> float:
    value = run["metrics"].get(key)
    return float(value) if value is not None else math.nan


def weights_file_bytes(run: Run) -> int:
    """Bytes of the weight files (adapter or full model), without tokenizer, logs and manifest."""
    return sum(size for name, size in run["files"].items() if name.endswith(".safetensors") and "/" not in name)


def disk_bytes(run: Run) -> tuple[str, float]:
    """(what was measured, bytes): the weight files when the run's files were read (a local run), else the
    whole artifact's size, all a cluster run's status tells (weights plus tokenizer, log and manifest)."""
    if run["files"]:
        return "weight files", float(weights_file_bytes(run))
    return "whole artifact: weights, tokenizer and logs", float(run["artifactBytes"])


def peak_memory(run: Run) -> tuple[str, float]:
    """(what was measured, bytes): the CUDA peak on a GPU, else the process's peak resident memory."""
    if "memory.peak_cuda_bytes" in run["metrics"]:
        return "CUDA peak allocated", metric(run, "memory.peak_cuda_bytes")
    return "process peak RSS (includes the Python/torch runtime)", metric(run, "memory.peak_rss_bytes")


def tensor_bytes(run: Run) -> float:
    """Weights, gradients and optimizer states as measured on the tensors themselves."""
    return sum(metric(run, k) for k in ("memory.weights_bytes", "memory.gradients_bytes", "memory.optimizer_bytes"))


def series(run: Run, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged quantity of the training log."""
    points = [(float(e["step"]), float(e[key])) for e in run["history"] if key in e and "step" in e]
    return [s for s, _ in points], [v for _, v in points]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def quarter_means(values: Sequence[float]) -> tuple[float, float]:
    """Means of the first and last quarter of a series (at least one point each)."""
    k = max(1, len(values) // 4)
    return statistics.fmean(values[:k]), statistics.fmean(values[-k:])


def strictly_increasing(values: Iterable[float]) -> bool:
    items = list(values)
    return all(a < b for a, b in itertools.pairwise(items))


def recorded(records: Mapping[str, Any]) -> dict[str, Any]:
    """The raw part every lab keeps: each run's numbers (`RunRecord.to_json`) and the library versions
    (the same process image for all of them)."""
    libraries = next((dict(r.libraries) for r in records.values() if r.libraries), {})
    return {"runs": {name: r.to_json() for name, r in records.items()}, "environment": libraries}

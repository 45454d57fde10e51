"""Trainer benchmarks (`make bench`): kubetune against plain TRL, and the memory estimator against measurements.

Every number comes from fresh interpreters running `support.bench_trainer` (one JSON line each) on a Llama built
from config with the tiny tokenizer, on CPU with one thread per process so two processes of the 2-core machine
do not fight over cores. Tables print in Markdown (docs/benchmarks.md keeps the last run).

- Throughput: tokens/s of the kubetune pipeline (its default hooks: progress reporter, metrics) over plain TRL,
  same process, identical model, data, batches and method, kubetune and TRL runs interleaved (K,T then T,K); the
  table gives the geometric mean of the per-pair ratios with a 95% t-interval. Time is the process's CPU time
  (every thread, so kubetune's callbacks and metrics server count), which is what an idle core gives per second
  and is not inflated by other processes on a shared machine; the wall-clock ratio is shown beside it. Goal:
  >= 0.95; the benchmark fails when the whole interval is below it.
- Startup: seconds from interpreter start to the first optimizer step, in phases (imports, setup: data, model,
  trainer; the first step), medians of interleaved fresh processes. Reported, no goal.
- Packing: real tokens / batch positions on skewed lengths with packing off and on. Goal with packing: >= 0.9.
- Estimator: predicted / measured memory per method on the tiny and a mid-size model, with packing on so every
  step holds batch x maxSeqLength tokens as the estimate assumes: tensor bytes after the first optimizer step,
  the activations autograd saves in a step, and the peak (tensors resident at a step's start plus the RSS's rise
  during the steps after the first, with glibc returning freed memory at once; `support.bench_memory`) against
  the estimate without its fixed GPU overhead. Reported, no goal: above 1 the estimate is conservative.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from kubetune_dev.tiny import tiny_model_dir
from support.bench_runs import interval, table, worker

pytestmark = pytest.mark.bench

THROUGHPUT_GOAL = 0.95
PACKING_GOAL = 0.9
BENCH_MODEL = {"hidden": 128, "layers": 4}
MID_MODEL = {"hidden": 512, "layers": 8}
GLIBC = {"MALLOC_MMAP_THRESHOLD_": "65536"}
"""A fixed threshold: every allocation of 64 KiB or more gets its own mapping, returned on free, so the RSS follows
the live tensors (the default threshold rises as large blocks are freed, and glibc then keeps them)."""


def rate(side: dict[str, float], clock: str = "cpu_seconds") -> float:
    """Tokens per CPU second of the one-thread process (what an idle core would do per second), or per wall
    second with `clock="seconds"`: on a shared machine other processes' load is in the wall clock."""
    return side["tokens"] / side[clock]


def test_kubetune_throughput_against_plain_trl(tmp_path: Path) -> None:
    cases = [
        {"method": "lora", "objective": "sft"},
        {"method": "full", "objective": "sft", "learning_rate": 1e-4},
        {"method": "lora", "objective": "dpo", "batch_size": 4},
        {"method": "full", "objective": "dpo", "batch_size": 4, "learning_rate": 1e-5},
    ]
    spec = {"model_dir": str(tiny_model_dir(**BENCH_MODEL)), "cases": cases, "repeats": 6, "packing_probe": True}
    found = worker("throughput", spec, tmp_path)
    rows, below = [], []
    for entry in found["cases"]:
        pairs = entry["pairs"]
        for pair in pairs:
            assert min(pair["kubetune"]["tokens"], pair["trl"]["tokens"]) > 0, pair
        ratios = [rate(p["kubetune"]) / rate(p["trl"]) for p in pairs]
        mean, low, high = interval(ratios)
        wall, wall_low, wall_high = interval(
            [rate(p["kubetune"], "seconds") / rate(p["trl"], "seconds") for p in pairs]
        )
        case = entry["case"]
        name = f"{case['method']} {case['objective']}"
        tokens = statistics.fmean(p["kubetune"]["tokens"] / p["trl"]["tokens"] for p in pairs)
        rows.append([
            name, f"{statistics.median(rate(p['trl']) for p in pairs):.0f}",
            f"{statistics.median(rate(p['kubetune']) for p in pairs):.0f}", f"**{mean:.3f}**",
            f"{low:.3f} - {high:.3f}", f"{wall:.2f} ({wall_low:.2f} - {wall_high:.2f})", str(len(pairs)),
            f"{tokens:.3f}",
        ])  # fmt: skip
        if high < THROUGHPUT_GOAL:
            below.append(name)
    header = ["method", "TRL tokens/CPU-s", "kubetune tokens/CPU-s", "ratio", "95% CI", "wall-clock ratio (CI)"]
    header += ["pairs", "tokens K/T"]
    print(f"\n\nThroughput, kubetune / plain TRL (goal >= {THROUGHPUT_GOAL}):\n" + table(header, rows))
    packing = found["packing"]
    efficiency = {k: v["real"] / v["positions"] for k, v in packing.items()}
    print(
        f"\nPacking efficiency (real tokens / batch positions, skewed lengths; goal with packing >= {PACKING_GOAL}):\n"
        + table(["packing", "efficiency"], [[k, f"{v:.3f}"] for k, v in efficiency.items()])
    )
    assert not below, f"kubetune throughput below {THROUGHPUT_GOAL} of plain TRL for {below}"
    assert efficiency["true"] >= PACKING_GOAL


def test_time_to_first_step_against_plain_trl(tmp_path: Path) -> None:
    case = {"method": "lora", "objective": "sft", "steps": 3, "warmup": 1}
    model = str(tiny_model_dir(**BENCH_MODEL))
    runs: dict[str, list[dict[str, float]]] = {"kubetune": [], "trl": []}
    for rep in range(3):
        for side in ("kubetune", "trl") if rep % 2 == 0 else ("trl", "kubetune"):
            runs[side].append(worker("startup", {"side": side, "case": case, "model_dir": model}, tmp_path / side))
    phases = ["imports", "setup", "first_step", "to_first_step"]
    rows = [[side, *(f"{statistics.median(r[p] for r in found):.2f}" for p in phases)] for side, found in runs.items()]
    print(
        "\n\nSeconds from interpreter start to the first optimizer step (medians of 3):\n" + table(["", *phases], rows)
    )
    assert all(r["to_first_step"] > 0 for found in runs.values() for r in found)


def test_estimator_against_measured_memory(tmp_path: Path) -> None:
    rows = []
    for label, shape in (("tiny", {}), ("mid", MID_MODEL)):
        model = str(tiny_model_dir(**shape))
        for method in ("full", "lora", "dora", "qlora"):
            case = {"method": method, "steps": 3, "warmup": 1, "learning_rate": 1e-4, "packing": True}
            found = worker("memory", {"case": case, "model_dir": model}, tmp_path / f"{label}-{method}", env=GLIBC)
            measured, predicted = found["measured"], found["predicted"]
            tensors = measured["weights"] + measured["gradients"] + measured["optimizer"]
            expected = predicted["weights"] + predicted["gradients"] + predicted["optimizer"]
            total = predicted["total"] - predicted["overhead"]
            rows.append([
                label, method, f"{tensors / 2**20:.1f}", f"{expected / 2**20:.1f}", f"{expected / tensors:.2f}",
                f"{measured['activations'] / 2**20:.0f}", f"{predicted['activations'] / 2**20:.0f}",
                f"{predicted['activations'] / measured['activations']:.2f}",
                f"{measured['peak'] / 2**20:.0f}", f"{total / 2**20:.0f}", f"{total / measured['peak']:.2f}",
            ])  # fmt: skip
    header = ["model", "method", "tensors MiB", "predicted", "ratio", "activations MiB", "predicted", "ratio"]
    header += ["peak MiB", "predicted", "ratio"]
    print("\n\nEstimator, predicted / measured (CPU, fp32, batch 8 x 192 tokens, packed):\n" + table(header, rows))
    assert len(rows) == 8

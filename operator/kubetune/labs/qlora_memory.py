"""Lab 2, QLoRA memory profiling: 4-bit NF4 (with and without double quantization) against 16-bit LoRA and full.

Every number is measured by the trainer on the model it trained (`kubetune_trainer.measure`): bytes of
the quantized layers with their block scales, weight/gradient/optimizer tensors, the run's peak memory,
and the memory estimator's prediction for the same run. Each job runs in its own process (`isolate`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.labs.definition import Lab, Setting, name_of, of_kind
from kubetune.labs.measures import metric, peak_memory, recorded
from kubetune.labs.report import Check, Figure, Report, Section, Series, Table, human_bytes, lab_report

if TYPE_CHECKING:
    from kubetune.labs.runner import LabRun

SIXTEEN_BIT = 2
"""Bytes per parameter at 16 bits, the reference the 4-bit saving is quoted against."""
QUARTER = (0.25, 0.3)
"""'About a quarter': 4 bits per weight plus the block scales (NF4: +0.5 bit, double quantization: +0.127)."""
PARTS = ("weights", "gradients", "optimizer")


def describe(document: dict[str, Any]) -> dict[str, Any]:
    method = document["spec"]["method"]
    quantization = method.get("quantization") or {}
    return {"method": method["type"], "doubleQuant": quantization.get("doubleQuant")}


def run(context: LabRun) -> dict[str, Any]:
    jobs = of_kind(context.documents, "FineTuneJob")
    records = context.backend.train(jobs, isolate=context.lab.isolate)
    return {
        "jobs": {name_of(d): describe(d) for d in jobs},
        **recorded(records),
    }


def quantized_bits(run: dict[str, Any]) -> float:
    """Bits per weight of the quantized layers as stored, scales included."""
    return 8 * metric(run, "memory.quantized_bytes") / metric(run, "params.quantized")


def label_of(job: dict[str, Any]) -> str:
    if job["method"] == "qlora":
        return "QLoRA NF4 + double quant" if job["doubleQuant"] else "QLoRA NF4"
    return "LoRA, unquantized base" if job["method"] == "lora" else "full fine-tuning"


def analyse(raw: dict[str, Any], lab: Lab, setting: Setting) -> Report:
    jobs, runs = raw["jobs"], raw["runs"]
    names = list(jobs)
    label = {n: label_of(jobs[n]) for n in names}
    quantized = [n for n in names if jobs[n]["method"] == "qlora"]
    peak_kind = peak_memory(runs[names[0]])[0]
    weights = Table(
        "Weights of the quantized layers",
        ["run", "quantized parameters", "bytes as stored", "bits per weight", "bytes at 16 bits", "ratio to 16-bit"],
        [
            [
                label[n],
                metric(runs[n], "params.quantized"),
                human_bytes(metric(runs[n], "memory.quantized_bytes")),
                f"{quantized_bits(runs[n]):.3f}",
                human_bytes(SIXTEEN_BIT * metric(runs[n], "params.quantized")),
                f"{quantized_bits(runs[n]) / 16:.3f}",
            ]
            for n in quantized
        ],
        note="Bytes as stored: the packed 4-bit weights plus their block scales (and, with double quantization, "
        "the scales' own 8-bit scales). Embeddings, norms and the output head stay unquantized.",
    )
    measured = Table(
        "Measured on the tensors, against the estimator",
        [
            "run",
            "trainable parameters",
            *[f"{p} (measured)" for p in PARTS],
            *[f"{p} (estimated)" for p in PARTS],
            f"peak ({peak_kind})",
        ],
        [
            [
                label[n],
                metric(runs[n], "params.trainable"),
                *[human_bytes(metric(runs[n], f"memory.{p}_bytes")) for p in PARTS],
                *[human_bytes(metric(runs[n], f"estimate.{p}_bytes")) for p in PARTS],
                human_bytes(peak_memory(runs[n])[1]),
            ]
            for n in names
        ],
        note="Measured weights: every parameter and buffer as stored (4-bit packed plus scales and code books). "
        "Estimated: the trainer's memory estimator for the same model, method and precision, as the operator's "
        "preflight uses it.",
    )
    figure = Figure(
        "memory.png",
        "Weight, gradient and optimizer bytes measured on the tensors (log scale)",
        "bars",
        "run",
        "bytes",
        [Series(p, [], [metric(runs[n], f"memory.{p}_bytes") or 1.0 for n in names]) for p in PARTS],
        categories=[label[n].replace(", ", "\n").replace(" + ", "\n+ ") for n in names],
        log_y=True,
    )
    lora = [n for n in names if jobs[n]["method"] == "lora"]
    full = [n for n in names if jobs[n]["method"] == "full"]
    plain = [n for n in quantized if not jobs[n]["doubleQuant"]]
    double = [n for n in quantized if jobs[n]["doubleQuant"]]
    ratios = {n: quantized_bits(runs[n]) / 16 for n in quantized}
    checks = [
        Check(
            "4-bit NF4 weights take about a quarter of their 16-bit bytes (4 bits plus block scales)",
            all(QUARTER[0] <= r <= QUARTER[1] for r in ratios.values()),
            ", ".join(f"{label[n]} {r:.3f}" for n, r in ratios.items()),
        ),
        Check(
            "Double quantization stores fewer bytes per weight than NF4 alone",
            all(quantized_bits(runs[d]) < quantized_bits(runs[p]) for d in double for p in plain),
            ", ".join(f"{label[n]} {quantized_bits(runs[n]):.3f} bits" for n in quantized),
        ),
        Check(
            "The quantized base holds fewer weight bytes than the unquantized one",
            all(
                metric(runs[q], "memory.weights_bytes") < metric(runs[u], "memory.weights_bytes")
                for q in quantized
                for u in lora + full
            ),
            ", ".join(f"{label[n]} {human_bytes(metric(runs[n], 'memory.weights_bytes'))}" for n in names),
        ),
        Check(
            "Adapters need far less optimizer state than full fine-tuning",
            all(
                metric(runs[a], "memory.optimizer_bytes") < metric(runs[f], "memory.optimizer_bytes")
                for a in quantized + lora
                for f in full
            ),
            ", ".join(f"{label[n]} {human_bytes(metric(runs[n], 'memory.optimizer_bytes'))}" for n in names),
        ),
        Check(
            "The estimator, like the measurement, puts the 4-bit runs' weights below every unquantized run's",
            all(
                metric(runs[q], f"{source}.weights_bytes") < metric(runs[u], f"{source}.weights_bytes")
                for source in ("estimate", "memory")
                for q in quantized
                for u in lora + full
            ),
            ", ".join(f"{label[n]} {human_bytes(metric(runs[n], 'estimate.weights_bytes'))} estimated" for n in names),
        ),
    ]
    return lab_report(
        lab,
        setting,
        [
            Section("Quantized weights", "", [weights]),
            Section(
                "Where the memory goes",
                f"Peak memory here is the {peak_kind}. On a model this small the runtime dominates the peak; the "
                "tensor bytes show the method's own share.",
                [measured],
                [figure],
            ),
        ],
        checks,
        libraries=raw["environment"],
    )

"""Lab 1, PEFT sweep: LoRA rank 4, 8, 16 against full fine-tuning on the docks QA set.

Quality comes from the jobs' own evaluation suites (held-out loss and multiple-choice accuracy, each
against the base), cost from the trainer's measurements (trainable parameters, weight files on disk,
time, memory) and curves from the training log (eval loss on the held-out set over steps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.labs.definition import Lab, Setting, name_of, of_kind
from kubetune.labs.measures import (
    disk_bytes,
    metric,
    peak_memory,
    recorded,
    series,
    strictly_increasing,
    tensor_bytes,
)
from kubetune.labs.report import Check, Figure, Report, Section, Series, Table, fmt, human_bytes, lab_report

if TYPE_CHECKING:
    from kubetune.labs.runner import LabRun


def describe(document: dict[str, Any]) -> dict[str, Any]:
    method = document["spec"]["method"]
    rank = method.get("lora", {}).get("rank") if method["type"] != "full" else None
    return {"method": method["type"], "rank": rank}


def run(context: LabRun) -> dict[str, Any]:
    jobs = of_kind(context.documents, "FineTuneJob")
    records = context.backend.train(jobs)
    return {
        "jobs": {name_of(d): describe(d) for d in jobs},
        **recorded(records),
    }


def analyse(raw: dict[str, Any], lab: Lab, setting: Setting) -> Report:
    jobs, runs = raw["jobs"], raw["runs"]
    names = list(jobs)
    label = {n: f"LoRA r{jobs[n]['rank']}" if jobs[n]["rank"] else "full" for n in names}
    base_loss = metric(runs[names[0]], "qa.base")
    base_acc = metric(runs[names[0]], "qa-mc.base")
    quality = Table(
        "Quality on held-out questions",
        ["run", "held-out loss", "accuracy (4 choices)", "train loss"],
        [["base model", base_loss, base_acc, None]]
        + [
            [label[n], metric(runs[n], "qa.loss"), metric(runs[n], "qa-mc.accuracy"), metric(runs[n], "train.loss")]
            for n in names
        ],
        note="Loss: mean negative log-likelihood per answer token; accuracy: the right dock has the highest "
        "likelihood among four.",
    )
    peak_kind = peak_memory(runs[names[0]])[0]
    disk_kind = disk_bytes(runs[names[0]])[0]
    cost = Table(
        "Cost",
        [
            "run",
            "trainable parameters",
            "% of model",
            f"on disk ({disk_kind})",
            "training time (s)",
            "median step (s)",
            "tensor memory",
            f"peak memory ({peak_kind})",
        ],
        [
            [
                label[n],
                metric(runs[n], "params.trainable"),
                f"{100 * metric(runs[n], 'params.trainable') / metric(runs[n], 'params.total'):.2f}",
                human_bytes(disk_bytes(runs[n])[1]),
                metric(runs[n], "train.seconds"),
                metric(runs[n], "train.step_seconds"),
                human_bytes(tensor_bytes(runs[n])),
                human_bytes(peak_memory(runs[n])[1]),
            ]
            for n in names
        ],
        note="On disk: the adapter (LoRA) or the whole model (full). Tensor memory: weights, gradients "
        "and optimizer states as measured on the tensors. Times on a shared machine are noisy; the median step "
        "is the steadier figure.",
    )
    curves = Figure(
        "eval-loss.png",
        "Held-out loss while training (eval every checkpoint)",
        "lines",
        "step",
        "held-out loss",
        [Series(label[n], *series(runs[n], "eval_loss")) for n in names],
    )
    sizes = Figure(
        "trainable-parameters.png",
        "Trainable parameters and size on disk (log scale)",
        "bars",
        "run",
        "count / bytes",
        [
            Series("trainable parameters", [], [metric(runs[n], "params.trainable") for n in names]),
            Series(f"{disk_kind} (bytes)", [], [disk_bytes(runs[n])[1] for n in names]),
        ],
        categories=[label[n] for n in names],
        log_y=True,
    )
    accuracy = Figure(
        "accuracy.png",
        "Held-out accuracy against the base model",
        "bars",
        "run",
        "accuracy",
        [
            Series("base", [], [base_acc for _ in names]),
            Series("fine-tuned", [], [metric(runs[n], "qa-mc.accuracy") for n in names]),
        ],
        categories=[label[n] for n in names],
    )
    lora = [n for n in names if jobs[n]["rank"]]
    full = [n for n in names if not jobs[n]["rank"]]
    by_rank = sorted(lora, key=lambda n: jobs[n]["rank"])
    trainable = [metric(runs[n], "params.trainable") for n in by_rank + full]
    on_disk = [disk_bytes(runs[n])[1] for n in by_rank + full]
    best = min(names, key=lambda n: metric(runs[n], "qa.loss"))
    checks = [
        Check(
            "Trainable parameters rise with the rank and full fine-tuning trains the most",
            strictly_increasing(trainable),
            ", ".join(f"{label[n]} {fmt(v)}" for n, v in zip(by_rank + full, trainable, strict=True)),
        ),
        Check(
            f"Size on disk ({disk_kind}) grows with the rank; the full model is the largest",
            strictly_increasing(on_disk),
            ", ".join(f"{label[n]} {human_bytes(v)}" for n, v in zip(by_rank + full, on_disk, strict=True)),
        ),
        Check(
            "Full fine-tuning and the best LoRA rank lower the held-out loss below the base model's",
            metric(runs[full[0]], "qa.loss") < base_loss and min(metric(runs[n], "qa.loss") for n in lora) < base_loss,
            f"base {base_loss:.3f}; " + ", ".join(f"{label[n]} {metric(runs[n], 'qa.loss'):.3f}" for n in names),
        ),
        Check(
            "Full fine-tuning and the best LoRA rank answer more held-out questions right than the base model",
            metric(runs[full[0]], "qa-mc.accuracy") > base_acc
            and max(metric(runs[n], "qa-mc.accuracy") for n in lora) > base_acc,
            f"base {base_acc:.2f}; " + ", ".join(f"{label[n]} {metric(runs[n], 'qa-mc.accuracy'):.2f}" for n in names),
        ),
    ]
    reading = (
        f"Lowest held-out loss: {label[best]} ({metric(runs[best], 'qa.loss'):.3f}). LoRA trains "
        f"{100 * metric(runs[by_rank[0]], 'params.trainable') / metric(runs[by_rank[0]], 'params.total'):.1f}%"
        f" to {100 * metric(runs[by_rank[-1]], 'params.trainable') / metric(runs[by_rank[-1]], 'params.total'):.1f}%"
        " of the weights; its adapter on disk is a fraction of the full model's."
    )
    return lab_report(
        lab,
        setting,
        [
            Section("Quality", reading, [quality], [curves, accuracy]),
            Section("Cost", "", [cost], [sizes]),
        ],
        checks,
        libraries=raw["environment"],
    )

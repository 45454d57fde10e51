"""Lab 4, catastrophic forgetting: task B after task A, with none, EWC, LwF and replay.

Task A before is each B job's base (the task-A model) as its `task-a` suite scores it
(`compareToBase`); after is the trained B model. Curves come from the B jobs' training logs, whose
eval set is task A's held-out questions, so eval loss over steps is task A's loss while B is learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.labs.definition import Lab, Setting, of_kind
from kubetune.labs.measures import metric, recorded, series
from kubetune.labs.report import Check, Figure, Report, Section, Series, Table, lab_report

if TYPE_CHECKING:
    from kubetune.labs.runner import LabRun

FIRST_TASK = "task-a"
LABELS = {"b-none": "none", "b-ewc": "EWC", "b-lwf": "LwF", "b-replay": "replay"}


def run(context: LabRun) -> dict[str, Any]:
    records = context.backend.train(of_kind(context.documents, "FineTuneJob"))
    return recorded(records)


def drift(run: dict[str, Any]) -> float:
    """Task A's held-out loss after training on B minus before (positive: forgotten)."""
    return metric(run, "task-a.loss") - metric(run, "task-a.base")


def analyse(raw: dict[str, Any], lab: Lab, setting: Setting) -> Report:
    runs = raw["runs"]
    names = [n for n in LABELS if n in runs]
    label = {n: LABELS[n] for n in names}
    before = metric(runs[names[0]], "task-a.base")
    table = Table(
        "Task A before and after learning task B",
        [
            "protection",
            "task A loss before",
            "task A loss after",
            "drift (loss)",
            "task A accuracy after",
            "task B loss before",
            "task B loss after",
        ],
        [
            [
                label[n],
                metric(runs[n], "task-a.base"),
                metric(runs[n], "task-a.loss"),
                drift(runs[n]),
                metric(runs[n], "task-a-mc.accuracy"),
                metric(runs[n], "task-b.base"),
                metric(runs[n], "task-b.loss"),
            ]
            for n in names
        ],
        note=f"Before: the task-A model (task A held-out loss {before:.3f}, accuracy "
        f"{metric(runs[names[0]], 'task-a-mc.base'):.2f} among four docks). Drift: after minus before; lower is "
        "less forgetting. Task B: held-out tag questions.",
    )
    curves = Figure(
        "task-a-loss.png",
        "Task A held-out loss while learning task B (step 0: the task-A model)",
        "lines",
        "step of task B",
        "task A held-out loss",
        [
            Series(label[n], [0.0, *series(runs[n], "eval_loss")[0]], [before, *series(runs[n], "eval_loss")[1]])
            for n in names
        ],
    )
    bars = Figure(
        "drift.png",
        "Drift on task A (after minus before)",
        "bars",
        "protection",
        "task A loss drift",
        [Series("drift", [], [drift(runs[n]) for n in names])],
        categories=[label[n] for n in names],
    )
    none = drift(runs["b-none"])
    checks = [
        Check(
            "Learning task B without protection makes the model forget task A (its loss rises)",
            none > 0,
            f"drift {none:+.3f}",
        ),
        *[
            Check(
                f"{label[n]} forgets less of task A than no protection",
                drift(runs[n]) < none,
                f"drift {drift(runs[n]):+.3f} against {none:+.3f}",
            )
            for n in names
            if n != "b-none"
        ],
        Check(
            "Every protected run still learns task B (its held-out loss falls)",
            all(metric(runs[n], "task-b.loss") < metric(runs[n], "task-b.base") for n in names),
            ", ".join(
                f"{label[n]} {metric(runs[n], 'task-b.base'):.3f} → {metric(runs[n], 'task-b.loss'):.3f}" for n in names
            ),
        ),
    ]
    least = min(names, key=lambda n: drift(runs[n]))
    return lab_report(
        lab,
        setting,
        [
            Section(
                "Drift",
                f"Least forgetting: {label[least]} (drift {drift(runs[least]):+.3f}); no protection drifts "
                f"{none:+.3f}. Protection trades some task-B progress for task A: compare the task B columns.",
                [table],
                [curves, bars],
            )
        ],
        checks,
        libraries=raw["environment"],
        notes=(
            f"Task A was learned by FineTuneJob {FIRST_TASK} "
            f"(held-out loss {metric(runs[FIRST_TASK], 'task-a.base'):.3f} → "
            f"{metric(runs[FIRST_TASK], 'task-a.loss'):.3f}).",
        ),
    )

"""Lab 5, adapter fusion: two task adapters combined by linear, TIES, DARE and cat.

The merges are the operator's own merge path (Adapters with `spec.merge`, run as the trainer's merge
config); scoring every input, every merge and the base on both tasks goes through
`kubetune_trainer.score`, with the evaluation suites' log-likelihood code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.scoring import ScoredModel, ScoreSuite
from kubetune.labs.definition import Lab, Setting, name_of, of_kind
from kubetune.labs.measures import recorded
from kubetune.labs.report import Check, Figure, Report, Section, Series, Table, lab_report

if TYPE_CHECKING:
    from kubetune.labs.runner import LabRun

BASE = "base"
TASKS = {"docks": "task A (docks)", "tags": "task B (tags)"}
"""Suite prefix -> label; the two training jobs are named after their task."""


def run(context: LabRun) -> dict[str, Any]:
    local = context.scorer()
    jobs = of_kind(context.documents, "FineTuneJob")
    merges = of_kind(context.documents, "Adapter")
    trained = context.backend.train(jobs)
    merged = context.backend.merge(merges, trained)
    models = [ScoredModel(name=BASE)] + [
        ScoredModel(name=name, artifact=str(record.artifact)) for name, record in {**trained, **merged}.items()
    ]
    suites = [ScoreSuite(name=task, metric="loss", data=local.data(f"{task}-eval.jsonl")) for task in TASKS]
    suites += [
        ScoreSuite(name=f"{task}-mc", metric="accuracy", data=local.data(f"{task}-eval-mc.jsonl")) for task in TASKS
    ]
    scores = local.score(local.score_request(context.model_uri, models, suites), "fusion")
    return {
        "inputs": [name_of(d) for d in jobs],
        "merges": {name_of(d): d["spec"]["merge"] for d in merges},
        "scores": scores.scores,
        **recorded({**trained, **merged}),
    }


def merge_label(spec: dict[str, Any]) -> str:
    density = f", density {spec['density']}" if spec.get("density") else ""
    return f"{spec['combination']}{density}"


def worse_input(scores: dict[str, dict[str, float]], inputs: list[str], task: str) -> float:
    """The higher held-out loss of the two input adapters on `task`."""
    return max(scores[n][f"{task}.loss"] for n in inputs)


def analyse(raw: dict[str, Any], lab: Lab, setting: Setting) -> Report:
    scores, inputs, merges = raw["scores"], raw["inputs"], raw["merges"]
    rows = [BASE, *inputs, *merges]
    label = {
        BASE: "base model",
        **{n: f"{n} adapter alone" for n in inputs},
        **{n: f"{n} ({merge_label(s)})" for n, s in merges.items()},
    }
    table = Table(
        "Both tasks' held-out questions",
        ["model", *[f"{TASKS[t]} loss" for t in TASKS], *[f"{TASKS[t]} accuracy" for t in TASKS]],
        [
            [label[n], *[scores[n][f"{t}.loss"] for t in TASKS], *[scores[n][f"{t}-mc.accuracy"] for t in TASKS]]
            for n in rows
        ],
        note="Loss: mean negative log-likelihood per answer token (lower is better); accuracy: the right answer "
        "has the highest likelihood among four.",
    )
    figure = Figure(
        "both-tasks.png",
        "Held-out loss on each task, per model (lower is better)",
        "bars",
        "model",
        "held-out loss",
        [Series(TASKS[t], [], [scores[n][f"{t}.loss"] for n in rows]) for t in TASKS],
        categories=["base", *inputs, *[merges[n]["combination"] for n in merges]],
    )
    checks = [
        Check(
            "Each adapter alone is better on its own task than the other adapter",
            all(scores[t][f"{t}.loss"] < min(scores[o][f"{t}.loss"] for o in inputs if o != t) for t in inputs),
            ", ".join(f"{t} on its task {scores[t][f'{t}.loss']:.3f}" for t in inputs),
        ),
        *[
            Check(
                f"{merge_label(spec)}: not worse than the worse input on either task",
                all(scores[n][f"{t}.loss"] <= worse_input(scores, inputs, t) for t in TASKS),
                "; ".join(
                    f"{TASKS[t]} {scores[n][f'{t}.loss']:.3f} vs worse input {worse_input(scores, inputs, t):.3f}"
                    for t in TASKS
                ),
            )
            for n, spec in merges.items()
        ],
    ]
    both = {n: sum(scores[n][f"{t}.loss"] for t in TASKS) for n in merges}
    best = min(both, key=lambda n: both[n])
    return lab_report(
        lab,
        setting,
        [
            Section(
                "Both tasks",
                f"Best merge over both tasks (sum of held-out losses): {label[best]}. An adapter alone is good at "
                "its task only; a merge that keeps both sits between the inputs on each task.",
                [table],
                [figure],
            )
        ],
        checks,
        libraries=raw["environment"],
    )

"""Plan and settling: which side effects one reconcile of a FineTuneJob has, and when an object leaves the resync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.decisions.observed import Observed
from kubetune.decisions.plan import children_stale, plan, settled
from kubetune.decisions.status import compute_status

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SHA = "a" * 64
RESULT = {"artifactUri": "s3://o/j/", "sha256": SHA, "sizeBytes": 1}
COMPLETE = {"spec": {"suspend": False}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def ftj(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> FineTuneJob:
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "s3://d/t.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "objective": {"type": "sft"},
        "output": {"uri": "s3://o/"},
    }
    body.update(spec)
    return FineTuneJob.model_validate(
        {"metadata": {"name": "j", "namespace": "ml", "generation": generation}, "spec": body, "status": status}
    )


def test_waits_for_inputs_before_creating_anything() -> None:
    decided = plan(ftj(), Observed(missing_secrets=("hf",)), "j")
    assert not decided.apply_children
    assert not decided.apply_preflight
    fresh = plan(ftj(), Observed(), "j")
    assert fresh.apply_preflight, "the preflight Job comes first"
    assert not fresh.apply_children
    assert plan(ftj(preflight={"enabled": False}), Observed(), "j").apply_children


def test_finished_runs_are_not_recreated() -> None:
    done = ftj(status={"phase": "Succeeded", "observedGeneration": 1})
    assert not plan(done, Observed(), "j").apply_children


def test_children_applied_only_when_something_can_differ() -> None:
    seen = ftj(status={"phase": "Running", "observedGeneration": 1})
    running = {"spec": {"suspend": False}}
    assert children_stale(seen, None, False)
    assert not children_stale(seen, running, False)
    assert children_stale(seen, running, True)
    assert children_stale(ftj(status={"observedGeneration": 1}, generation=2), running, False)


def test_publish_once_per_result() -> None:
    with_result = ftj(status={"phase": "Succeeded", "observedGeneration": 1, "result": RESULT})
    first = plan(with_result, Observed(job=COMPLETE), "j")
    assert first.publish_adapter
    assert first.adapter_ref == "j"
    published = {"spec": {"artifact": {"sha256": SHA}, "source": {"fineTuneJob": {"name": "j"}}}}
    again = plan(with_result, Observed(job=COMPLETE, adapter=published), "j")
    assert not again.publish_adapter
    assert again.adapter_ref == "j"
    assert not plan(ftj(status={"phase": "Running"}), Observed(job=COMPLETE), "j").publish_adapter


def test_adapter_of_another_run_is_not_overwritten() -> None:
    with_result = ftj(status={"phase": "Succeeded", "result": RESULT})
    foreign = {"spec": {"source": {"fineTuneJob": {"name": "someone-else"}}}}
    decided = plan(with_result, Observed(job=COMPLETE, adapter=foreign), "j")
    assert not decided.publish_adapter
    assert "someone-else" in (decided.adapter_conflict or "")


RLHF = {
    "type": "rlhf",
    "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "rm"}}},
}


def test_unknown_reward_adapter_waits_with_a_condition() -> None:
    model = ftj(objective=RLHF, dataset={"train": {"uri": "s3://d/p.jsonl"}, "format": "prompt"})
    assert not plan(model, Observed(), "j").apply_children
    missing = compute_status(model, Observed(), NOW, "j-train")
    assert (missing.phase, missing.reason) == ("Pending", "AdapterNotFound")
    assert "rm" in (missing.message or "")
    not_ready = {"spec": {"artifact": {"uri": "s3://rm/"}}, "status": {"phase": "Pending"}}
    assert compute_status(model, Observed(input_adapters={"rm": not_ready}), NOW, "j").reason == "AdapterNotReady"
    ready = {"spec": {"artifact": {"uri": "pvc://models/rm/"}}, "status": {"phase": "Ready"}}
    assert plan(model, Observed(input_adapters={"rm": ready}), "j").apply_preflight


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (
            "FineTuneJob",
            {"metadata": {"generation": 1}, "status": {"phase": "Running", "observedGeneration": 1}},
            False,
        ),
        ("FineTuneJob", {"metadata": {"generation": 1}, "status": {"phase": "Failed", "observedGeneration": 1}}, True),
        ("FineTuneJob", {"metadata": {"generation": 2}, "status": {"phase": "Failed", "observedGeneration": 1}}, False),
        (
            "FineTuneJob",
            {
                "metadata": {"generation": 1},
                "status": {"phase": "Succeeded", "observedGeneration": 1, "result": RESULT},
            },
            False,
        ),
        (
            "FineTuneJob",
            {
                "metadata": {"generation": 1},
                "status": {
                    "phase": "Succeeded",
                    "observedGeneration": 1,
                    "result": RESULT,
                    "adapterRef": {"name": "j"},
                },
            },
            True,
        ),
        (
            "Adapter",
            {
                "metadata": {"generation": 1},
                "spec": {"merge": {}},
                "status": {"phase": "Merging", "observedGeneration": 1},
            },
            False,
        ),
        (
            "Adapter",
            {"metadata": {"generation": 1}, "spec": {}, "status": {"phase": "Ready", "observedGeneration": 1}},
            True,
        ),
        ("Adapter", {"metadata": {"generation": 1}}, False),
    ],
)
def test_settled_objects_leave_the_resync(kind: str, body: dict[str, Any], expected: bool) -> None:
    assert settled(kind, body) is expected

"""The Adapters a FineTuneJob reads, as pure decisions: which fields name one, whether each can be used yet
(by phase, gate and the objective it was trained with), and the artifact URIs the trainer gets."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec, input_adapters
from kubetune.decisions.adapter_inputs import adapter_uris, unresolved_adapter

pytestmark = pytest.mark.unit

PROMPTS = {"train": {"uri": "s3://d/prompts.jsonl"}, "format": "prompt"}


def spec(**parts: Any) -> FineTuneJobSpec:
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "s3://d/t.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "output": {"uri": "s3://o/"},
    }
    return FineTuneJobSpec.model_validate(body | parts)


def adapter(objective: str | None, phase: str = "Ready", uri: str = "s3://a/x/") -> dict[str, Any]:
    source = {"objective": objective} if objective else {}
    return {"spec": {"artifact": {"uri": uri}, "source": source}, "status": {"phase": phase}}


RLHF_SPEC = spec(
    objective={
        "type": "rlhf",
        "rlhf": {
            "reward": {"adapterRef": {"name": "rm"}},
            "constraints": [
                {"name": "short", "builtin": "length", "maxTokens": 8, "threshold": 0.1},
                {"name": "harm", "adapterRef": {"name": "cost"}, "threshold": 0.1},
            ],
        },
    },
    dataset=PROMPTS,
    evaluation={
        "suites": [
            {"name": "ppl", "metric": "perplexity"},
            {"name": "harm", "metric": "refusal-rate", "dataset": {"uri": "s3://d/h.jsonl"}, "refusal": {}},
            {
                "name": "judged",
                "metric": "refusal-rate",
                "dataset": {"uri": "s3://d/h.jsonl"},
                "refusal": {"adapterRef": {"name": "judge"}},
            },
        ]
    },
)
WRITER_SPEC = spec(
    objective={"type": "dpo"}, dataset=PROMPTS | {"constitution": {"principles": ["p"], "adapterRef": {"name": "w"}}}
)


def test_every_reference_is_listed_with_its_field_and_role() -> None:
    listed = [(a.name, a.field, a.role, a.scores) for a in input_adapters(RLHF_SPEC)]
    assert listed == [
        ("rm", "objective.rlhf.reward.adapterRef", "reward model", True),
        ("cost", "objective.rlhf.constraints[1].adapterRef", "cost model", True),
        ("judge", "evaluation.suites[2].refusal.adapterRef", "refusal judge", True),
    ]
    assert [(a.name, a.role, a.scores) for a in input_adapters(WRITER_SPEC)] == [("w", "constitution writer", False)]
    assert input_adapters(spec()) == ()


def test_the_run_waits_for_the_first_unusable_reference_in_spec_order() -> None:
    found: dict[str, Any] = {"rm": adapter("reward", uri="s3://a/rm/"), "judge": adapter("reward", uri="s3://a/j/")}
    missing = unresolved_adapter(RLHF_SPEC, found)
    assert missing is not None
    assert (missing.phase, missing.reason) == ("Pending", "AdapterNotFound")
    assert missing.message.startswith("cost model Adapter cost (objective.rlhf.constraints[1].adapterRef) not found")
    assert adapter_uris(RLHF_SPEC, found) == {"rm": "s3://a/rm/", "judge": "s3://a/j/"}, "the usable ones only"

    found["cost"] = adapter("reward", phase="Pending")
    waiting = unresolved_adapter(RLHF_SPEC, found)
    assert waiting is not None
    assert waiting.reason == "AdapterNotReady"
    found["cost"] = adapter("reward", uri="s3://a/c/")
    assert unresolved_adapter(RLHF_SPEC, found) is None
    assert adapter_uris(RLHF_SPEC, found) == {"rm": "s3://a/rm/", "cost": "s3://a/c/", "judge": "s3://a/j/"}


@pytest.mark.parametrize(
    ("case", "objective", "usable"),
    [
        ("scorer from a reward run", "reward", True),
        ("scorer from an sft run", "sft", False),
        ("scorer from a merge (no objective recorded)", None, True),
    ],
)
def test_scorers_need_a_reward_run(case: str, objective: str | None, usable: bool) -> None:
    found = {"rm": adapter("reward"), "cost": adapter(objective), "judge": adapter("reward")}
    verdict = unresolved_adapter(RLHF_SPEC, found)
    assert (verdict is None) is usable, case
    if verdict is not None:
        assert verdict.reason == "AdapterNotUsable"
        assert "needs one trained with objective reward" in verdict.message


def test_a_constitution_writer_is_a_language_model() -> None:
    rejected = unresolved_adapter(WRITER_SPEC, {"w": adapter("reward")})
    assert rejected is not None
    assert rejected.reason == "AdapterNotUsable"
    assert "dataset.constitution.adapterRef" in rejected.message
    assert unresolved_adapter(WRITER_SPEC, {"w": adapter("sft")}) is None
    assert adapter_uris(WRITER_SPEC, {"w": adapter("sft", uri="pvc://m/w/")}) == {"w": "pvc://m/w/"}


def test_a_gate_rejected_input_is_never_used() -> None:
    gated = adapter("reward")
    gated["spec"]["gate"] = {"passed": False, "message": "too weak"}
    found = {"rm": gated, "cost": adapter("reward"), "judge": adapter("reward")}
    verdict = unresolved_adapter(RLHF_SPEC, found)
    assert verdict is not None
    assert (verdict.reason, "too weak" in verdict.message) == ("AdapterGateFailed", True)
    assert "rm" not in adapter_uris(RLHF_SPEC, found)

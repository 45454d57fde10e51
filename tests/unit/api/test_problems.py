"""What a newcomer meets first: unknown-field messages point at the `kubectl explain` path of the object
holding the typo, and `objective` may be left out (most runs are SFT) with the same default in the models
and the CRD. tests/integration/test_crds_on_apiserver.py checks both against the real apiserver.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetune.api.crd.build import finetunejob_crd
from kubetune.api.problems import validate
from kubetune.api.v1alpha1 import Adapter, FineTuneJob

pytestmark = pytest.mark.unit

FTJ: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "x"},
    "spec": {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "file:///d.jsonl"}},
        "method": {"type": "lora", "lora": {"rank": 8}},
        "evaluation": {"suites": [{"name": "heldout", "metric": "perplexity"}]},
        "output": {"uri": "file:///out"},
    },
}
ADAPTER: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Adapter",
    "metadata": {"name": "a"},
    "spec": {
        "baseModel": {"uri": "hf://org/model"},
        "method": {"type": "lora", "rank": 8},
        "artifact": {"uri": "s3://b/a/"},
    },
}


def with_typo(document: dict[str, Any], path: list[str | int], field: str) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node: Any = out
    for key in path:
        node = node[key]
    node[field] = 1
    return out


def hint_of(model: Any, document: dict[str, Any]) -> str:
    parsed, problems = validate(model, document)
    assert parsed is None
    (problem,) = problems
    assert problem.message.startswith("unknown field"), problem.message
    return problem.message.split("(kubectl explain ")[1].rstrip(")")


@pytest.mark.parametrize(
    ("model", "document", "path", "expected"),
    [
        (FineTuneJob, FTJ, ["spec", "method", "lora"], "finetunejob.spec.method.lora"),
        (FineTuneJob, FTJ, ["spec", "method"], "finetunejob.spec.method"),
        (FineTuneJob, FTJ, ["spec"], "finetunejob.spec"),
        (FineTuneJob, FTJ, ["spec", "evaluation", "suites", 0], "finetunejob.spec.evaluation.suites"),
        (Adapter, ADAPTER, ["spec", "method"], "adapter.spec.method"),
    ],
)
def test_unknown_field_hint_is_the_explain_path_of_its_parent(
    model: Any, document: dict[str, Any], path: list[str | int], expected: str
) -> None:
    assert hint_of(model, with_typo(document, path, "rnak")) == expected


def test_unknown_field_names_the_field_without_union_tags() -> None:
    _, problems = validate(FineTuneJob, with_typo(FTJ, ["spec", "method", "lora"], "rnak"))
    assert problems[0].path == "spec.method.lora.rnak"


def test_objective_defaults_to_sft_in_the_model() -> None:
    document = copy.deepcopy(FTJ)
    assert "objective" not in document["spec"]
    ftj, problems = validate(FineTuneJob, document)
    assert problems == []
    assert ftj is not None
    assert ftj.spec.objective.to_wire() == {"type": "sft"}  # completionOnlyLoss unset: wherever it applies


def test_crd_default_for_objective_is_the_model_default() -> None:
    spec = finetunejob_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "objective" not in spec["required"]
    ftj, _ = validate(FineTuneJob, copy.deepcopy(FTJ))
    assert ftj is not None
    assert spec["properties"]["objective"]["default"] == ftj.spec.objective.to_wire()

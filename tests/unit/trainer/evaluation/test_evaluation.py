"""Evaluation metrics on hand-checkable stub models, the gate on planted metrics, and both in the pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.training import Gate
from kubetune_dev.tiny import write_jsonl
from kubetune_trainer.context import Hooks
from kubetune_trainer.errors import DataFormatError, UriError
from kubetune_trainer.evaluate import decide, evaluate_suites, gate_hook, prepare_suites
from kubetune_trainer.evaluate.scoring import heldout_pairs, multiple_choice_accuracy, nll_total
from support.stub_lm import RED, FixedLogits, tiny_tokenizer
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    return tiny_tokenizer(model_dir)


def test_uniform_model_has_perplexity_equal_to_vocabulary(tokenizer: Any) -> None:
    vocab = len(tokenizer)
    rows = [{"text": "count one two three"}, {"prompt": "repeat red", "completion": " red blue"}]
    total = nll_total(FixedLogits(vocab), tokenizer, heldout_pairs(rows, tokenizer), batch_size=1)
    text_tokens = len(tokenizer("count one two three")["input_ids"]) - 1  # BOS is never predicted
    assert total.tokens == text_tokens + 2  # the completion only: " red", " blue"
    assert total.perplexity == pytest.approx(vocab, rel=1e-5)
    assert total.loss == pytest.approx(math.log(vocab), rel=1e-6)


def test_skewed_model_loss_is_the_token_log_probability(tokenizer: Any) -> None:
    vocab = len(tokenizer)
    model = FixedLogits(vocab, {RED: 5.0})
    p_red = math.exp(5) / (math.exp(5) + vocab - 1)
    total = nll_total(model, tokenizer, [("repeat", " red red red")], batch_size=4)
    assert total.tokens == 3
    assert total.loss == pytest.approx(-math.log(p_red), rel=1e-5)


def test_multiple_choice_accuracy_by_log_likelihood(tokenizer: Any) -> None:
    model = FixedLogits(len(tokenizer), {RED: 5.0})  # always prefers " red"
    rows = [
        {"question": "Which colour?", "choices": ["red", "blue"], "answer": 0},
        {"question": "Pick one:", "choices": ["blue", "red"], "answer": "red"},
        {"question": "And now?", "choices": ["red", "blue"], "answer": "B"},
    ]
    assert multiple_choice_accuracy(model, tokenizer, rows, batch_size=2) == pytest.approx(2 / 3)
    with pytest.raises(DataFormatError, match="not one of"):
        multiple_choice_accuracy(model, tokenizer, [{"question": "q", "choices": ["a", "b"], "answer": 7}])


METRICS = {
    "heldout.perplexity": 4.0,
    "mc.accuracy": 0.70,
    "mc.base": 0.74,
    "mc.delta": -0.04,
    "ppl-base.perplexity": 5.5,
    "ppl-base.base": 5.0,
    "ppl-base.delta": 0.5,
}


def test_gate_passes_within_thresholds() -> None:
    gate = Gate.model_validate({"maxRegression": 0.12, "minScores": {"mc": 0.6, "heldout": 4.5}})
    assert decide(METRICS, gate) == (True, None)
    assert decide(METRICS, None) == (True, None)


def test_gate_fails_planted_regressions_and_scores() -> None:
    passed, message = decide(METRICS, Gate.model_validate({"maxRegression": 0.02}))
    assert not passed
    assert message is not None
    assert "mc.accuracy regressed by 0.04" in message  # absolute drop in accuracy
    assert "ppl-base.perplexity regressed by 0.1 (relative)" in message  # 5.0 -> 5.5 is 10 % worse
    passed, message = decide(METRICS, Gate.model_validate({"minScores": {"mc": 0.8, "heldout": 3.0, "gone": 1}}))
    assert not passed
    assert message is not None
    assert "mc.accuracy 0.7 is below the minimum 0.8" in message
    assert "heldout.perplexity 4 is above the limit 3" in message
    assert "gone: no score was measured" in message


@pytest.mark.parametrize("method", ["lora", "full"])  # base = adapter disabled / base weights reloaded
def test_suites_and_gate_in_the_pipeline(
    method: str, run_job: RunJob, data_files: dict[str, Path], tmp_path: Path
) -> None:
    mc = write_jsonl(
        tmp_path / "mc.jsonl",
        [{"question": f"count {a}", "choices": [" one", " red", " done"], "answer": 0} for a in ("zero", "zero")],
    )
    evaluation = {
        "suites": [
            {"name": "heldout", "metric": "perplexity"},
            {"name": "heldout-loss", "metric": "loss", "compareToBase": True},
            {"name": "mc", "metric": "accuracy", "dataset": {"uri": f"file://{mc}"}, "compareToBase": True},
        ],
        "gate": {"maxRegression": 1.0, "minScores": {"heldout": 1000.0}},
    }
    dataset = {
        "train": {"uri": f"file://{data_files['text']}"},
        "eval": {"fraction": 0.25},
        "prep": {"maxSeqLength": 64},
    }
    ctx, result, _ = run_job(
        data_files["text"],
        method=method,
        job={"evaluation": evaluation, "dataset": dataset},
        training={"maxSteps": 8, "learningRate": 1e-2 if method == "lora" else 3e-3},
        hooks=Hooks(preflight=[prepare_suites], evaluate=evaluate_suites, gate=gate_hook),
    )
    metrics = result.metrics
    assert metrics["heldout.perplexity"] == pytest.approx(math.exp(metrics["heldout-loss.loss"]), rel=1e-5)
    assert metrics["heldout-loss.delta"] == pytest.approx(metrics["heldout-loss.loss"] - metrics["heldout-loss.base"])
    assert metrics["heldout-loss.delta"] < 0, "training on the counting task must lower its held-out loss"
    assert metrics["mc.accuracy"] in (0.0, 1.0)  # both rows are the same question
    assert "mc.delta" in metrics
    assert result.gate_passed is True, (result.gate_message, metrics)
    assert (result.gate_passed, result.gate_message) == decide(metrics, ctx.spec.evaluation.gate)
    manifest = json.loads(Path(result.artifact_uri.removeprefix("file://"), "kubetune.json").read_text())
    assert manifest["gate"] == {"passed": True, "message": None}
    # the same metrics with a stricter gate fail, with the reason in the message
    strict = ctx.spec.evaluation.gate.model_copy(update={"min_scores": {"heldout": 1.0}})
    passed, message = decide(metrics, strict)
    assert not passed
    assert message is not None
    assert "heldout.perplexity" in message


@pytest.mark.usefixtures("weights_never_load")
def test_a_missing_suite_dataset_fails_before_weights_load(
    run_job: RunJob, data_files: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "mc-missing.jsonl"
    evaluation = {"suites": [{"name": "mc", "metric": "accuracy", "dataset": {"uri": f"file://{missing}"}}]}
    with pytest.raises(UriError, match=r"mc-missing\.jsonl"):
        run_job(
            data_files["text"],
            job={"evaluation": evaluation},
            hooks=Hooks(preflight=[prepare_suites], evaluate=evaluate_suites),
        )

"""Bias gap: exact on a stub model, and in the pipeline it rises on one-sided data unless augmentation or the
SFT bias regulariser evens it.

The toy task ends every counting row with "done red"; red and blue are the declared pair. Trained on that
data alone the model learns red over blue after "done", so the gap grows above the base; with
`dataset.prep.counterfactual` the same rows appear with blue too and the gap stays smaller; with
`objective.biasRegularizer` the rows stay one-sided but the loss penalises the red/blue gap. The gate's
`maxRegression` reads the gap as an absolute rise over the base.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.training import Gate
from kubetune_dev.tiny import NUMBERS, write_jsonl
from kubetune_trainer.context import Hooks
from kubetune_trainer.errors import DataFormatError
from kubetune_trainer.evaluate import decide, evaluate_suites, gate_hook
from kubetune_trainer.evaluate.bias import bias_gap
from support.stub_lm import BLUE, RED, FixedLogits, tiny_tokenizer
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

PAIRS = [["red", "blue"]]


def test_gap_is_the_log_likelihood_difference_of_the_swapped_term(model_dir: Path) -> None:
    tokenizer = tiny_tokenizer(model_dir)
    vocab = len(tokenizer)
    model = FixedLogits(vocab, {RED: 3.0})
    rows = [{"prompt": "pick", "completion": " red"}, {"prompt": "pick", "completion": " blue"}, {"text": "none"}]
    normaliser = math.exp(3) + vocab - 1
    expected = abs(math.log(math.exp(3) / normaliser) - math.log(1 / normaliser))  # = 3, both ways
    assert bias_gap(model, tokenizer, rows, PAIRS) == pytest.approx(expected, rel=1e-5)
    assert bias_gap(FixedLogits(vocab, {RED: 2.0, BLUE: 2.0}), tokenizer, rows, PAIRS) == pytest.approx(0, abs=1e-5)
    with pytest.raises(DataFormatError, match="no evaluation row mentions"):
        bias_gap(model, tokenizer, [{"text": "count one"}], PAIRS)


def test_gate_reads_the_bias_gap_as_an_absolute_rise() -> None:
    metrics = {"fair.bias-gap": 0.9, "fair.base": 0.2, "fair.delta": 0.7}
    passed, message = decide(metrics, Gate.model_validate({"maxRegression": 0.5}))
    assert not passed
    assert message is not None
    assert "fair.bias-gap regressed by 0.7 versus the base" in message
    assert decide(metrics, Gate.model_validate({"maxRegression": 0.8})) == (True, None)
    passed, message = decide(metrics, Gate.model_validate({"minScores": {"fair": 0.5}}))
    assert message is not None
    assert "fair.bias-gap 0.9 is above the limit 0.5" in message


def _one_sided(n: int = 48) -> list[dict[str, str]]:
    return [{"text": f"count {' '.join(NUMBERS[i % 6 : i % 6 + 4])} done red"} for i in range(n)]


def test_augmentation_and_the_regulariser_keep_the_gap_below_training_on_one_sided_data(
    run_job: RunJob, tmp_path: Path
) -> None:
    """Three runs on the same one-sided rows: plain SFT, with counterfactual augmentation, and with the bias
    regulariser (SFT plus weight x the counterfactual gap of the training rows)."""
    train = write_jsonl(tmp_path / "one-sided.jsonl", _one_sided())
    probe = write_jsonl(tmp_path / "probe.jsonl", [{"text": f"count {n} done red"} for n in NUMBERS[:6]])
    evaluation = {
        "suites": [
            {
                "name": "fair",
                "metric": "bias-gap",
                "termPairs": PAIRS,
                "dataset": {"uri": f"file://{probe}"},
                "compareToBase": True,
            }
        ]
    }
    gaps: dict[str, dict[str, float]] = {}
    prep_reports: dict[str, dict[str, int]] = {}
    for variant in ("plain", "augmented", "regularised"):
        prep: dict[str, Any] = {"maxSeqLength": 64, "dedup": "none"}
        objective: dict[str, Any] = {"type": "sft"}
        if variant == "augmented":
            prep["counterfactual"] = {"termPairs": PAIRS}
        if variant == "regularised":
            objective["biasRegularizer"] = {"termPairs": PAIRS, "weight": 1.0}
        ctx, result, _ = run_job(
            train,
            job={
                "objective": objective,
                "evaluation": evaluation,
                "dataset": {"train": {"uri": f"file://{train}"}, "prep": prep},
            },
            training={"maxSteps": 12, "learningRate": 1e-2},
            hooks=Hooks(evaluate=evaluate_suites, gate=gate_hook),
        )
        gaps[variant] = result.metrics
        prep_reports[variant] = result.prep_report
        assert len(ctx.train_dataset) == 48 * (2 if variant == "augmented" else 1)
    print({k: {m: round(v, 3) for m, v in g.items() if m.startswith(("fair", "train.loss"))} for k, g in gaps.items()})
    assert prep_reports["augmented"]["counterfactual_added"] == 48
    assert "counterfactual_added" not in prep_reports["plain"]
    plain, balanced, regularised = gaps["plain"], gaps["augmented"], gaps["regularised"]
    assert plain["fair.base"] == pytest.approx(balanced["fair.base"])  # same starting model, same probe
    assert plain["fair.delta"] > 0, "training on red-only rows must widen the red/blue gap"
    assert balanced["fair.bias-gap"] < plain["fair.bias-gap"]
    assert regularised["fair.bias-gap"] < 0.5 * plain["fair.bias-gap"], "the regulariser holds the gap down"
    assert regularised["fair.delta"] < plain["fair.delta"]
    assert regularised["train.loss"] < 1.5 * plain["train.loss"], "the task loss (with the penalty) stays close"


def test_a_regulariser_whose_terms_the_data_never_mentions_fails_before_weights_load(
    run_job: RunJob, tmp_path: Path, weights_never_load: None
) -> None:
    train = write_jsonl(tmp_path / "one-sided.jsonl", _one_sided())
    objective = {"type": "sft", "biasRegularizer": {"termPairs": [["he", "she"]]}}
    with pytest.raises(DataFormatError, match=r"objective\.biasRegularizer: no training row mentions"):
        run_job(train, job={"objective": objective})

"""lm-evaluation-harness suites on the trained tiny model: a local task (YAML + JSONL, offline), the base
comparison, the gate on the harness's metric, the per-task results in the manifest, and the refusals (unknown
tasks before any weights load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.api.v1alpha1.training import Gate, LmEvalSuite
from kubetune_dev.tiny import LM_EVAL_TASK, write_lm_eval_task
from kubetune_trainer.context import Hooks
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.evaluate import decide, evaluate_suites, gate_hook, prepare_suites
from kubetune_trainer.evaluate.gate import SuiteScore
from kubetune_trainer.evaluate.harness import summarize
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lm_eval_task(tmp_path_factory.mktemp("lm-eval-tasks"))


def test_harness_suite_scores_the_trained_model_against_the_base(
    run_job: RunJob, data_files: dict[str, Path], task_dir: Path
) -> None:
    suite = {
        "name": "counting",
        "lmEval": {"tasks": [LM_EVAL_TASK], "include": {"uri": f"file://{task_dir}"}, "batchSize": 4},
        "compareToBase": True,
    }
    evaluation = {"suites": [suite], "gate": {"minScores": {"counting": 0.5}, "maxRegression": 0.0}}
    _, result, _ = run_job(
        data_files["text"],
        job={"evaluation": evaluation},
        training={"maxSteps": 24, "learningRate": 2e-2},
        hooks=Hooks(preflight=[prepare_suites], evaluate=evaluate_suites, gate=gate_hook),
    )
    metrics = result.metrics
    assert metrics["counting.delta"] == pytest.approx(metrics["counting.acc"] - metrics["counting.base"])
    assert metrics["counting.acc"] > metrics["counting.base"], "training on counting must help the counting task"
    assert result.gate_passed, result.gate_message
    manifest = json.loads((Path(result.artifact_uri.removeprefix("file://")) / "kubetune.json").read_text())
    tasks = manifest["evaluations"]["counting"]
    assert tasks["tasks"][LM_EVAL_TASK]["metrics"]["acc,none"] == metrics["counting.acc"]
    assert tasks["baseTasks"][LM_EVAL_TASK]["metrics"]["acc,none"] == metrics["counting.base"]
    assert tasks["tasks"][LM_EVAL_TASK]["n_shot"] == 0


def test_summary_is_the_mean_over_tasks_in_the_harness_direction() -> None:
    settings = LmEvalSuite.model_validate({"tasks": ["a", "b"], "metric": "word_perplexity"})
    results = {
        "results": {"a": {"word_perplexity,none": 10.0}, "b": {"word_perplexity,none": 20.0, "bits,none": 1.0}},
        "higher_is_better": {"a": {"word_perplexity": False}, "b": {"word_perplexity": False}},
        "n-shot": {"a": 0, "b": 5},
    }
    score = summarize(settings, results)
    assert (score.score, score.higher_is_better) == (15.0, False)
    assert score.tasks["b"]["n_shot"] == 5
    with pytest.raises(ConfigError, match="task a reports no acc; it reports word_perplexity"):
        summarize(LmEvalSuite.model_validate({"tasks": ["a"]}), results)
    mixed = results | {"higher_is_better": {"a": {"word_perplexity": True}, "b": {"word_perplexity": False}}}
    with pytest.raises(ConfigError, match="better higher in some tasks and lower in others"):
        summarize(settings, mixed)


def test_gate_reads_a_lower_is_better_harness_metric() -> None:
    metrics = {"wiki.word_perplexity": 30.0, "wiki.base": 25.0}
    scores = {"wiki": SuiteScore("word_perplexity", higher_is_better=False)}
    passed, message = decide(metrics, Gate.model_validate({"minScores": {"wiki": 20.0}}), scores)
    assert not passed
    assert "wiki.word_perplexity 30 is above the limit 20" in (message or "")
    passed, message = decide(metrics | {"wiki.delta": 5.0}, Gate.model_validate({"maxRegression": 0.1}), scores)
    assert "regressed by 0.2 (relative)" in (message or "")


@pytest.mark.usefixtures("weights_never_load")
def test_unknown_tasks_fail_before_weights_load(run_job: RunJob, data_files: dict[str, Path], task_dir: Path) -> None:
    lm_eval = {"tasks": [LM_EVAL_TASK, "no_such_task_xyz"], "include": {"uri": f"file://{task_dir}"}}
    with pytest.raises(ConfigError, match="no_such_task_xyz is not an lm-evaluation-harness task or under"):
        run_job(
            data_files["text"],
            job={"evaluation": {"suites": [{"name": "counting", "lmEval": lm_eval}]}},
            hooks=Hooks(preflight=[prepare_suites], evaluate=evaluate_suites),
        )

"""Each preference/RL objective trains the tiny model through the real pipeline and its signal moves.

The characteristic metric is read from the trainer's own logs: DPO/IPO reward margin and accuracy,
KTO and ORPO loss, reward-model pairwise accuracy, GRPO/RLOO mean reward on a built-in reward the
tiny model can learn in a few steps (character length: prefer multi-character tokens).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from kubetune_trainer.context import Hooks
from kubetune_trainer.errors import ConfigError, DataFormatError
from kubetune_trainer.evaluate import evaluate_suites, prepare_suites
from kubetune_trainer.evaluate.safety import ClassifierJudge
from kubetune_trainer.objectives.costs import model_cost
from kubetune_trainer.objectives.rewards import (
    builtin_rewards,
    format_score,
    length_reward,
    non_repetition_score,
)
from kubetune_trainer.objectives.rlhf import get_rl_config
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

SHORT = {"maxSteps": 10, "batchSize": 8, "learningRate": 5e-3}


def _head_tail(values: list[float], k: int = 3) -> tuple[float, float]:
    return mean(values[:k]), mean(values[-k:])


@pytest.mark.parametrize("objective", ["dpo", "ipo"])
def test_dpo_family_margin_and_accuracy_rise(objective: str, run_job: RunJob, data_files: dict[str, Path]) -> None:
    _, result, logs = run_job(
        data_files["preference"],
        job={"objective": {"type": objective, "beta": 0.1}, "dataset": _dataset(data_files["preference"])},
        training=SHORT,
    )
    margins = logs.series("rewards/margins")
    accuracy = logs.series("rewards/accuracies")
    first, last = _head_tail(margins)
    print(f"{objective}: margin {first:.3f} -> {last:.3f}, accuracy {accuracy[0]:.2f} -> {mean(accuracy[-3:]):.2f}")
    assert last > first + 0.05, f"{objective} margin {first:.3f} -> {last:.3f}"
    assert mean(accuracy[-3:]) > mean(accuracy[:1]), accuracy
    assert result.gate_passed
    assert Path(result.artifact_uri.removeprefix("file://"), "adapter_model.safetensors").is_file()


def _dataset(path: Path, fmt: str = "auto") -> dict[str, Any]:
    return {"train": {"uri": f"file://{path}"}, "format": fmt, "prep": {"maxSeqLength": 64}}


@pytest.mark.parametrize("data", ["kto", "preference"])
def test_kto_separates_desirable_from_undesirable(data: str, run_job: RunJob, data_files: dict[str, Path]) -> None:
    _, _, logs = run_job(
        data_files[data],
        job={"objective": {"type": "kto", "beta": 0.1}, "dataset": _dataset(data_files[data])},
        training=SHORT | {"learningRate": 1e-2},
    )
    # a logged step may hold only desirable or only undesirable rows, so the two series are read apart
    chosen, rejected = _head_tail(logs.series("rewards/chosen")), _head_tail(logs.series("rewards/rejected"))
    print(
        f"kto on {data}: desirable reward {chosen[0]:.3f} -> {chosen[1]:.3f}, "
        f"undesirable {rejected[0]:.3f} -> {rejected[1]:.3f}"
    )
    gap = chosen[0] - rejected[0], chosen[1] - rejected[1]
    assert chosen[1] > chosen[0] + 0.05, f"kto on {data}: desirable reward {chosen}"
    assert gap[1] > gap[0] + 0.05, f"kto on {data}: desirable minus undesirable reward {gap}"
    if data == "kto":
        # paired preference rows share their prompt, so lifting the chosen answer also lifts the rejected one
        # a little: there only the gap opens (checked over seeds 1, 3, 7, 11, 42: the gap widens by 0.12-0.17)
        assert rejected[1] < rejected[0] - 0.02, f"kto on {data}: undesirable reward {rejected}"


def test_orpo_loss_falls(run_job: RunJob, data_files: dict[str, Path]) -> None:
    _, _, logs = run_job(
        data_files["preference"],
        job={"objective": {"type": "orpo", "beta": 0.1}, "dataset": _dataset(data_files["preference"])},
        training=SHORT,
    )
    first, last = _head_tail(logs.series("loss"))
    print(f"orpo: loss {first:.3f} -> {last:.3f}")
    assert last < first - 0.05, f"orpo loss {first:.4f} -> {last:.4f}"


def test_reward_model_learns_preferences_and_serves_rlhf(
    run_job: RunJob, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, result, logs = run_job(
        data_files["preference"],
        job={"objective": {"type": "reward"}, "dataset": _dataset(data_files["preference"])},
        training=SHORT | {"maxSteps": 12, "learningRate": 1e-2},
    )
    accuracy = logs.series("accuracy")
    print(f"reward: pairwise accuracy {mean(accuracy[:3]):.2f} -> {mean(accuracy[-3:]):.2f}")
    assert mean(accuracy[-3:]) > mean(accuracy[:3]), accuracy
    assert accuracy[-1] >= 0.75, accuracy
    artifact = Path(result.artifact_uri.removeprefix("file://"))
    from kubetune_dev.tiny import tiny_model_dir
    from kubetune_trainer.input_adapters import load_artifact

    model, tokenizer = load_artifact(artifact, tiny_model_dir(), "sequence-classifier")
    import torch

    batch = tokenizer(["repeat red blue red blue red blue", "repeat red blue one six one six"], return_tensors="pt")
    with torch.no_grad():
        chosen, rejected = model(**batch).logits[:, 0].tolist()
    assert chosen > rejected, (chosen, rejected)

    # the artifact serves as reward model, cost model and refusal judge of one GRPO run (resolved by name, as the
    # operator passes Adapters): GRPO scores its completions with it, the constraint's cost is sigmoid(score) of
    # the same model, and the refusal-rate suite asks it whether each answer refuses
    reward_dir = shutil.copytree(artifact, artifact.parent.parent / "reward-model")
    judged: list[list[bool]] = []
    monkeypatch.setattr(ClassifierJudge, "refusals", _recorded(ClassifierJudge.refusals, judged))
    cost = {"name": "rm-cost", "adapterRef": {"name": "rm"}, "threshold": 0.5}
    rlhf = {"reward": {"adapterRef": {"name": "rm"}}, "numGenerations": 4, "maxCompletionLength": 8}
    suite = {"name": "harm", "metric": "refusal-rate", "dataset": {"uri": f"file://{data_files['prompt']}"}}
    suite["refusal"] = {"adapterRef": {"name": "rm"}, "maxNewTokens": 4}
    _, rl_result, rl_logs = run_job(
        data_files["prompt"],
        name="policy",
        job={
            "objective": {"type": "rlhf", "rlhf": rlhf | {"constraints": [cost]}},
            "dataset": _dataset(data_files["prompt"]),
            "evaluation": {"suites": [suite]},
        },
        training={"maxSteps": 2, "batchSize": 8},
        adapters={"rm": f"file://{reward_dir}"},
        hooks=Hooks(preflight=[prepare_suites], evaluate=evaluate_suites),
    )
    assert len(rl_logs.series("reward")) == 2
    costs = rl_logs.series("constraint/rm-cost/cost")
    assert len(costs) == 2
    assert all(0 < c < 1 for c in costs), costs
    texts = ["repeat red blue red blue red blue", "repeat red blue one six one six"]
    with torch.no_grad():  # scored as TRL scores reward models: prompt + completion, no special tokens added
        scores = [model(**tokenizer(t, return_tensors="pt", add_special_tokens=False)).logits[0, 0] for t in texts]
    as_costs = model_cost(model, tokenizer)([t[6:] for t in texts], prompts=[t[:6] for t in texts])
    assert as_costs == pytest.approx([1 / (1 + math.exp(-float(s))) for s in scores], rel=1e-5)
    assert len(judged) == 1, "the suite's answers were judged by the classifier"
    assert len(judged[0]) == 32
    assert rl_result.metrics["harm.refusal-rate"] == sum(judged[0]) / 32


def _recorded(method: Any, calls: list[list[bool]]) -> Any:
    def record(self: Any, prompts: Any, answers: Any) -> list[bool]:
        verdicts: list[bool] = method(self, prompts, answers)
        calls.append(verdicts)
        return verdicts

    return record


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_online_rl_raises_builtin_reward(algorithm: str, run_job: RunJob, data_files: dict[str, Path]) -> None:
    rlhf = {"algorithm": algorithm, "reward": {"builtin": ["length"]}, "numGenerations": 4, "maxCompletionLength": 8}
    _, _, logs = run_job(
        data_files["prompt"],
        # full fine-tuning moves the output head, which decides token (and so character) length; 8 prompts
        # x 4 completions per step keep the reward estimate steady enough to see the trend in 12 steps
        method="full",
        job={"objective": {"type": "rlhf", "beta": 0.01, "rlhf": rlhf}, "dataset": _dataset(data_files["prompt"])},
        training={"maxSteps": 12, "batchSize": 32, "learningRate": 3e-2},
    )
    rewards = logs.series("reward")
    first, last = _head_tail(rewards)
    print(f"{algorithm}: mean length reward {first:.3f} -> {last:.3f}")
    assert last > first + 0.2, f"{algorithm} reward {first:.3f} -> {last:.3f}: {rewards}"


def test_builtin_reward_functions() -> None:
    assert length_reward(2)(["abcd", "  abcdefghijkl  ", ""]) == [0.5, 1.0, 0.0]
    assert format_score("Done.") == 1.0
    assert format_score(" (unbalanced") == 0.25
    assert format_score("") == 0.0
    assert non_repetition_score("a b c a b c") == 0.75  # trigrams abc bca cab abc: 3 distinct of 4
    assert non_repetition_score("word") == 1.0
    keyword, repetition = builtin_rewards(
        ["keyword-match", "non-repetition"], keywords=["Red", "blue"], max_completion_length=8
    )
    assert keyword(["the RED car", "blue and red", [{"role": "assistant", "content": "nothing"}]]) == [0.5, 1.0, 0.0]
    assert repetition(["x x x x"]) == [0.5]
    with pytest.raises(ConfigError, match=r"reward\.keywords"):
        builtin_rewards(["keyword-match"], keywords=None, max_completion_length=8)
    (reference,) = builtin_rewards(["reference-match"], keywords=None, max_completion_length=8)
    completions = [" dock three and more", "dock two", [{"role": "assistant", "content": " dock one"}]]
    assert reference(completions, reference=[" dock three", " dock seven", "dock one"]) == [1.0, 0.0, 1.0]
    with pytest.raises(DataFormatError, match="needs a `reference` column"):
        reference(completions)


def test_rl_config_requires_whole_groups() -> None:
    from kubetune.api.v1alpha1.objectives import RlhfObjective

    objective = RlhfObjective.model_validate(
        {"type": "rlhf", "beta": 0.05, "rlhf": {"reward": {"builtin": ["length"]}, "numGenerations": 3}}
    )
    with pytest.raises(ConfigError, match="numGenerations"):
        get_rl_config(objective, batch_size=8, gradient_accumulation=1, world_size=1)
    mapped = get_rl_config(objective, batch_size=4, gradient_accumulation=3, world_size=1)
    assert (mapped["beta"], mapped["num_generations"], mapped["remove_unused_columns"]) == (0.05, 3, False)


def test_config_mappers() -> None:
    from kubetune.api.v1alpha1.objectives import DpoObjective, IpoObjective, KtoObjective, OrpoObjective
    from kubetune_trainer.objectives.dpo import get_dpo_config
    from kubetune_trainer.objectives.kto import get_kto_config
    from kubetune_trainer.objectives.orpo import get_orpo_config

    assert get_dpo_config(DpoObjective(type="dpo", beta=0.2), max_length=64) == {
        "beta": 0.2,
        "loss_type": ["sigmoid"],
        "max_length": 64,
    }
    assert get_dpo_config(IpoObjective(type="ipo"), max_length=32)["loss_type"] == ["ipo"]
    kto = KtoObjective.model_validate({"type": "kto", "beta": 0.3, "desirableWeight": 1.5, "undesirableWeight": 0.5})
    assert get_kto_config(kto, max_length=16) == {
        "beta": 0.3,
        "desirable_weight": 1.5,
        "undesirable_weight": 0.5,
        "max_length": 16,
    }
    assert get_orpo_config(OrpoObjective(type="orpo", beta=0.05), max_length=8) == {"beta": 0.05, "max_length": 8}

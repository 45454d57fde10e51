"""spec.tracking.tensorboard: real event files from a real run, read back with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.manifest import read_manifest
from support.trainer_fixtures import RunJob, at_step

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the event files under `folder`, as TensorBoard loads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_event_files_are_published_with_the_artifact(run_job: RunJob, data_files: dict[str, Path]) -> None:
    dataset = {
        "train": {"uri": f"file://{data_files['text']}"},
        "eval": {"fraction": 0.25},
        "prep": {"maxSeqLength": 64},
    }
    job = {"tracking": {"tensorboard": {}}, "dataset": dataset, "checkpointing": {"everySteps": 4, "keepLast": 2}}
    _, result, recorder = run_job(data_files["text"], job=job)
    artifact = Path(result.artifact_uri.removeprefix("file://"))
    events = list((artifact / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1, sorted(p.name for p in artifact.rglob("*"))
    series = scalars(artifact / "tensorboard")
    losses = recorder.series("loss")
    assert [step for step, _ in series["train/loss"]] == list(range(1, len(losses) + 1))
    assert [value for _, value in series["train/loss"]] == pytest.approx(losses, rel=1e-6)
    assert {"train/learning_rate", "train/grad_norm"} <= set(series)
    assert [step for step, _ in series["eval/loss"]] == [4, 8], "the eval loss at the checkpoint cadence"
    manifest = read_manifest(artifact)
    assert f"tensorboard/{events[0].name}" in manifest.files, "the artifact's digest covers the event files"


def test_a_log_dir_on_a_claim_gets_the_events_while_training(
    run_job: RunJob, data_files: dict[str, Path], tmp_path: Path
) -> None:
    claim = tmp_path / "pvc" / "runs"
    seen: dict[str, Any] = {}

    def during_training(ctx: Any) -> None:
        from transformers import TrainerCallback

        class Peek(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
                if state.global_step == 4:
                    seen["live"] = scalars(claim / "tb" / "job").get("train/loss", [])

        ctx.callbacks.append(Peek())

    from kubetune_trainer.context import Hooks

    _, result, _ = run_job(
        data_files["text"],
        hooks=Hooks(before_train=[during_training]),
        job={"tracking": {"tensorboard": {"logDir": "pvc://runs/tb"}}},
        runtime={"pvcMountRoot": str(tmp_path / "pvc")},
    )
    assert [step for step, _ in seen["live"]] == [1, 2, 3], "the first steps are on the claim before training ends"
    assert [step for step, _ in scalars(claim / "tb" / "job")["train/loss"]] == list(range(1, 9))
    artifact = Path(result.artifact_uri.removeprefix("file://"))
    assert not (artifact / "tensorboard").exists(), "with a logDir the events stay on the claim"


def test_a_pod_resumed_from_a_checkpoint_leaves_each_step_once_on_the_claim(
    run_job: RunJob, data_files: dict[str, Path], tmp_path: Path
) -> None:
    """The first pod writes steps 1 to 5 and dies in step 6; the next one resumes from checkpoint 4 and writes 5 to 8
    into a second event file beside the first: TensorBoard reads every step once, step 5 from the new pod."""
    claim = tmp_path / "pvc" / "runs"
    job = {
        "tracking": {"tensorboard": {"logDir": "pvc://runs/tb"}},
        "checkpointing": {"everySteps": 2, "keepLast": 2},
    }
    runtime = {"pvcMountRoot": str(tmp_path / "pvc"), "checkpointUri": f"file://{tmp_path}/durable/uid-1/"}

    def crash() -> None:
        raise RuntimeError("the node went away")

    with pytest.raises(RuntimeError, match="the node went away"):
        run_job(data_files["text"], job=job, runtime=runtime, hooks=at_step(6, crash))
    assert [step for step, _ in scalars(claim / "tb" / "job")["train/loss"]] == [1, 2, 3, 4, 5]
    _, _, recorder = run_job(data_files["text"], job=job, runtime=runtime)
    assert len(list((claim / "tb" / "job").glob("events.out.tfevents.*"))) == 2
    series = scalars(claim / "tb" / "job")
    for tag in ("train/loss", "train/grad_norm", "train/learning_rate"):
        assert [step for step, _ in series[tag]] == list(range(1, 9)), (tag, series[tag])
    assert [value for step, value in series["train/loss"] if step >= 5] == pytest.approx(recorder.series("loss"))

"""The printer-column fields of status.progress are derived, so they always match step, totalSteps and loss."""

from __future__ import annotations

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJobStatus, Progress

pytestmark = pytest.mark.unit


def test_summary_and_rounded_loss_are_derived() -> None:
    wire = Progress(step=420, total_steps=1000, loss=1.23456789).to_wire()
    assert (wire["percent"], wire["summary"]) == (42, "42% (420/1000 steps)")
    assert (wire["loss"], wire["lossRounded"]) == (1.23456789, 1.235)


@pytest.mark.parametrize(("loss", "rounded"), [(0.000123456, 0.0001235), (12345.6, 12350.0), (2, 2.0)])
def test_loss_keeps_four_significant_digits(loss: float, rounded: float) -> None:
    assert Progress(step=1, total_steps=2, loss=loss).loss_rounded == rounded


def test_stale_derived_values_on_the_wire_are_recomputed() -> None:
    stored = {"progress": {"step": 1, "totalSteps": 3, "percent": 90, "summary": "90%", "loss": 2.5, "lossRounded": 9}}
    progress = FineTuneJobStatus.model_validate(stored).progress
    assert progress is not None
    assert (progress.percent, progress.summary, progress.loss_rounded) == (33, "33% (1/3 steps)", 2.5)


def test_nothing_to_show_before_the_first_step_or_for_a_non_finite_loss() -> None:
    assert Progress().to_wire() == {"step": 0, "totalSteps": 0, "percent": 0, "epoch": 0.0}
    assert Progress(step=1, total_steps=2, loss=float("inf")).loss_rounded is None


def test_a_round_trip_through_the_wire_is_stable() -> None:
    wire = Progress(step=7, total_steps=9, loss=0.5, eval_loss=0.7).to_wire()
    assert Progress.model_validate(wire).to_wire() == wire

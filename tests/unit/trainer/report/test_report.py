"""Progress reporting without an API server: rate limit, progress fields, result, metrics, failure tolerance.

The same reporter against a real kube-apiserver with a per-job token is in
tests/integration/test_trainer_progress.py.
"""

from __future__ import annotations

import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest

from kubetune.api.v1alpha1.trainer_config import StatusTarget
from kubetune_trainer.metrics import TrainerMetrics
from kubetune_trainer.report import ProgressReporter, StatusWriter

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


class FakeWriter:
    def __init__(self, *, fail: bool = False) -> None:
        self.applied: list[dict[str, Any]] = []
        self.fail = fail
        self.consecutive_failures = 0

    def apply(self, status: dict[str, Any]) -> bool:
        self.applied.append(status)
        self.consecutive_failures = self.consecutive_failures + 1 if self.fail else 0
        return not self.fail


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _state(step: int, tokens: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step, max_steps=10, epoch=step / 5, num_input_tokens_seen=tokens, is_world_process_zero=True
    )


def test_progress_is_rate_limited_and_complete() -> None:
    writer, clock, metrics = FakeWriter(), Clock(), TrainerMetrics()
    reporter = ProgressReporter(writer, metrics, interval_seconds=5, clock=clock)  # type: ignore[arg-type]
    args = SimpleNamespace(include_num_input_tokens_seen="non_padding")
    reporter.on_train_begin(args, _state(0, 0), None)
    for step in range(1, 11):
        clock.now += 2.0
        reporter.on_log(args, _state(step, 100 * step), None, logs={"loss": 3.0 - step / 10, "learning_rate": 1e-3})
        reporter.on_step_end(args, _state(step, 100 * step), None)
    reporter.on_train_end(args, _state(10, 1000), None)
    steps = [s["progress"]["step"] for s in writer.applied]
    assert steps == [1, 4, 7, 10, 10], "first step, then every >= 5 s, then the final update"
    last = writer.applied[-1]["progress"]
    assert last["step"] == last["totalSteps"] == 10
    assert last["percent"] == 100
    assert last["epoch"] == 2.0
    assert last["loss"] == pytest.approx(2.0)
    assert last["learningRate"] == 1e-3
    assert last["tokensPerSecond"] == pytest.approx(1000 / 20)
    assert last["etaSeconds"] == 0
    assert last["updatedAt"].endswith("Z")
    middle = writer.applied[1]["progress"]
    assert middle["etaSeconds"] == 12  # 8 s for 4 steps -> 6 steps left at 2 s each
    assert metrics.value("kubetune_trainer_step") == 10
    assert metrics.value("kubetune_trainer_tokens_total") == 1000
    assert metrics.value("kubetune_trainer_loss") == pytest.approx(2.0)

    reporter.report_result({"artifactUri": "file:///out/job/", "sha256": "0" * 64, "sizeBytes": 1})
    final = writer.applied[-1]
    assert final["result"]["artifactUri"] == "file:///out/job/"
    assert final["progress"] == last | {"updatedAt": final["progress"]["updatedAt"]}, "apply must keep progress"


def test_a_refusing_api_server_is_asked_less_and_less_often() -> None:
    writer, clock = FakeWriter(fail=True), Clock()
    reporter = ProgressReporter(writer, None, interval_seconds=1, clock=clock)  # type: ignore[arg-type]
    reporter.on_train_begin(None, _state(0, 0), None)
    for step in range(1, 21):
        clock.now += 1.0
        reporter.on_step_end(None, _state(step, 0), None)
    assert [s["progress"]["step"] for s in writer.applied] == [1, 3, 7, 15], "waits 1, 2, 4, 8 s after failures"


def test_only_rank_zero_reports() -> None:
    writer = FakeWriter()
    reporter = ProgressReporter(writer, None, interval_seconds=0)  # type: ignore[arg-type]
    reporter.update(SimpleNamespace(**vars(_state(1, 0)) | {"is_world_process_zero": False}))
    assert writer.applied == []


def test_metrics_endpoint_serves_the_training_series() -> None:
    metrics = TrainerMetrics()
    metrics.serve(0)  # an ephemeral port, for the test only (runtime.metricsPort 0 disables the endpoint)
    try:
        port = metrics._server.server_port
        metrics.observe({"step": 3, "totalSteps": 9, "loss": 1.5, "learningRate": 2e-4, "tokensPerSecond": 42.0}, 300)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    for line in (
        "kubetune_trainer_step 3.0",
        "kubetune_trainer_loss 1.5",
        "kubetune_trainer_tokens_total 300.0",
        "kubetune_trainer_tokens_per_second 42.0",
    ):
        assert line in body
    assert "python_gc" not in body, "a dedicated registry carries only the training series"


def test_unreachable_api_server_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # nothing listens on the discard port
    configuration.retries = 0
    writer = StatusWriter(StatusTarget(kind="FineTuneJob", namespace="ns", name="job"), client.ApiClient(configuration))
    assert writer.apply({"progress": {"step": 1}}) is False
    assert writer.failures == 1
    assert "could not update FineTuneJob ns/job status" in caplog.text

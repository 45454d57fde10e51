"""Progress reporting without an API server: rate limit, progress fields, result, metrics, failure tolerance.

The same reporter against a real kube-apiserver with a per-job token is in
tests/integration/test_trainer_progress.py.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kubetune.api.v1alpha1.trainer_config import StatusTarget
from kubetune_trainer.metrics import TrainerMetrics
from kubetune_trainer.report import RESULT_WRITE_SECONDS, ProgressReporter, StatusWriter, deliver_result
from kubetune_trainer.termination import TerminationRequest, result_message, write_termination_message

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


def test_a_resumed_pod_reports_its_resume_step_at_once_and_each_durable_checkpoint() -> None:
    writer, clock = FakeWriter(), Clock()
    reporter = ProgressReporter(writer, None, interval_seconds=60, clock=clock)  # type: ignore[arg-type]
    reporter.on_train_begin(None, _state(4, 0), None)
    assert [(s["progress"]["step"], s["progress"]["resumedFromStep"]) for s in writer.applied] == [(4, 4)]
    assert writer.applied[0]["progress"]["checkpointStep"] == 4, "it resumed from a complete durable checkpoint"
    reporter.note_checkpoint(6)
    clock.now += 61
    reporter.on_step_end(None, _state(7, 0), None)
    last = writer.applied[-1]["progress"]
    assert (last["step"], last["resumedFromStep"], last["checkpointStep"]) == (7, 4, 6)


def test_a_fresh_pod_has_no_resume_step() -> None:
    writer = FakeWriter()
    reporter = ProgressReporter(writer, None, interval_seconds=0)  # type: ignore[arg-type]
    reporter.on_train_begin(None, _state(0, 0), None)
    reporter.on_step_end(None, _state(1, 0), None)
    assert "resumedFromStep" not in writer.applied[-1]["progress"]


class FlakyWriter(FakeWriter):
    """Refuses the first `failures` writes, like an API server that is restarting."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures_left = failures

    def apply(self, status: dict[str, Any]) -> bool:
        self.applied.append(status)
        if self.failures_left:
            self.failures_left -= 1
            self.consecutive_failures += 1
            return False
        self.consecutive_failures = 0
        return True


RESULT = {"artifactUri": "s3://o/job/", "sha256": "0" * 64, "sizeBytes": 1}


def test_the_result_write_is_retried_with_backoff_until_it_lands() -> None:
    writer, clock = FlakyWriter(failures=4), Clock()
    reporter = ProgressReporter(writer, None, interval_seconds=10, clock=clock)  # type: ignore[arg-type]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    assert deliver_result(reporter, RESULT, sleep=sleep) is True
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert len(writer.applied) == 5
    assert writer.applied[-1]["result"] == RESULT


def test_the_result_write_gives_up_after_its_deadline(caplog: pytest.LogCaptureFixture) -> None:
    writer, clock = FlakyWriter(failures=10**6), Clock()
    reporter = ProgressReporter(writer, None, interval_seconds=10, clock=clock)  # type: ignore[arg-type]

    def sleep(seconds: float) -> None:
        clock.now += seconds

    assert deliver_result(reporter, RESULT, sleep=sleep) is False
    assert clock.now - 100.0 <= RESULT_WRITE_SECONDS
    assert len(writer.applied) > 20, "kept trying, at most every 30 s"
    assert "the termination message has it" in caplog.text


def test_sigterm_ends_the_result_retries() -> None:
    writer = FlakyWriter(failures=10**6)
    reporter = ProgressReporter(writer, None, interval_seconds=10)  # type: ignore[arg-type]

    def sleep(_seconds: float) -> None:
        TerminationRequest(30).handle()  # the handler raises outside the training loop

    assert deliver_result(reporter, RESULT, sleep=sleep) is False
    assert len(writer.applied) == 1


def test_the_result_goes_into_the_termination_message_first(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    metrics = {f"suite{i}-{'x' * 90}.perplexity": 1.0 + i for i in range(64)}  # the API allows this much
    big = {**RESULT, "metrics": metrics, "prepReport": {"rows_in": 10}, "gateMessage": "gate passed"}
    write_termination_message(result_message(big), {"KUBETUNE_TERMINATION_LOG": str(log)})
    text = log.read_text()
    assert len(text.encode()) <= 4096
    assert text.startswith("kubetune-result: ")
    parsed = json.loads(text.removeprefix("kubetune-result: "))
    assert parsed["sha256"] == RESULT["sha256"]
    assert "prepReport" not in parsed, "dropped first to fit the kubelet's 4 KiB"
    assert "metrics" not in parsed, "then the metrics"
    assert parsed["gateMessage"] == "gate passed"
    small = json.loads(result_message(RESULT).removeprefix("kubetune-result: "))
    assert small == RESULT


def test_a_merged_adapters_artifact_write_is_retried_until_it_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge pod's first write may come before the operator put its Job's name in the Adapter's status, which the
    chart's policy checks the pod against: refused once, it lands on a retry instead of failing the merge."""
    from kubetune_trainer import report

    writer = FlakyWriter(failures=2)
    monkeypatch.setattr(report.StatusWriter, "from_environment", classmethod(lambda cls, target: writer))
    waits: list[float] = []
    target = StatusTarget(kind="Adapter", namespace="ns", name="merged")
    assert report.publish_adapter_artifact(target, {"uri": "s3://a/"}, sleep=waits.append) is True
    assert waits == [1.0, 2.0]
    assert writer.applied == [{"artifact": {"uri": "s3://a/"}}] * 3


def test_a_refusal_is_logged_with_the_api_servers_reason() -> None:
    from kubernetes.client.exceptions import ApiException

    refused = ApiException(status=403, reason="Forbidden")
    refused.body = json.dumps({"message": "pod x-train-abcde is not a pod of this object's Job"})
    assert report_line(refused) == "HTTP 403 Forbidden: pod x-train-abcde is not a pod of this object's Job"
    assert report_line(ApiException(status=500, reason="Internal")) == "HTTP 500 Internal"


def report_line(exc: BaseException) -> str:
    from kubetune_trainer.report import _short

    return _short(exc)

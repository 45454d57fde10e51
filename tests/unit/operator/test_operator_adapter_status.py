"""Adapter status: published adapters, merge sources that cannot be used, and the merge Job's lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.v1alpha1.adapter import Adapter, AdapterStatus, Artifact
from kubetune.api.v1alpha1.finetunejob import TrainResult
from kubetune.decisions.adapter_status import adapter_status, merge_verdict, source_problem

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RESULT = {"artifactUri": "s3://o/j/", "sha256": "a" * 64, "sizeBytes": 1}
COMPLETE = {"spec": {"suspend": False}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def adapter(name: str = "m", base: str = "hf://org/model", **spec: Any) -> Adapter:
    body: dict[str, Any] = {"baseModel": {"uri": base}}
    body.update(spec)
    return Adapter.model_validate({"metadata": {"name": name, "namespace": "ml", "generation": 1}, "spec": body})


def source(base: str = "hf://org/model", phase: str = "Ready", revision: str = "r1") -> dict[str, Any]:
    return {"spec": {"baseModel": {"uri": base, "revision": revision}}, "status": {"phase": phase}}


MERGED = adapter(merge={"sources": [{"name": "a"}, {"name": "b"}]})


@pytest.mark.parametrize(
    ("sources", "phase", "reason"),
    [
        ({"a": source(), "b": None}, "Pending", "SourceNotFound"),
        ({"a": source(), "b": source(phase="Pending")}, "Pending", "SourceNotReady"),
        ({"a": source(), "b": source(base="hf://org/other")}, "Failed", "BaseModelMismatch"),
        ({"a": source(), "b": source(revision="r2")}, "Failed", "BaseModelMismatch"),
    ],
)
def test_bad_merge_sources_are_conditions(sources: dict[str, Any], phase: str, reason: str) -> None:
    problem = source_problem(MERGED, sources)
    assert problem is not None
    assert (problem.phase, problem.reason) == (phase, reason)
    status = adapter_status(MERGED, NOW, verdict=merge_verdict(MERGED, sources, None, ()))
    assert status.phase == phase
    assert status.conditions[0].reason == reason


def test_merge_job_lifecycle() -> None:
    ok = {"a": source(), "b": source()}
    assert source_problem(MERGED, ok) is None
    running = {"status": {"active": 1}}
    assert merge_verdict(MERGED, ok, running, ()).phase == "Merging"
    assert merge_verdict(MERGED, ok, COMPLETE, ()).reason == "NoArtifact"
    produced = MERGED.model_copy(update={"status": AdapterStatus(phase="Merging", artifact=Artifact(uri="s3://o/m/"))})
    done = merge_verdict(produced, ok, COMPLETE, ())
    assert (done.phase, done.reason) == ("Ready", "Merged")
    failed_job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}}
    pod = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": 78, "message": "config error: bad weights"}}}
            ],
        }
    }
    failed = merge_verdict(MERGED, ok, failed_job, (pod,))
    assert (failed.phase, failed.reason, failed.message) == ("Failed", "ConfigError", "config error: bad weights")


def test_published_adapter_validated_from_gate() -> None:
    trained = adapter(name="t", artifact={"uri": "s3://o/t/"})
    gated = adapter_status(trained, NOW, result=TrainResult.model_validate({**RESULT, "gatePassed": False}))
    assert gated.phase == "Ready"
    validated = next(c for c in gated.conditions if c.type == "Validated")
    assert (validated.status, validated.reason) == ("False", "GateFailed")
    kept = adapter_status(trained.model_copy(update={"status": gated}), NOW)
    assert next(c for c in kept.conditions if c.type == "Validated") == validated

"""Adapter status: published adapters, merge sources that cannot be used, and the merge Job's lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.problems import Problem
from kubetune.api.v1alpha1.adapter import Adapter, AdapterStatus, Artifact
from kubetune.decisions.adapter_status import (
    adapter_status,
    invalid_adapter_status,
    merge_verdict,
    source_problem,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
COMPLETE = {"spec": {"suspend": False}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def adapter(name: str = "m", base: str = "hf://org/model", **spec: Any) -> Adapter:
    body: dict[str, Any] = {"baseModel": {"uri": base}}
    body.update(spec)
    return Adapter.model_validate({"metadata": {"name": name, "namespace": "ml", "generation": 1}, "spec": body})


def source(
    base: str = "hf://org/model", phase: str = "Ready", revision: str = "r1", artifact: str = "s3://o/a/"
) -> dict[str, Any]:
    return {
        "spec": {"baseModel": {"uri": base, "revision": revision}},
        "status": {"phase": phase, "artifact": {"uri": artifact}},
    }


MERGED = adapter(merge={"sources": [{"name": "a"}, {"name": "b"}]})


@pytest.mark.parametrize(
    ("sources", "phase", "reason"),
    [
        ({"a": source(), "b": None}, "Pending", "SourceNotFound"),
        ({"a": source(), "b": source(phase="Pending")}, "Pending", "SourceNotReady"),
        ({"a": source(), "b": source(base="hf://org/other")}, "Failed", "BaseModelMismatch"),
        ({"a": source(), "b": source(revision="r2")}, "Failed", "BaseModelMismatch"),
        ({"a": source(), "b": source(artifact="hf://team/b-lora@0123abc")}, "Failed", "SourceOnHub"),
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


def conditions(status: AdapterStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


@pytest.mark.parametrize(
    ("gate", "phase", "expected"),
    [
        (
            None,
            "Ready",
            {
                "Ready": ("True", "ArtifactPublished"),
                "Reconciling": ("False", "Ready"),
                "Stalled": ("False", "Ready"),
                "Validated": ("Unknown", "NotEvaluated"),
            },
        ),
        (
            {"passed": True},
            "Ready",
            {
                "Ready": ("True", "ArtifactPublished"),
                "Reconciling": ("False", "Ready"),
                "Stalled": ("False", "Ready"),
                "Validated": ("True", "GatePassed"),
            },
        ),
        (
            {"passed": False, "message": "gate failed: heldout.perplexity 12 is above the limit 9"},
            "Failed",
            {
                "Ready": ("False", "GateFailed"),
                "Reconciling": ("False", "Failed"),
                "Stalled": ("True", "GateFailed"),
                "Validated": ("False", "GateFailed"),
            },
        ),
        (
            {"passed": False, "message": "gate failed: x", "publishUnvalidated": True},
            "Ready",
            {
                "Ready": ("True", "PublishedUnvalidated"),
                "Reconciling": ("False", "Ready"),
                "Stalled": ("False", "Ready"),
                "Validated": ("False", "GateFailed"),
            },
        ),
    ],
)
def test_published_adapter_ready_only_when_its_gate_allows(
    gate: dict[str, Any] | None, phase: str, expected: dict[str, tuple[str, str]]
) -> None:
    spec: dict[str, Any] = {"artifact": {"uri": "s3://o/t/"}}
    if gate is not None:
        spec["gate"] = gate
    status = adapter_status(adapter(name="t", **spec), NOW)
    assert status.phase == phase
    assert conditions(status) == expected
    assert status.observed_generation == 1
    if gate and not gate["passed"]:
        assert gate["message"] in (status.message or "")


def test_a_merge_refuses_a_source_its_gate_rejected() -> None:
    rejected = source()
    rejected["spec"]["gate"] = {"passed": False, "message": "gate failed: too weak"}
    problem = source_problem(MERGED, {"a": source(), "b": rejected})
    assert problem is not None
    assert (problem.phase, problem.reason) == ("Failed", "SourceGateFailed")
    assert "b failed its evaluation gate (gate failed: too weak)" in problem.message
    status = adapter_status(MERGED, NOW, verdict=merge_verdict(MERGED, {"a": source(), "b": rejected}, None, ()))
    assert conditions(status)["Stalled"] == ("True", "SourceGateFailed")
    rejected["spec"]["gate"]["publishUnvalidated"] = True
    assert source_problem(MERGED, {"a": source(), "b": rejected}) is None


def test_merge_in_progress_is_reconciling_and_merged_is_ready() -> None:
    ok = {"a": source(), "b": source()}
    merging = adapter_status(MERGED, NOW, verdict=merge_verdict(MERGED, ok, {"status": {"active": 1}}, ()))
    assert conditions(merging)["Reconciling"] == ("True", "Merging")
    assert conditions(merging)["Ready"] == ("False", "Merging")
    waiting = adapter_status(MERGED, NOW, verdict=merge_verdict(MERGED, {"a": source(), "b": None}, None, ()))
    assert conditions(waiting)["Reconciling"] == ("True", "SourceNotFound")


def test_an_unreadable_adapter_is_failed_and_stalled() -> None:
    status = invalid_adapter_status(4, [Problem("spec.artifact.uri", "too long")], NOW)
    assert status.phase == "Failed"
    assert status.observed_generation == 4
    assert conditions(status)["Stalled"] == ("True", "InvalidSpec")
    assert "spec.artifact.uri: too long" in (status.message or "")

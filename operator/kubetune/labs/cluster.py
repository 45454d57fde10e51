"""`kubetune lab run NAME --cluster`, the pure half: which objects a lab applies and in what order, what
their observed state means, and the run records the lab's analysis reads, built from status alone.

The side effects (apply, poll, print) are `kubetune.lab_cluster`; everything here is documents in,
values out, so the cluster path is unit-tested without a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetune.labs.definition import LabError, artifact_uri, name_of
from kubetune.labs.record import RunRecord

FINETUNEJOB = "FineTuneJob"
ADAPTER = "Adapter"
JOB_DONE = "Succeeded"
ADAPTER_DONE = "Ready"
FAILED = "Failed"


def in_namespace(documents: Iterable[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The lab's documents with `metadata.namespace` set to where the run goes."""
    out = []
    for document in documents:
        moved = copy.deepcopy(document)
        moved["metadata"]["namespace"] = namespace
        out.append(moved)
    return out


def waves(jobs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """FineTuneJobs grouped so that a job starting from another job's artifact (its `baseModel.uri` is that
    job's output) runs in a later wave than it; jobs of one wave run side by side."""
    produced_by = {artifact_uri(job): name_of(job) for job in jobs}
    needs = {name_of(job): _producer(job, produced_by) for job in jobs}
    done: set[str] = set()
    out: list[list[dict[str, Any]]] = []
    while len(done) < len(jobs):
        ready = [job for job in jobs if name_of(job) not in done and needs[name_of(job)] <= done]
        if not ready:
            stuck = sorted(set(needs) - done)
            raise LabError(f"FineTuneJobs {stuck} start from each other's artifacts in a cycle")
        out.append(ready)
        done |= {name_of(job) for job in ready}
    return out


def _producer(job: dict[str, Any], produced_by: Mapping[str, str]) -> set[str]:
    base = str((job["spec"].get("baseModel") or {}).get("uri", "")).rstrip("/") + "/"
    return {producer for uri, producer in produced_by.items() if base == uri and producer != name_of(job)}


@dataclass(frozen=True)
class Observed:
    """Where a batch of objects stands: names still going, and the failed ones with why."""

    pending: list[str]
    failures: list[str]


def observe(kind: str, objects: Mapping[str, dict[str, Any] | None]) -> Observed:
    """`objects`: each expected object by name, as read (None: not there yet)."""
    done = JOB_DONE if kind == FINETUNEJOB else ADAPTER_DONE
    pending, failures = [], []
    for name, obj in objects.items():
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        if phase == FAILED:
            failures.append(failure(kind, name, status))
        elif phase != done:
            pending.append(name)
    return Observed(pending, failures)


def failure(kind: str, name: str, status: Mapping[str, Any]) -> str:
    reason = f" ({status['reason']})" if status.get("reason") else ""
    return f"{kind} {name} failed{reason}: {status.get('message') or 'no message'}"


def progress_line(obj: Mapping[str, Any]) -> str:
    """One line on where a FineTuneJob or Adapter stands, from its status (what `lab run --cluster` and the demo
    print while they wait)."""
    status = obj.get("status") or {}
    parts = [f"phase={status.get('phase', 'Pending')}"]
    if status.get("reason"):
        parts.append(f"reason={status['reason']}")
    progress = status.get("progress") or {}
    if progress.get("totalSteps"):
        parts.append(f"step {progress.get('step', 0)}/{progress['totalSteps']} ({progress.get('percent', 0)}%)")
    if progress.get("loss") is not None:
        parts.append(f"loss={progress['loss']:.3f}")
    if progress.get("etaSeconds") is not None:
        parts.append(f"eta={progress['etaSeconds']}s")
    if status.get("message") and status.get("phase") in (FAILED, "Pending"):
        parts.append(f"message={status['message']}")
    return "  ".join(parts)


def _seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (_timestamp(end) - _timestamp(start)).total_seconds()


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_record(finetunejob: Mapping[str, Any]) -> RunRecord:
    """A succeeded FineTuneJob's run record: `status.result` (metrics, artifact, size) and its run time."""
    status = finetunejob["status"]
    result = status.get("result")
    if not result:
        name = finetunejob["metadata"]["name"]
        raise LabError(f"FineTuneJob {name} succeeded but its status has no result: {status}")
    return RunRecord(
        name=str(finetunejob["metadata"]["name"]),
        artifact=str(result["artifactUri"]),
        metrics={key: float(value) for key, value in (result.get("metrics") or {}).items()},
        artifact_bytes=int(result["sizeBytes"]),
        process_seconds=_seconds_between(status.get("startTime"), status.get("completionTime")),
    )


def adapter_record(adapter: Mapping[str, Any]) -> RunRecord:
    """A Ready merge Adapter's run record: the merged artifact from its status, the metrics from its spec."""
    artifact = adapter["status"].get("artifact") or adapter["spec"].get("artifact") or {}
    return RunRecord(
        name=str(adapter["metadata"]["name"]),
        artifact=str(artifact.get("uri", "")),
        metrics={key: float(value) for key, value in (adapter["spec"].get("metrics") or {}).items()},
        artifact_bytes=int(artifact.get("sizeBytes") or 0),
    )

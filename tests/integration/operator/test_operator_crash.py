"""The operator SIGKILLed at several points of a burst of FineTuneJobs, and restarted each time: in the end every
run is Succeeded with exactly one Job and one Adapter, published once, and no child is left without its owner.

The operator runs as a real process (`kubetune operator --standalone`), so SIGKILL stops it between any two API
calls, as a node failure or the OOM killer would. kwok runs the pods (each finishes after its own `run-for`,
spread so that completions, and so publishing, happen over several seconds); the test plays the trainer
and writes each run's result. The kills are triggered by what the cluster shows: children created for some
runs but not all, some runs Running but not all, some Adapters published but not all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.pod_contract import (
    COMPONENT_LABEL,
    JOB_LABEL,
    MANAGED_BY_LABEL,
    OPERATOR_FIELD_MANAGER,
    PREFLIGHT_COMPONENT,
    TRAINER_SERVICE_ACCOUNT,
)
from kubetune_dev.controlplane.testing import wait_until
from support.operator_objects import finetunejob, result, trainer_apply
from support.operator_process import OperatorProcess
from support.witness import Witness

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

RUNS = 24
IDENTITY_KINDS = ("ServiceAccount", "Role", "RoleBinding")


def run_name(index: int) -> str:
    return f"burst-{index:02d}"


@pytest.fixture
def operator_process(installed_crds: list[str], namespace: str, kubeconfig: Path, tmp_path: Path) -> Iterator[Any]:
    """Starts (and restarts) `kubetune operator --standalone -n NS` as a process; stopped afterwards."""
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        started.append(OperatorProcess(kubeconfig, log, ["--standalone", "-n", namespace, "-v"]))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def count(cluster: Any, kind: str, condition: Callable[[dict[str, Any]], bool] = lambda _: True) -> int:
    return sum(1 for item in cluster.list(kind) if condition(item))


def training(job: dict[str, Any]) -> bool:
    return job["metadata"].get("labels", {}).get(COMPONENT_LABEL) != PREFLIGHT_COMPONENT


def kill_when(operator: OperatorProcess, what: str, progress: Callable[[], int]) -> tuple[int, int]:
    """SIGKILLs the operator once it has done about a third of what was left when this started (the count grew
    that far) but not all of it (the count is below RUNS); returns (count at the start, count at the kill)."""
    baseline = progress()
    target = baseline + max(1, (RUNS - baseline) // 3)

    def midway() -> int | None:
        now = progress()
        return now if target <= now < RUNS else None

    seen = wait_until(what, midway, timeout=90, interval=0.05)
    operator.kill()
    return baseline, seen


def test_sigkill_during_a_burst_loses_and_duplicates_nothing(
    operator_process: Any, cluster: Any, namespace: str
) -> None:
    phase = lambda wanted: lambda ftj: (ftj.get("status") or {}).get("phase") in wanted  # noqa: E731
    kills: dict[str, tuple[int, int]] = {}
    started = time.monotonic()
    with Witness(cluster.list) as witness:
        operator = operator_process()
        for index in range(RUNS):
            annotations = {"kwok.kubetune.io/run-for": f"{3 + index % 8}s"}
            cluster.kube.create(cluster.url("FineTuneJob"), finetunejob(run_name(index), namespace, annotations))
        kills["children"] = kill_when(operator, "Jobs created for some runs", lambda: count(cluster, "Job", training))

        operator = operator_process()
        for index in range(RUNS):  # the trainer's result; the operator publishes it once the Job completes
            trainer_apply(cluster.kube, cluster, "FineTuneJob", run_name(index), {"result": result(run_name(index))})
        running = phase({"Running", "Succeeded"})
        kills["status"] = kill_when(operator, "some runs Running", lambda: count(cluster, "FineTuneJob", running))

        operator = operator_process()
        kills["publishing"] = kill_when(operator, "some Adapters published", lambda: count(cluster, "Adapter"))

        operator = operator_process()
        done = phase({"Succeeded"})
        wait_until("every run Succeeded", lambda: count(cluster, "FineTuneJob", done) == RUNS, timeout=180)
        wait_until("every Adapter Ready", lambda: count(cluster, "Adapter", phase({"Ready"})) == RUNS, timeout=60)
    elapsed = time.monotonic() - started

    names = {run_name(index) for index in range(RUNS)}
    assert {run for run, uids in witness.jobs.items() if len(uids) == 1} == names, dict(witness.jobs)
    assert {run for run, uids in witness.adapters.items() if len(uids) == 1} == names, dict(witness.adapters)
    runs = {ftj["metadata"]["name"]: ftj for ftj in cluster.list("FineTuneJob")}
    for name, ftj in runs.items():
        assert ftj["status"]["adapterRef"] == {"name": name}
        assert ftj["status"]["attempts"] == 1, ftj["status"]
        assert len(cluster.pods(f"{name}-train")) == 1
    for adapter in cluster.list("Adapter"):
        assert adapter["metadata"]["generation"] == 1, "the Adapter's spec was applied more than once with changes"
    uids = {ftj["metadata"]["uid"] for ftj in runs.values()}
    for child in cluster.list("Job", f"{MANAGED_BY_LABEL}={OPERATOR_FIELD_MANAGER}"):
        owners = {ref["uid"] for ref in child["metadata"].get("ownerReferences", [])}
        assert owners & uids, f"orphaned Job {child['metadata']['name']}"
    # a run's Jobs: its CPU preflight Job and its training Job
    assert count(cluster, "Job", lambda c: JOB_LABEL in c["metadata"].get("labels", {})) == 2 * RUNS
    for kind in IDENTITY_KINDS:  # the namespace's trainer identity, shared by every run
        managed = cluster.list(kind, f"{MANAGED_BY_LABEL}={OPERATOR_FIELD_MANAGER}")
        assert [child["metadata"]["name"] for child in managed] == [TRAINER_SERVICE_ACCOUNT], kind
    assert "Traceback" not in operator.text(), operator.text()[-3000:]
    print(f"\nSIGKILLed with {kills} of {RUNS}; all Succeeded and published {elapsed:.0f}s after the burst")

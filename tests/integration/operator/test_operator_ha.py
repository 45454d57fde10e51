"""HA: replicas started with the same arguments (as a Deployment starts them: no --priority) elect one active
peer; a replica kopf pauses also stops its resync thread; when the active one leaves, the standby takes over.

The chart's own two replicas, on the local node, are tested in tests/integration/test_chart.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_dev.chart import CHART
from kubetune_dev.controlplane.testing import Kubectl, install_crds, wait_until
from support.operator_process import OperatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

RESYNC_SECONDS = 2
KEEP_RUNNING = {"kwok.kubetune.io/keep-running": "true"}


@pytest.fixture
def replicas(
    installed_crds: list[str], kubectl: Kubectl, namespace: str, kubeconfig: Path, tmp_path: Path
) -> Iterator[Any]:
    """Starts `kubetune operator --peering kubetune -n NS [extra]` processes; stops them all afterwards."""
    install_crds(kubectl, [CHART / "crds" / "kopf-peering.yaml"])
    peering = "apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata:\n  name: kubetune\n"
    kubectl("apply", "-n", namespace, "-f", "-", input=peering)
    started: list[OperatorProcess] = []

    def start(name: str, *extra: str) -> OperatorProcess:
        env = {"KUBETUNE_RESYNC_SECONDS": str(RESYNC_SECONDS)}
        args = ["--peering", "kubetune", "-n", namespace, "-v", *extra]
        started.append(OperatorProcess(kubeconfig, tmp_path / f"{name}.log", args, env))
        return started[-1]

    yield start
    for process in started:
        process.stop()
    for process in started:
        assert "Traceback" not in process.text(), process.text()[-3000:]


def reconciles_grow(replica: OperatorProcess) -> bool:
    before = replica.reconciles()
    time.sleep(RESYNC_SECONDS * 1.5)
    return replica.reconciles() > before


def test_default_priorities_elect_one_replica_and_the_paused_one_does_not_resync(
    replicas: Any, cluster: Any, ftj_body: Any, namespace: str
) -> None:
    first = replicas("first")
    wait_until("the first replica to be active", first.active, timeout=60)
    second = replicas("second")  # same arguments: its derived priority is lower, it starts paused and stays so
    wait_until("the second replica to join the peering", lambda: "Keep-alive" in second.text(), timeout=60)
    cluster.kube.create(cluster.url("FineTuneJob"), ftj_body("one", namespace, KEEP_RUNNING))
    cluster.wait_phase("one", "Running")
    assert first.handled(namespace, "one")
    assert wait_until("the first replica's resync to reconcile the Running job", lambda: reconciles_grow(first))

    debugger = replicas("debugger", "--priority", "0")  # kopf's idiom: an explicit priority pauses the others
    wait_until("the first replica to pause", lambda: not first.active(), timeout=60)
    wait_until("the debugger to be active", debugger.active, timeout=60)
    wait_until("the first replica's gate to notice", lambda: "reconciling paused" in first.text(), timeout=10)
    paused_at = first.reconciles()
    cluster.kube.create(cluster.url("FineTuneJob"), ftj_body("two", namespace, KEEP_RUNNING))
    cluster.wait_phase("two", "Running")
    time.sleep(RESYNC_SECONDS * 3)
    assert first.reconciles() == paused_at, "a paused replica reconciled (its resync thread kept running)"
    assert debugger.handled(namespace, "two")
    assert not first.handled(namespace, "two")
    assert not second.handled(namespace, "one")
    assert not second.handled(namespace, "two")

    debugger.stop()  # kopf removes itself from the peering on exit: the first replica resumes at once
    wait_until("the first replica to resume", first.active, timeout=30)
    assert wait_until("its resync to run again", lambda: reconciles_grow(first))
    assert not second.active()

    first.stop()
    wait_until("the second replica to take over", second.active, timeout=30)
    cluster.kube.create(cluster.url("FineTuneJob"), ftj_body("three", namespace, KEEP_RUNNING))
    cluster.wait_phase("three", "Running")
    assert second.handled(namespace, "three")
    for name in ("one", "two", "three"):
        cluster.kube.request("DELETE", cluster.url("FineTuneJob", name))

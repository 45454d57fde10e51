"""Kueue admission latency, run by `make bench` only: FineTuneJob created -> its Job unsuspended by Kueue, at a
few FineTuneJobs per second, against the baseline of the same runs without a queue (FineTuneJob created -> its
Job created unsuspended by the operator), measured in the same run on the same control plane.

Each FineTuneJob asks for 1 GPU and its fake pod succeeds at once, so quota never runs out and the numbers are
admission cost, not waiting for quota. Prints a table; the only assertion is that every run started.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.operator.conftest import Operator, finetunejob
from kubetune.k8s.client import Kube
from kubetune_dev.controlplane import LocalControlPlane, Tier
from kubetune_dev.controlplane.client import AdminClient, condition, object_path, wait_for
from kubetune_dev.controlplane.kueue import LOCAL_QUEUE, local_queue

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "bench"
RATES = (1.0, 2.0, 5.0)  # FineTuneJobs created per second
PER_ROUND = 8


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    running = LocalControlPlane(tmp_path_factory.mktemp("controlplane")).start(Tier.B, kueue=True)
    try:
        api = running.client
        for path in sorted((REPO / "crds").glob("*.yaml")):
            crd = api.apply(yaml.safe_load(path.read_text()))
            wait_for(f"{path.name} Established", lambda crd=crd: _true(api.get(object_path(crd)), "Established"), 30)
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        api.apply(local_queue(NAMESPACE))
        yield running
    finally:
        running.stop()


def _true(obj: dict[str, Any], kind: str) -> bool:
    found = condition(obj, kind)
    return bool(found and found["status"] == "True")


class JobStarts:
    """When each Job was first seen with spec.suspend false (polled every 50 ms)."""

    def __init__(self, api: AdminClient) -> None:
        self.api = api
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> JobStarts:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for job in self.api.get(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")["items"]:
                name = job["metadata"]["name"]
                if job["spec"].get("suspend") is False and name not in self.seen:
                    self.seen[name] = time.monotonic()
            time.sleep(0.05)


def one_round(
    kube: Kube, api: AdminClient, prefix: str, rate: float, queue: str | None, *, count: int = PER_ROUND
) -> list[float]:
    resources: dict[str, Any] = {"gpus": 1, **({"queueName": queue} if queue else {})}
    created: dict[str, float] = {}
    with JobStarts(api) as starts:
        for i in range(count):
            name = f"{prefix}-{i}"
            created[f"{name}-train"] = time.monotonic()
            body = finetunejob(name, NAMESPACE, resources=resources)
            kube.create(f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/finetunejobs", body)
            time.sleep(max(0.0, created[f"{name}-train"] + 1 / rate - time.monotonic()))
        wait_for(f"{prefix}: every Job started", lambda: set(created) <= set(starts.seen) or None, 180)
        return [starts.seen[job] - at for job, at in created.items()]


def test_kueue_admission_latency_against_direct_start(plane: LocalControlPlane) -> None:
    kube = Kube.from_environment(str(plane.kubeconfig_path))
    operator = Operator(NAMESPACE, plane.kubeconfig_path)
    operator.start()
    rows = []
    try:
        one_round(kube, plane.client, "warm-up-direct", 1, None, count=2)  # first reconciles pay imports and caches
        one_round(kube, plane.client, "warm-up-queued", 1, LOCAL_QUEUE, count=2)
        for rate in RATES:
            tag = str(rate).replace(".", "-")
            direct = one_round(kube, plane.client, f"direct-{tag}", rate, None)
            queued = one_round(kube, plane.client, f"queued-{tag}", rate, LOCAL_QUEUE)
            rows.append((rate, direct, queued))
    finally:
        operator.stop()
    print(f"\nBENCH Kueue admission latency ({PER_ROUND} FineTuneJobs per row, 1 GPU each, Job polled every 50 ms)")
    print(
        f"{'FTJ/s':>6} | {'direct p50':>10} {'direct max':>10} | {'Kueue p50':>10} {'Kueue max':>10} | {'p50 ratio':>9}"
    )
    for rate, direct, queued in rows:
        base, measured = statistics.median(direct), statistics.median(queued)
        print(f"{rate:>6.1f} | {base:>9.2f}s {max(direct):>9.2f}s | {measured:>9.2f}s {max(queued):>9.2f}s | "
              f"{measured / base:>8.2f}x")  # fmt: skip
    print(f"kueue manager RSS after the runs: {plane.rss_mib().get('kueue') or 0:.0f} MiB")
    assert all(len(direct) == len(queued) == PER_ROUND for _, direct, queued in rows)

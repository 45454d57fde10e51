"""Kueue preemption with the real trainer: a higher-priority run preempts a lower one through real Kueue, and the
preempted run later resumes from the checkpoint it saved on SIGTERM, without consuming a retry.

The local node advertises one fake GPU and a ClusterQueue on it has a quota of one GPU, so the two one-GPU runs
cannot both be admitted. Everything between the FineTuneJobs and the published Adapters is real: the operator
creates the Jobs suspended with the queue labels, Kueue (v0.17, in the control plane) admits, preempts (suspends
the low run's Job) and readmits, the Job controller deletes the pod, the local node sends it SIGTERM, and the
trainer saves and later resumes from its durable checkpoints (on the claim). The test freezes the low run's pod
(SIGSTOP) at step 6 until Kueue's preemption deletes it, so the SIGTERM lands mid-run however fast training is.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from kubetune_dev.controlplane.kueue import cluster_queue, local_queue, resource_flavor, workload_priority_class
from kubetune_dev.controlplane.kwok import GPU_RESOURCE
from kubetune_dev.controlplane.ports import free_ports
from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.demo import NAMESPACE, Demo
from kubetune_dev.local_node.node import LOCAL_NODE_LABEL
from support.multinode import TrainerPod, trainer_pods
from support.trainer_runs import (
    finetunejob,
    job_failed,
    resumed_from,
    running_pod,
    status_of,
    steps_logged,
    uploaded,
    when_running_pod,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kueue]

QUEUE = "local-gpu"
PRIORITIES = {"low": 100, "high": 1000}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    metrics_port = free_ports(1)[0]  # the pods share the host's loopback with other test sessions
    with Demo(
        tmp_path_factory.mktemp("kueue-resume"),
        log=lambda line: print(line, flush=True),
        node_gpus=1,
        operator_env={"KUBETUNE_TRAINER_METRICS_PORT": str(metrics_port)},
        kueue=True,
    ) as running:
        one_gpu = {"cpu": "2", "memory": "8Gi", GPU_RESOURCE: "1"}
        queues = [
            resource_flavor(QUEUE, {LOCAL_NODE_LABEL: "true"}),
            cluster_queue(QUEUE, QUEUE, one_gpu),
            local_queue(NAMESPACE, QUEUE, QUEUE),
            *(workload_priority_class(f"kubetune-e2e-{level}", value) for level, value in PRIORITIES.items()),
        ]
        running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(queues))
        yield running


def queued_run(name: str, priority: str, *, steps: int, every: int) -> dict[str, Any]:
    doc = finetunejob(name, steps=steps, every=every)
    doc["spec"]["resources"].update(
        gpus=1, cpu="1", memory="3Gi", queueName=QUEUE, workloadPriorityClassName=f"kubetune-e2e-{priority}"
    )
    return doc


def preempted(demo: Demo, name: str) -> dict[str, Any] | None:
    status = status_of(demo, name)
    return status if (status.get("phase"), status.get("reason")) == ("Queued", "Preempted") else None


def adapters(demo: Demo) -> list[str]:
    return sorted(demo.kubectl("get", "adp", "-n", NAMESPACE, "-o", "name").split())


def test_a_preempted_run_resumes_from_its_checkpoint_without_a_retry(demo: Demo) -> None:
    low_steps, every = 30, 5
    low, high = queued_run("low", "low", steps=low_steps, every=every), queued_run("high", "high", steps=4, every=100)
    seen: dict[str, Any] = {}

    def preempt_with_high() -> None:
        first = when_running_pod(demo, "low-train", lambda p: max(steps_logged(p), default=0) >= every + 1, "step 6")
        assert demo.node is not None
        frozen = demo.node.freeze(NAMESPACE, first.name)
        assert frozen is not None
        demo.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(high))
        wait_until("Kueue to preempt low (the node sent its pod SIGTERM)", frozen.terminated, timeout=300)
        frozen.thaw()
        seen["queued"] = wait_until("low Queued/Preempted", lambda: preempted(demo, "low"), timeout=120)
        wait_until("low's first pod gone", lambda: running_pod(demo, "low-train") is None, timeout=150)
        seen["pod"] = next(p for p in trainer_pods(demo, "low-train") if p.name == first.name)
        seen["high"] = demo.train(high, timeout=600)  # applied already: follows it to the end

    with ThreadPoolExecutor(1) as pool:
        preempting = pool.submit(preempt_with_high)
        result = demo.train(low, timeout=900)
        preempting.result()

    first: TrainerPod = seen["pod"]
    assert first.exit_code == 143, first.log[-3000:]
    saved = max(steps_logged(first))
    assert every < saved < low_steps
    assert f"stopping at step {saved} on SIGTERM; saving a checkpoint" in first.log
    assert uploaded(first)[-1] == saved, "saved on SIGTERM to the durable checkpoint storage"
    assert "Preempted to accommodate a workload" in seen["queued"]["message"], "Kueue's words, from low's Workload"
    assert seen["queued"]["attempts"] == 1

    high_status = seen["high"].finetunejob["status"]
    assert high_status["phase"] == "Succeeded", high_status
    assert high_status["attempts"] == 1
    (high_pod,) = trainer_pods(demo, "high-train")
    assert high_pod.exit_code == 0

    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    rerun = trainer_pods(demo, "low-train")[-1]
    assert rerun.name != first.name
    assert resumed_from(rerun) == [saved], "resumed from the checkpoint saved at preemption"
    assert steps_logged(rerun)[0] == saved + 1, "no step is redone"
    assert status["progress"]["resumedFromStep"] == saved
    assert status["progress"]["step"] == low_steps
    assert status["attempts"] == 1, "a preemption consumes no retry"
    assert job_failed(demo, "low-train") == 0

    for run in (seen["high"], result):
        assert run.adapter is not None
        assert run.adapter["status"]["phase"] == "Ready"
    assert adapters(demo) == ["adapter.kubetune.io/high", "adapter.kubetune.io/low"]

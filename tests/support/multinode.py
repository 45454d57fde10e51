"""Multi-node runs on the local node, for tests/e2e/test_multinode.py and the benchmark in tests/bench.

The local node advertises fake `nvidia.com/gpu` so that a FineTuneJob with `gpus: 1` per node schedules
there (the CRD requires a GPU per node when `nodes > 1`); every process trains on the CPU. The operator
gets free ports for the rendezvous and the trainer's metrics, because every pod shares the host's loopback
(and other test sessions may share the machine).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kubetune_dev.controlplane.ports import free_ports
from kubetune_dev.demo import MANIFEST, NAMESPACE, Demo
from kubetune_dev.local_node.pods import sandbox_dir

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRAINING_DONE = re.compile(r"training done: (\d+) steps in ([\d.]+) s")
STEP_LOGGED = re.compile(r"^(\S+ \S+) INFO kubetune_trainer\.pipeline: step (\d+)/\d+ ", re.M)
LOCAL_NODE_GPUS = 2


def multinode_demo(workdir: Path, log: Any, image_env: dict[str, str] | None = None) -> Demo:
    """The `make demo` stack with a local node that can take two one-GPU pods."""
    rendezvous, metrics = free_ports(2)
    env = {"KUBETUNE_RENDEZVOUS_PORT": str(rendezvous), "KUBETUNE_TRAINER_METRICS_PORT": str(metrics)}
    return Demo(workdir, log=log, node_gpus=LOCAL_NODE_GPUS, operator_env=env, image_env=image_env)


def finetunejob(
    name: str,
    *,
    nodes: int = 2,
    gpus: int = 1,
    distributed: dict[str, Any] | None = None,
    method: dict[str, Any] | None = None,
    steps: int = 8,
    learning_rate: float | None = None,
    checkpoint_every: int = 20,
) -> dict[str, Any]:
    """The demo's FineTuneJob (tiny Llama, LoRA, PVC data, eval gate) on `nodes` x `gpus`."""
    doc: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["resources"] = {**spec["resources"], "gpus": gpus, "nodes": nodes, "cpu": "1", "memory": "3Gi"}
    spec["training"]["maxSteps"] = steps
    if learning_rate is not None:
        spec["training"]["learningRate"] = learning_rate
    spec["checkpointing"] = {"everySteps": checkpoint_every, "keepLast": 1}
    spec["output"]["adapterName"] = name
    if distributed:
        spec["distributed"] = distributed
    if method:
        spec["method"] = method
    return doc


@dataclass(frozen=True)
class TrainerPod:
    """One pod of the training Job as the local node ran it: its status and the files it left."""

    name: str
    index: int
    created: str
    phase: str
    exit_code: int | None
    reason: str | None
    sandbox: Path

    @property
    def log(self) -> str:
        path = self.sandbox / "container.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def training_seconds(self) -> float | None:
        """What rank 0 logs at the end of training (the rank-0 pod only); includes waiting for the other ranks."""
        found = TRAINING_DONE.search(self.log)
        return float(found.group(2)) if found else None

    @property
    def seconds_per_step(self) -> float | None:
        """Steady state from rank 0's step log lines: (time of the last step - time of step 1) / steps between."""
        first_seen: dict[int, datetime] = {}
        for stamp, step in STEP_LOGGED.findall(self.log):
            first_seen.setdefault(int(step), datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f"))
        if 1 not in first_seen or len(first_seen) < 2:
            return None
        last = max(first_seen)
        return (first_seen[last] - first_seen[1]).total_seconds() / (last - 1)


def trainer_pods(demo: Demo, job_name: str) -> list[TrainerPod]:
    """The Job's pods, oldest first (a retried index has an older, failed pod)."""
    assert demo.node is not None
    listed = json.loads(
        demo.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"batch.kubernetes.io/job-name={job_name}", "-o", "json")
    )["items"]
    found = []
    for pod in listed:
        meta = pod["metadata"]
        terminated = next(iter(pod["status"].get("containerStatuses") or []), {}).get("state", {}).get("terminated")
        found.append(
            TrainerPod(
                name=meta["name"],
                index=int(meta.get("annotations", {}).get(COMPLETION_INDEX, "0")),
                created=meta["creationTimestamp"],
                phase=pod["status"].get("phase", ""),
                exit_code=terminated.get("exitCode") if terminated else None,
                reason=terminated.get("reason") if terminated else None,
                sandbox=sandbox_dir(demo.node.runtime.root, NAMESPACE, meta["name"], meta["uid"]),
            )
        )
    return sorted(found, key=lambda p: (p.created, p.index))


def status_writers(demo: Demo, finetunejob: str, service_account: str) -> list[str]:
    """Pod names (from the bound token in the audit log) behind every status write of the run's ServiceAccount."""
    writers = []
    for line in demo.plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef", {})
        user = event.get("user", {})
        if (
            event.get("stage") == "ResponseComplete"
            and user.get("username") == f"system:serviceaccount:{NAMESPACE}:{service_account}"
            and ref.get("resource") == "finetunejobs"
            and ref.get("name") == finetunejob
            and ref.get("subresource") == "status"
            and event.get("verb") == "patch"
        ):
            writers.extend(user.get("extra", {}).get("authentication.kubernetes.io/pod-name", ["?"]))
    return writers

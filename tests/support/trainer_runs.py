"""Single-node runs of the real trainer on the local node, followed step by step: for tests/e2e/test_recovery.py
and tests/e2e/test_kueue_resume.py.

A run is the demo's tiny LoRA run with many short steps and frequent checkpoints, so a kill, a suspension or a
preemption lands mid-run. Assertions are on steps: the step a pod reached (its log), the step the next pod
resumed from (its log and `status.progress.resumedFromStep`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.demo import MANIFEST, NAMESPACE, Demo
from support.multinode import TrainerPod, trainer_pods

STEP = re.compile(r"INFO kubetune_trainer\.pipeline: step (\d+)/")
UPLOADED = re.compile(r"checkpoint (\d+) uploaded to ")
RESUMED = re.compile(r"resuming from checkpoint (\d+) of ")


def finetunejob(name: str, *, steps: int, every: int, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["training"]["maxSteps"] = steps
    doc["spec"]["checkpointing"] = {"everySteps": every, "keepLast": 2}
    doc["spec"]["output"]["adapterName"] = name
    doc["spec"]["evaluation"] = {}  # the gate is the demo's business; here every second goes to recovery
    doc["spec"].update(spec)
    return doc


def steps_logged(pod: TrainerPod) -> list[int]:
    return [int(step) for step in STEP.findall(pod.log)]


def uploaded(pod: TrainerPod) -> list[int]:
    return [int(step) for step in UPLOADED.findall(pod.log)]


def resumed_from(pod: TrainerPod) -> list[int]:
    return [int(step) for step in RESUMED.findall(pod.log)]


def running_pod(demo: Demo, job: str) -> TrainerPod | None:
    return next((p for p in trainer_pods(demo, job) if p.phase == "Running"), None)


def when_running_pod(demo: Demo, job: str, ready: Callable[[TrainerPod], bool], what: str) -> TrainerPod:
    def check() -> TrainerPod | None:
        pod = running_pod(demo, job)
        return pod if pod is not None and ready(pod) else None

    return wait_until(f"{job}: {what}", check, timeout=300, interval=0.2)


def status_of(demo: Demo, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(demo.kubectl("get", "ftj", name, "-n", NAMESPACE, "-o", "json"))
    return dict(found.get("status") or {})


def job_failed(demo: Demo, job: str) -> int:
    return int(demo.kubectl("get", "job", job, "-n", NAMESPACE, "-o", "jsonpath={.status.failed}") or 0)

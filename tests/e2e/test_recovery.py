"""Failure scenarios with the real trainer on the local node: what a run loses when its pod dies, is stopped or
suspended, when its data is bad, and when the object store holding its checkpoints goes down.

Each run is the demo's tiny LoRA run with many short steps and frequent checkpoints, so a kill or a suspension
lands mid-run. Assertions are on steps: the step the first pod reached (from its log), the step the next pod
resumed from (its log and `status.progress.resumedFromStep`), and the Job's failure count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.k8s.client import Kube
from kubetune.k8s.interface import path
from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.demo import NAMESPACE, Demo
from kubetune_dev.tiny import write_jsonl
from support.multinode import TrainerPod, trainer_pods
from support.s3server import S3Process, s3_process
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
from support.witness import Witness

pytestmark = pytest.mark.e2e

STORAGE_SECRET = "s3-credentials"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    operator_env = {"KUBETUNE_STORAGE_SECRET_NAME": STORAGE_SECRET}  # optional envFrom: only the S3 run has it
    with Demo(
        tmp_path_factory.mktemp("recovery"), log=lambda line: print(line, flush=True), operator_env=operator_env
    ) as running:
        yield running


def checkpoint_dir(result_or_demo: Demo, uid: str) -> Path:
    """Where the run's checkpoints go by default: next to the output, on the claim (a host folder here)."""
    return result_or_demo.claim_dir / "adapters" / ".checkpoints" / uid


def uid_of(demo: Demo, name: str) -> str:
    return str(wait_until(f"{name} created", lambda: _uid(demo, name), timeout=60))


def _uid(demo: Demo, name: str) -> str | None:
    found = demo.kubectl("get", "ftj", name, "-n", NAMESPACE, "--ignore-not-found", "-o", "jsonpath={.metadata.uid}")
    return found or None


def complete_on_disk(folder: Path, step: int) -> bool:
    return (folder / f"checkpoint-{step}" / "kubetune-checkpoint-0-of-1.json").is_file()


def test_a_killed_pod_is_replaced_and_resumes_losing_less_than_one_checkpoint_interval(demo: Demo) -> None:
    """SIGKILL (a crash, the OOM killer, a lost node) the moment checkpoint 10 is complete on durable storage:
    nothing is saved at the kill, and the next pod resumes from that checkpoint."""
    name, steps, every = "kill", 40, 10
    job = f"{name}-train"
    killed: dict[str, Any] = {}

    def kill() -> None:
        stored = checkpoint_dir(demo, uid_of(demo, name))
        wait_until("checkpoint 10 complete on the claim", lambda: complete_on_disk(stored, 10), 600, interval=0.01)
        pod = running_pod(demo, job)
        assert pod is not None
        assert demo.node is not None
        assert demo.node.kill(NAMESPACE, pod.name)
        killed.update(pod=pod.name, complete=[s for s in range(every, steps + 1, every) if complete_on_disk(stored, s)])

    with ThreadPoolExecutor(1) as pool:
        killing = pool.submit(kill)
        result = demo.train(finetunejob(name, steps=steps, every=every), timeout=900)
        killing.result()

    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    first, rerun = trainer_pods(demo, job)
    assert (first.name, first.exit_code) == (killed["pod"], 137)
    reached = max(steps_logged(first))
    resumed = resumed_from(rerun)[0]
    assert resumed == max(killed["complete"]), "the newest checkpoint complete on durable storage when the pod died"
    assert 0 <= reached - resumed < every, "less than one checkpoint interval is lost"
    assert steps_logged(rerun)[0] == resumed + 1
    assert status["progress"]["resumedFromStep"] == resumed
    assert status["progress"]["step"] == steps
    assert status["attempts"] == 2, "a crash is a failed try"
    assert job_failed(demo, job) == 1
    assert result.adapter is not None
    assert result.adapter["status"]["phase"] == "Ready"
    assert not checkpoint_dir(demo, result.finetunejob["metadata"]["uid"]).exists(), "deleted after success"


def test_suspend_saves_at_the_current_step_and_resume_continues_from_it(demo: Demo) -> None:
    """`suspend: true` deletes the pod: SIGTERM, the trainer saves a checkpoint at the step it reached and exits
    143, which the Job does not count as a failure; `suspend: false` resumes from exactly that step. The test
    freezes the pod (SIGSTOP) while it suspends the run, so the SIGTERM lands mid-run however fast training is."""
    name, steps = "pause", 40
    job = f"{name}-train"
    stopped: dict[str, Any] = {}

    def suspend_and_resume() -> None:
        first = when_running_pod(demo, job, lambda p: max(steps_logged(p), default=0) >= 3, "step 3")
        assert demo.node is not None
        frozen = demo.node.freeze(NAMESPACE, first.name)
        assert frozen is not None
        demo.kubectl("patch", "ftj", name, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"suspend":true}}')
        wait_until("the pod deleted (the node sent it SIGTERM)", frozen.terminated, timeout=120)
        frozen.thaw()
        wait_until(f"{name} Suspended", lambda: status_of(demo, name).get("phase") == "Suspended", timeout=120)
        wait_until("the first pod gone", lambda: running_pod(demo, job) is None, timeout=150)
        pod = next(p for p in trainer_pods(demo, job) if p.name == first.name)
        stopped.update(pod=pod, status=status_of(demo, name))
        demo.kubectl("patch", "ftj", name, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"suspend":false}}')

    with ThreadPoolExecutor(1) as pool:
        pausing = pool.submit(suspend_and_resume)
        result = demo.train(finetunejob(name, steps=steps, every=10_000), timeout=900)
        pausing.result()

    first: TrainerPod = stopped["pod"]
    assert first.exit_code == 143, first.log[-3000:]
    saved = max(steps_logged(first))
    assert saved < steps
    assert f"stopping at step {saved} on SIGTERM; saving a checkpoint" in first.log
    assert uploaded(first) == [saved], "the only checkpoint is the one saved on SIGTERM"
    assert stopped["status"]["attempts"] == 1
    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    rerun = trainer_pods(demo, job)[-1]
    assert resumed_from(rerun) == [saved], "resumed from the step it was stopped at"
    assert steps_logged(rerun)[0] == saved + 1, "no step is lost"
    assert status["progress"]["resumedFromStep"] == saved
    assert status["attempts"] == 1, "suspension is no failed try"
    assert job_failed(demo, job) == 0


def test_bad_data_fails_once_with_one_clear_line_before_a_gpu_job(demo: Demo) -> None:
    write_jsonl(demo.claim_dir / "datasets" / "broken.jsonl", [{"prompt": "no text column", "id": i} for i in range(8)])
    doc = finetunejob("bad-data", steps=10, every=5)
    doc["spec"]["dataset"]["train"]["uri"] = "pvc://demo-data/datasets/broken.jsonl"
    result = demo.train(doc, timeout=600)

    status = result.finetunejob["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ConfigError"), status
    assert "\n" not in status["message"]
    assert "text" in status["message"], status["message"]
    assert status["message"].endswith("(fix the spec or the data; config errors are not retried)")
    jobs = json.loads(demo.kubectl("get", "jobs", "-n", NAMESPACE, "-l", "kubetune.io/job=bad-data", "-o", "json"))
    by_component = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in jobs["items"]}
    assert set(by_component) == {"preflight"}, "the CPU preflight pod caught it: no GPU Job was ever created"
    (pod,) = trainer_pods(demo, by_component["preflight"]["metadata"]["name"])
    assert pod.exit_code == 78
    assert result.adapter is None


@pytest.fixture
def object_store(demo: Demo, tmp_path: Path) -> Iterator[S3Process]:
    with s3_process(tmp_path / "seaweedfs") as store:
        store.server.client().create_bucket(Bucket="ckpt")
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": STORAGE_SECRET, "namespace": NAMESPACE},
            "stringData": store.server.env(),
        }
        demo.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret))
        try:
            yield store
        finally:
            demo.kubectl("delete", "secret", STORAGE_SECRET, "-n", NAMESPACE, "--ignore-not-found")


def stored_steps(store: S3Process, prefix: str) -> list[int]:
    listed = store.server.client().list_objects_v2(Bucket="ckpt", Prefix=prefix).get("Contents", [])
    found = {re.search(r"checkpoint-(\d+)/kubetune-checkpoint-0-of-1\.json$", o["Key"]) for o in listed}
    return sorted(int(m.group(1)) for m in found if m)


def test_the_object_store_down_during_a_sync_costs_no_training(demo: Demo, object_store: S3Process) -> None:
    """The store goes down right after the first checkpoint landed (the pod frozen meanwhile, so it has not gone
    further): training goes on, uploads fail and are retried, and once the store is back the newest checkpoint
    lands (kept here, `deleteOnSuccess: false`, to look at afterwards)."""
    name, steps, every = "s3-outage", 40, 10
    job = f"{name}-train"
    outage: dict[str, Any] = {}

    def take_the_store_down() -> None:
        prefix = f"runs/{uid_of(demo, name)}/"
        wait_until("checkpoint 10 on S3", lambda: 10 in stored_steps(object_store, prefix), 600, interval=0.05)
        pod = running_pod(demo, job)
        assert pod is not None
        assert demo.node is not None
        frozen = demo.node.freeze(NAMESPACE, pod.name)
        assert frozen is not None
        object_store.stop()
        outage["step"] = max(steps_logged(pod))
        frozen.thaw()
        down = when_running_pod(demo, job, lambda p: "failed, will retry" in p.log, "an upload failing")
        outage["trained"] = max(steps_logged(down))
        object_store.start()

    doc = finetunejob(name, steps=steps, every=every)
    doc["spec"]["checkpointing"]["storage"] = {"uri": "s3://ckpt/runs/", "deleteOnSuccess": False}
    with ThreadPoolExecutor(1) as pool:
        outaging = pool.submit(take_the_store_down)
        result = demo.train(doc, timeout=900)
        outaging.result()

    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    (pod,) = trainer_pods(demo, job)
    assert outage["trained"] > outage["step"], "training went on while the store was down"
    assert [step for step in uploaded(pod) if step > outage["step"]], pod.log[-3000:]
    stored = stored_steps(object_store, f"runs/{result.finetunejob['metadata']['uid']}/")
    assert stored[-1] == steps, "the last checkpoint landed once the store was back"
    assert len(stored) <= 2, "keepLast 2 on the store too"
    assert status["attempts"] == 1


def phases(kube: Kube, kind: str) -> dict[str, str]:
    return {
        item["metadata"]["name"]: (item.get("status") or {}).get("phase", "")
        for item in kube.list(path(kind, NAMESPACE))
    }


def any_status(kube: Kube, field: str) -> bool:
    """Whether some FineTuneJob's status has `field` (a path such as `progress.step`) set."""
    for ftj in kube.list(path("FineTuneJob", NAMESPACE)):
        value: Any = ftj.get("status") or {}
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value:
            return True
    return False


def test_the_operator_sigkilled_during_a_burst_of_real_runs_loses_and_duplicates_nothing(demo: Demo) -> None:
    """The operator SIGKILLed (and started again) three times while three real runs go: once their first Job
    exists, once a run reports its first step, once a run's result is written (the operator is about to
    publish). Every run still ends Succeeded on its first pod, with one Job and one Adapter over the whole
    scenario. The many-runs version of this, with kwok pods, is tests/integration/operator/test_operator_crash.py."""
    names = {f"burst-{index}" for index in range(3)}
    kube = Kube.from_environment(str(demo.plane.kubeconfig_path))
    log = demo.workdir / "operator.log"
    log_start = log.stat().st_size
    with Witness(lambda kind: kube.list(path(kind, NAMESPACE)), interval=0.5) as witness:
        for name in sorted(names):
            doc = finetunejob(name, steps=12, every=6)
            demo.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(doc))
        wait_until("a Job for the first run", lambda: witness.jobs.keys() & names, timeout=60, interval=0.05)
        demo.crash_operator()
        wait_until("a run to report its first step", lambda: any_status(kube, "progress.step"), 600, interval=0.2)
        demo.crash_operator()
        wait_until("a run's result", lambda: any_status(kube, "result"), timeout=600, interval=0.1)
        demo.crash_operator()
        wait_until(
            "every run Succeeded",
            lambda: all(phases(kube, "FineTuneJob").get(name) == "Succeeded" for name in names),
            timeout=600,
            interval=1,
        )
        wait_until(
            "every Adapter Ready",
            lambda: all(phases(kube, "Adapter").get(name) == "Ready" for name in names),
            timeout=120,
            interval=1,
        )

    for name in names:
        assert len(witness.jobs[name]) == 1, f"{name}: Jobs {witness.jobs[name]}"
        assert len(witness.adapters[name]) == 1, f"{name}: Adapters {witness.adapters[name]}"
        (pod,) = trainer_pods(demo, f"{name}-train")
        assert pod.exit_code == 0
        assert status_of(demo, name)["attempts"] == 1
        adapter = kube.get(path("Adapter", NAMESPACE, name))
        assert adapter is not None
        assert adapter["metadata"]["generation"] == 1, "the Adapter's spec was applied more than once with changes"
    assert "Traceback" not in log.read_text()[log_start:]

"""Multi-node training for real: a 2-node FineTuneJob whose two pods rendezvous through torchrun (gloo).

The operator renders what it renders for a GPU cluster (Indexed Job, headless Service, `torchrun
--node-rank=$(NODE_RANK) --master-addr=$(MASTER_ADDR)`); the local node runs each pod as local
processes in its own mount, UTS and PID namespaces, with the Indexed Job's hostname and a hosts file
that resolves the headless Service's pod names to loopback. Nothing between the rendered Job and the
published Adapter is faked; only the GPUs are (advertised so the pods schedule; training runs on CPU).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.demo import NAMESPACE, Demo, DemoResult
from support.multinode import TrainerPod, finetunejob, multinode_demo, status_writers, trainer_pods

pytestmark = pytest.mark.e2e

LORA_DDP: dict[str, Any] = {"distributed": {"strategy": "ddp"}}
FULL_ZERO3: dict[str, Any] = {
    "distributed": {"strategy": "deepspeed", "zeroStage": 3},
    "method": {"type": "full"},
    "learning_rate": 1e-3,
}
PEER_LOST = re.compile(r"Connection (reset|closed) by peer")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with multinode_demo(tmp_path_factory.mktemp("multinode"), log=lambda line: print(line, flush=True)) as running:
        yield running


def job_of(result: DemoResult) -> str:
    return str(result.finetunejob["status"]["jobName"])


def assert_published_once_by_rank_zero(demo: Demo, result: DemoResult, rank_zero_pods: list[TrainerPod]) -> None:
    """One Adapter, applied once, pointing at the one artifact rank 0 wrote; only rank 0 wrote status."""
    name = result.finetunejob["metadata"]["name"]
    status = result.finetunejob["status"]
    adapter = result.adapter
    assert adapter is not None
    assert adapter["status"]["phase"] == "Ready"
    assert adapter["metadata"]["generation"] == 1, "the Adapter's spec was applied once"
    assert adapter["spec"]["artifact"]["sha256"] == status["result"]["sha256"]
    adapters = demo.kubectl("get", "adp", "-n", NAMESPACE, "-o", "name").split()
    assert adapters.count(f"adapter.kubetune.io/{name}") == 1
    artifacts = [p.parent.name for p in (result.claim_dir / "adapters").glob("*/kubetune.json")]
    assert artifacts.count(name) == 1
    job = json.loads(demo.kubectl("get", "job", job_of(result), "-n", NAMESPACE, "-o", "json"))
    account = job["spec"]["template"]["spec"]["serviceAccountName"]  # the namespace's, or the run's own
    writers = status_writers(demo, name, account)
    assert len(writers) >= 2, "progress and result"
    assert set(writers) <= {p.name for p in rank_zero_pods}, "ranks other than 0 never write status"


@pytest.mark.parametrize("run", [LORA_DDP, FULL_ZERO3], ids=["lora-ddp", "full-zero3"])
def test_two_pods_rendezvous_and_train_one_model(demo: Demo, run: dict[str, Any]) -> None:
    steps = 6
    name = f"mn-{run.get('method', {}).get('type', 'lora')}-{run['distributed']['strategy']}"
    result = demo.train(finetunejob(name, steps=steps, **run), timeout=900)

    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == steps
    assert status["attempts"] == 1
    pods = trainer_pods(demo, job_of(result))
    assert sorted(p.index for p in pods) == [0, 1]
    rank_zero, rank_one = sorted(pods, key=lambda p: p.index)
    assert rank_zero.phase == rank_one.phase == "Succeeded", pods
    # a world of two can only finish training when both pods joined it; rank 1 logs warnings only
    assert rank_zero.log.count(f"training done: {steps} steps") == 1
    assert "training done" not in rank_one.log
    assert "published artifact" not in rank_one.log
    hosts = (rank_one.sandbox / "etc-hosts").read_text().splitlines()
    names = {n for line in hosts if line.startswith("127.0.0.1") for n in line.split()[1:]}
    assert f"{job_of(result)}-0.{name}-rdzv" in names, "MASTER_ADDR as rendered resolves in rank 1's pod"
    assert_published_once_by_rank_zero(demo, result, [rank_zero])


def kill_when_checkpointed(demo: Demo, name: str, job: str, step: int, index: int) -> TrainerPod:
    """SIGKILL every process of the pod with `index` once checkpoint `step` is complete on durable storage (both
    nodes' markers on the claim) and rank 0 has gone past it; returns that pod."""

    def complete() -> bool:
        uid = demo.kubectl("get", "ftj", name, "-n", NAMESPACE, "--ignore-not-found", "-o", "jsonpath={.metadata.uid}")
        folder = demo.claim_dir / "adapters" / ".checkpoints" / uid / f"checkpoint-{step}"
        return bool(uid) and all((folder / f"kubetune-checkpoint-{n}-of-2.json").is_file() for n in (0, 1))

    def rank_zero_past() -> bool:
        pods = [p for p in trainer_pods(demo, job) if p.phase == "Running"]
        return len(pods) == 2 and any(p.index == 0 and f"step {step + 1}/" in p.log for p in pods)

    wait_until(f"checkpoint {step} of {job} complete", complete, timeout=600, interval=0.2)
    wait_until(f"rank 0 of {job} past step {step}", rank_zero_past, timeout=600, interval=0.2)
    victim = next(p for p in trainer_pods(demo, job) if p.index == index and p.phase == "Running")
    assert demo.node is not None
    assert demo.node.kill(NAMESPACE, victim.name)
    return victim


def test_a_killed_pod_fails_both_ranks_and_the_job_resumes_from_the_checkpoint(demo: Demo) -> None:
    """SIGKILL rank 1 mid-run: rank 0 sees the broken gloo connection and exits 1 (no hang), both failures count
    against backoffLimit but are one failed try, the Job recreates both indexes, and the new pods resume from
    the newest checkpoint both nodes completed on durable storage (the claim), then publish once."""
    steps, checkpoint_every, kill_after = 100, 5, 5  # a step takes 0.05-1.5 s here: the kill must land mid-run
    name = "mn-crash"
    job = f"{name}-train"
    with ThreadPoolExecutor(1) as pool:
        killing = pool.submit(kill_when_checkpointed, demo, name, job, kill_after, 1)
        result = demo.train(finetunejob(name, steps=steps, checkpoint_every=checkpoint_every, **LORA_DDP), timeout=900)
        victim = killing.result()

    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    pods = trainer_pods(demo, job)
    first_zero = next(p for p in pods if p.index == 0)
    killed = next(p for p in pods if p.name == victim.name)
    assert (killed.phase, killed.exit_code, killed.reason) == ("Failed", 137, "Error")
    assert (first_zero.phase, first_zero.exit_code) == ("Failed", 1), "rank 0 fails on the lost peer"
    assert PEER_LOST.search(first_zero.log), first_zero.log[-2000:]

    reruns = [p for p in pods if p.name not in (first_zero.name, killed.name)]
    assert sorted(p.index for p in reruns) == [0, 1]
    assert all(p.phase == "Succeeded" for p in reruns), reruns
    rerun_zero = next(p for p in reruns if p.index == 0)
    resumed = [int(step) for step in re.findall(r"resuming from checkpoint (\d+) of ", rerun_zero.log)]
    assert resumed, rerun_zero.log[-2000:]
    assert resumed[0] >= kill_after
    reached = max(int(s) for s in re.findall(r"INFO kubetune_trainer\.pipeline: step (\d+)/", first_zero.log))
    assert 0 <= reached - resumed[0] <= checkpoint_every, "at most one checkpoint interval is lost"
    assert f"step {resumed[0] + 1}/{steps} " in rerun_zero.log, "the rerun continues where the checkpoint was"
    assert f"step 1/{steps} " not in rerun_zero.log
    assert rerun_zero.log.count(f"training done: {steps} steps") == 1

    job_status = demo.kubectl("get", "job", job, "-n", NAMESPACE, "-o", "jsonpath={.status.failed}")
    assert job_status == "2", "one crash costs two of backoffLimit: the killed rank and the rank it took down"
    assert status["attempts"] == 2, "but it is one failed try"
    assert status["progress"]["step"] == steps
    assert status["progress"]["resumedFromStep"] == resumed[0]
    assert_published_once_by_rank_zero(demo, result, [first_zero, rerun_zero])

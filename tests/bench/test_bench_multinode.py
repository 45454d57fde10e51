"""Benchmark, run by `make bench` only: the same FineTuneJob in one pod and across two pods.

The same spec (the demo's LoRA SFT on the tiny Llama, 30 steps, `distributed.strategy: ddp`) three ways
on the local node: 1 pod x 1 process (the baseline), 1 pod x 2 processes (`torchrun --standalone`),
2 pods x 1 process (an Indexed Job rendezvousing through the headless Service). `batchSize` is per
process, so the two-process runs see twice the samples per step. Two numbers per run: wall time from
`kubectl apply` to `Succeeded` (scheduling, process start, imports, data prep, training, evaluation,
publishing) and rank 0's own training time; both as ratios to the baseline measured in the same session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kubetune_dev.demo import Demo
from support.multinode import finetunejob, multinode_demo, trainer_pods

pytestmark = pytest.mark.bench

STEPS = 30
SHAPES = [("1 pod x 1 process", 1, 1), ("1 pod x 2 processes", 1, 2), ("2 pods x 1 process", 2, 1)]


@dataclass(frozen=True)
class Timing:
    shape: str
    wall_seconds: float
    training_seconds: float


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = multinode_demo(tmp_path_factory.mktemp("bench-multinode"), log=lambda _line: None)
    try:
        running.start()
        yield running
    finally:
        running.close()


def timed_run(demo: Demo, shape: str, nodes: int, gpus: int) -> Timing:
    name = f"bench-{nodes}x{gpus}"
    started = time.monotonic()
    result = demo.train(finetunejob(name, nodes=nodes, gpus=gpus, steps=STEPS, distributed={"strategy": "ddp"}))
    wall = time.monotonic() - started
    assert result.finetunejob["status"]["phase"] == "Succeeded", result.finetunejob["status"]
    rank_zero = next(p for p in trainer_pods(demo, result.finetunejob["status"]["jobName"]) if p.index == 0)
    training = rank_zero.training_seconds
    assert training is not None, rank_zero.log[-2000:]
    return Timing(shape, wall, training)


def test_multi_node_against_one_pod(demo: Demo) -> None:
    timings = [timed_run(demo, shape, nodes, gpus) for shape, nodes, gpus in SHAPES]
    base = timings[0]
    print(f"\nBENCH multi-node ({STEPS} steps, tiny Llama LoRA, CPU): ratios to {base.shape}")
    print(f"{'run':<22}{'apply->Succeeded':>18}{'ratio':>8}{'training':>11}{'ratio':>8}")
    for t in timings:
        print(
            f"{t.shape:<22}{t.wall_seconds:>16.1f} s{t.wall_seconds / base.wall_seconds:>7.2f}x"
            f"{t.training_seconds:>9.1f} s{t.training_seconds / base.training_seconds:>7.2f}x"
        )
    assert all(t.wall_seconds > t.training_seconds > 0 for t in timings)

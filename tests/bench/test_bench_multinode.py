"""Benchmark, run by `make bench` only: the same FineTuneJob in one pod and across two pods.

The same spec (the demo's LoRA SFT on the tiny Llama, `distributed.strategy: ddp`) three ways on the
local node: 1 pod x 1 process (the baseline), 1 pod x 2 processes (`torchrun --standalone`), 2 pods x 1
process (an Indexed Job rendezvousing through the headless Service). `batchSize` is per process, so the
two-process runs see twice the samples per step. Two numbers per run, best of `REPEATS`: wall time from
`kubectl apply` to `Succeeded` (scheduling, process start, imports, data prep, training, evaluation,
publishing) and rank 0's steady-state time per step (from its step log lines; the first step, which
waits for the last rank to arrive, is excluded); each as a ratio to the baseline of the same session.

Twice: with the pod environment as rendered, and with `OMP_NUM_THREADS=1` in every pod. All pods share
this machine's cores, and a one-process pod without OMP_NUM_THREADS runs as many threads as there are
cores (torchrun sets 1 only when it starts several processes), so two such pods oversubscribe the CPU,
which separate nodes would not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kubetune_dev.demo import Demo
from support.multinode import finetunejob, multinode_demo, trainer_pods

pytestmark = pytest.mark.bench

STEPS = 100
REPEATS = 2
SHAPES = [("1 pod x 1 process", 1, 1), ("1 pod x 2 processes", 1, 2), ("2 pods x 1 process", 2, 1)]


@dataclass(frozen=True)
class Timing:
    wall_seconds: float
    seconds_per_step: float


@pytest.fixture(scope="module", params=[{}, {"OMP_NUM_THREADS": "1"}], ids=["as-rendered", "omp-1-thread"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("bench-multinode")
    with multinode_demo(workdir, log=lambda _line: None, image_env=request.param) as running:
        yield running


def timed_run(demo: Demo, name: str, nodes: int, gpus: int) -> Timing:
    started = time.monotonic()
    result = demo.train(finetunejob(name, nodes=nodes, gpus=gpus, steps=STEPS, distributed={"strategy": "ddp"}))
    wall = time.monotonic() - started
    assert result.finetunejob["status"]["phase"] == "Succeeded", result.finetunejob["status"]
    rank_zero = next(p for p in trainer_pods(demo, result.finetunejob["status"]["jobName"]) if p.index == 0)
    per_step = rank_zero.seconds_per_step
    assert per_step is not None, rank_zero.log[-2000:]
    return Timing(wall, per_step)


def test_multi_node_against_one_pod(demo: Demo) -> None:
    best: dict[str, Timing] = {}
    for attempt in range(REPEATS):
        for shape, nodes, gpus in SHAPES:
            timing = timed_run(demo, f"bench-{nodes}x{gpus}-{attempt}", nodes, gpus)
            previous = best.get(shape, timing)
            best[shape] = Timing(
                min(previous.wall_seconds, timing.wall_seconds), min(previous.seconds_per_step, timing.seconds_per_step)
            )
    base = best[SHAPES[0][0]]
    threads = demo.image_env.get("OMP_NUM_THREADS")
    env = f"OMP_NUM_THREADS={threads}" if threads else "pod env as rendered"
    print(f"\nBENCH multi-node ({STEPS} steps, tiny Llama LoRA, CPU, best of {REPEATS}, {env}): vs {SHAPES[0][0]}")
    print(f"{'run':<22}{'apply->Succeeded':>18}{'ratio':>8}{'per step':>11}{'ratio':>8}")
    for shape, timing in best.items():
        print(
            f"{shape:<22}{timing.wall_seconds:>16.1f} s{timing.wall_seconds / base.wall_seconds:>7.2f}x"
            f"{timing.seconds_per_step * 1e3:>8.0f} ms{timing.seconds_per_step / base.seconds_per_step:>7.2f}x"
        )
    assert all(t.wall_seconds > t.seconds_per_step * (STEPS - 1) > 0 for t in best.values())

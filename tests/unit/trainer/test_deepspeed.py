"""Full fine-tuning with DeepSpeed ZeRO-2 and ZeRO-3 on CPU, one process and two (torchrun).

Each run is the real entrypoint in fresh processes: DeepSpeed owns a process group for the life of
the interpreter, so it cannot share the pytest process. `TORCH_EXTENSIONS_DIR` points at the cache
`hack/prebuild-deepspeed-ops.sh` fills, so the shared-memory comm op compiles at most once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kubetune_trainer.artifacts import MANIFEST
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

REPO = Path(__file__).resolve().parents[3]
EXTENSIONS = Path(os.environ.get("KUBETUNE_CACHE", Path.home() / ".cache" / "kubetune")) / "torch_extensions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    return (
        os.environ
        | {
            "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer-image")]),
            "HF_HUB_OFFLINE": "1",
            "DS_ACCELERATOR": "cpu",
            "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(EXTENSIONS)),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "OMP_NUM_THREADS": "1",
            "KUBETUNE_TERMINATION_LOG": os.devnull,
        }
        | extra
    )


def _run(tmp: Path, model_dir: Path, data: Path, stage: int, processes: int) -> Path:
    wire = trainer_config(
        tmp,
        model_dir,
        data,
        "full",
        job={"distributed": {"strategy": "deepspeed", "zeroStage": stage}},
        training={"maxSteps": 3, "batchSize": 4},
        runtime={
            "strategy": "deepspeed",
            "launcher": "torchrun",
            "worldSize": processes,
            "processesPerNode": processes,
        },
    )
    config = tmp / "trainer.json"
    config.write_text(json.dumps(wire))
    if processes == 1:
        command = [sys.executable, "-m", "kubetune_trainer", "--config", str(config)]
        env = _env(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    else:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        command = [*torchrun, "--master_port", str(_free_port()), "-m", "kubetune_trainer", "--config", str(config)]
        env = _env()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return tmp / "out" / "job"


@pytest.mark.parametrize(("stage", "processes"), [(2, 1), (3, 1), (2, 2), (3, 2)])
def test_zero_full_fine_tuning(
    stage: int, processes: int, tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    from safetensors.torch import load_file

    artifact = _run(tmp_path, model_dir, data_files["text"], stage, processes)
    manifest = json.loads((artifact / MANIFEST).read_text())
    assert manifest["metrics"]["train.steps"] == 3
    assert manifest["format"] == "safetensors"
    trained = load_file(str(artifact / "model.safetensors"))
    base = load_file(str(model_dir / "model.safetensors"))
    # ZeRO-3 must gather full (not partitioned, empty) tensors on save
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in base.items()}
    changed = [k for k in base if not torch.equal(base[k].float(), trained[k].float())]
    assert len(changed) == len(base), "every parameter is trained in full fine-tuning"

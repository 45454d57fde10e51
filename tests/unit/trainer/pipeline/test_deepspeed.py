"""Distributed training on CPU: DeepSpeed ZeRO-2/3 (one process and two), FSDP and DDP (two, torchrun).

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
from typing import Any

import pytest
import torch

from kubetune.api.v1alpha1.artifact import ArtifactManifest
from kubetune.api.v1alpha1.training import DistributedSpec, TrainingSpec
from kubetune_trainer.deepspeed_config import deepspeed_config
from kubetune_trainer.manifest import read_manifest
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

REPO = Path(__file__).resolve().parents[4]
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


def _run(
    tmp: Path, model_dir: Path, data: Path, method: str, *, distributed: dict[str, Any], processes: int
) -> tuple[Path, ArtifactManifest]:
    """(artifact directory, its manifest) of a run of the real entrypoint in fresh processes."""
    strategy = distributed["strategy"]
    wire = trainer_config(
        tmp,
        model_dir,
        data,
        method,
        job={"distributed": distributed},
        training={"maxSteps": 3, "batchSize": 4},
        runtime={"strategy": strategy, "launcher": "torchrun", "worldSize": processes, "processesPerNode": processes},
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
    assert proc.stdout.count("training done: 3 steps") == 1, "rank 0 logs once; other ranks stay quiet"
    artifact = tmp / "out" / "job"
    manifest = read_manifest(artifact)
    assert manifest is not None
    return artifact, manifest


@pytest.mark.parametrize(
    ("distributed", "processes"),
    [
        ({"strategy": "deepspeed", "zeroStage": 2}, 1),
        ({"strategy": "deepspeed", "zeroStage": 3}, 1),
        ({"strategy": "deepspeed", "zeroStage": 2}, 2),
        ({"strategy": "deepspeed", "zeroStage": 3}, 2),
        ({"strategy": "deepspeed", "zeroStage": 3, "offload": "cpu"}, 1),
        ({"strategy": "fsdp"}, 2),
    ],
    ids=["zero2-1proc", "zero3-1proc", "zero2-2proc", "zero3-2proc", "zero3-offload-1proc", "fsdp-2proc"],
)
def test_sharded_full_fine_tuning(
    distributed: dict[str, Any], processes: int, tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    from safetensors.torch import load_file

    data = data_files["text"]
    artifact, manifest = _run(tmp_path, model_dir, data, "full", distributed=distributed, processes=processes)
    assert manifest.metrics is not None
    assert manifest.metrics["train.steps"] == 3
    assert manifest.format == "safetensors"
    trained = load_file(str(artifact / "model.safetensors"))
    base = load_file(str(model_dir / "model.safetensors"))
    # ZeRO-3 and FSDP must gather full (not partitioned, empty) tensors on save
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in base.items()}
    changed = [k for k in base if not torch.equal(base[k].float(), trained[k].float())]
    assert len(changed) == len(base), "every parameter is trained in full fine-tuning"


@pytest.mark.parametrize(
    ("distributed", "processes"),
    [({"strategy": "deepspeed", "zeroStage": 2}, 1), ({"strategy": "ddp"}, 2), ({"strategy": "fsdp"}, 2)],
    ids=["lora-zero2", "lora-ddp-2proc", "lora-fsdp-2proc"],
)
def test_lora_distributed(
    distributed: dict[str, Any], processes: int, tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    from safetensors.torch import load_file

    data = data_files["text"]
    artifact, manifest = _run(tmp_path, model_dir, data, "lora", distributed=distributed, processes=processes)
    assert manifest.format == "peft-safetensors"
    adapter = load_file(str(artifact / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b
    assert all(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero; training must move it"


def test_deepspeed_config_from_spec() -> None:
    training = TrainingSpec()
    stage3 = deepspeed_config(DistributedSpec(strategy="deepspeed", zero_stage=3), training, nvme_path="/n")
    assert stage3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert stage3["optimizer"]["params"]["torch_adam"] is True
    assert stage3["train_micro_batch_size_per_gpu"] == "auto"
    offload = deepspeed_config(
        DistributedSpec(strategy="deepspeed", zero_stage=3, offload="cpu"), training, nvme_path="/n"
    )
    assert offload["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert offload["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert "torch_adam" not in offload["optimizer"]["params"]  # DeepSpeedCPUAdam does the offloaded step
    paged = deepspeed_config(DistributedSpec(strategy="deepspeed"), TrainingSpec(optimizer="adafactor"), nvme_path="/n")
    assert "optimizer" not in paged

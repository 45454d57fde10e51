"""`kubetune run FILE`: train a FineTuneJob on this machine through the operator's render path.

The TrainerConfig is taken from the very Job the operator would create (its pod template carries trainer.json),
so a local run exercises the same rendering and the same trainer as the cluster; only the pod's mount points
(cache, scratch, checkpoints, pvc://) are moved under a local work directory, and status reporting is off
because there is no FineTuneJob object to patch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.pod_contract import (
    COMPONENT_LABEL,
    CONFIG_ANNOTATION,
    CONFIG_FILE,
    TERMINATION_LOG_ENV,
    TRAINER_COMPONENT,
)
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.render.bundle import render_bundle
from kubetune.settings import OperatorSettings


def local_trainer_config(document: dict[str, Any], workdir: Path, pvc_root: Path) -> TrainerConfig:
    """The rendered TrainerConfig with pod paths replaced by local ones (pure apart from nothing)."""
    manifests = render_bundle(document, OperatorSettings())
    (job,) = [
        m for m in manifests if m["kind"] == "Job" and m["metadata"]["labels"][COMPONENT_LABEL] == TRAINER_COMPONENT
    ]
    config = TrainerConfig.model_validate_json(job["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION])
    runtime = config.runtime.model_copy(
        update={
            "cache_dir": str(workdir / "cache"),
            "work_dir": str(workdir / "scratch"),
            "checkpoint_dir": str(workdir / "scratch" / "checkpoints"),
            "pvc_mount_root": str(pvc_root),
            "report_status": False,
            "metrics_port": 0,
            "launcher": "python",
            "processes_per_node": 1,
            "world_size": 1,
            "nodes": 1,
            "strategy": "single" if config.runtime.strategy in ("ddp", "fsdp") else config.runtime.strategy,
        }
    )
    return config.model_copy(update={"runtime": runtime})


def run_locally(document: dict[str, Any], workdir: Path, pvc_root: Path) -> int:
    config = local_trainer_config(document, workdir, pvc_root)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / CONFIG_FILE
    config_path.write_text(json.dumps(config.to_wire(), indent=2))
    print(
        f"kubetune run: trainer config at {config_path}; artifacts go to {config.job.output.uri if config.job else '?'}"
    )
    env = {**os.environ, TERMINATION_LOG_ENV: str(workdir / "termination-log")}
    return subprocess.call([sys.executable, "-m", "kubetune_trainer", "--config", str(config_path)], env=env)

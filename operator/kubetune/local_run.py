"""`kubetune run FILE`: train a FineTuneJob on this machine through the operator's render path.

The TrainerConfig is taken from the very ConfigMap the operator would create, so a local run
exercises the same rendering and the same trainer as the cluster; only the pod's mount points
(cache, scratch, checkpoints, pvc://) are moved under a local work directory, and status
reporting is off because there is no FineTuneJob object to patch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.adapter import Adapter
from kubetune.api.v1alpha1.pod_contract import CONFIG_FILE, TERMINATION_LOG_ENV
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.render.adapter import merge_bundle
from kubetune.render.bundle import render_bundle
from kubetune.settings import OperatorSettings


def local_trainer_config(
    document: dict[str, Any], workdir: Path, pvc_root: Path, *, cache_dir: Path | None = None
) -> TrainerConfig:
    """The rendered TrainerConfig with pod paths replaced by local ones (pure apart from nothing)."""
    return localized(config_of(render_bundle(document, OperatorSettings())), workdir, pvc_root, cache_dir)


def local_merge_config(
    document: dict[str, Any],
    source_uris: dict[str, str],
    workdir: Path,
    pvc_root: Path,
    *,
    cache_dir: Path | None = None,
) -> TrainerConfig:
    """The merge TrainerConfig the operator renders for an Adapter with `spec.merge`, localized.

    `source_uris` stands in for the source Adapters' published artifacts (name -> artifact URI),
    which the operator would read from their status.
    """
    adapter = Adapter.model_validate(document)
    base = adapter.spec.base_model.to_wire()
    sources = [
        Adapter.model_validate(
            {
                "metadata": {"name": name, "namespace": adapter.metadata.namespace},
                "spec": {"baseModel": base, "artifact": {"uri": uri}},
            }
        )
        for name, uri in source_uris.items()
    ]
    return localized(config_of(merge_bundle(adapter, sources, OperatorSettings())), workdir, pvc_root, cache_dir)


def config_of(manifests: list[dict[str, Any]]) -> TrainerConfig:
    (config_map,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    return TrainerConfig.model_validate_json(config_map["data"][CONFIG_FILE])


def localized(config: TrainerConfig, workdir: Path, pvc_root: Path, cache_dir: Path | None = None) -> TrainerConfig:
    """Pod paths moved under `workdir` (the model cache to `cache_dir` when several runs share one)."""
    runtime = config.runtime.model_copy(
        update={
            "cache_dir": str(cache_dir or workdir / "cache"),
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


def write_config(config: TrainerConfig, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG_FILE
    path.write_text(json.dumps(config.to_wire(), indent=2))
    return path


def trainer_module(module: str, *args: str) -> list[str]:
    """A command running one of the trainer's entry modules with this interpreter."""
    return [sys.executable, "-m", module, *args]


def trainer_command(config_paths: list[Path]) -> list[str]:
    """One trainer process for one config, or the trainer's series entry for several."""
    if len(config_paths) == 1:
        return trainer_module("kubetune_trainer", "--config", str(config_paths[0]))
    return trainer_module("kubetune_trainer.series", *map(str, config_paths))


def run_locally(document: dict[str, Any], workdir: Path, pvc_root: Path) -> int:
    config = local_trainer_config(document, workdir, pvc_root)
    config_path = write_config(config, workdir)
    print(
        f"kubetune run: trainer config at {config_path}; artifacts go to {config.job.output.uri if config.job else '?'}"
    )
    env = {**os.environ, TERMINATION_LOG_ENV: str(workdir / "termination-log")}
    return subprocess.call(trainer_command([config_path]), env=env)

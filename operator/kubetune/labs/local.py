"""Running a lab's manifests on this machine, through the operator's render path and the real trainer.

Like `kubetune run`, every FineTuneJob becomes the TrainerConfig the operator would put in its
training Job (and every merge Adapter the merge config of its Job), with pod paths moved under a work
directory; the trainer runs as a subprocess, never imported (the operator package must not import
it). The lab's claim `pvc://kubetune-labs/` is a folder whose `model` and `data` entries link to the
model directory and the datasets, and whose `runs` receives the artifacts. Results are read back
from what the trainer published: the manifest's metrics (`kubetune.json`), the training log, file
sizes and checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.artifact import MANIFEST_FILE, TRAINING_LOG_FILE, ArtifactManifest
from kubetune.api.v1alpha1.scoring import ScoredModel, ScoreRequest, ScoreResult, ScoreSuite
from kubetune.labs.definition import CLAIM, LabError, artifact_uri, name_of
from kubetune.labs.record import RunRecord
from kubetune.local_run import (
    local_merge_config,
    local_trainer_config,
    trainer_command,
    trainer_module,
    write_config,
)

LOG_TAIL_LINES = 30


def local_uri_path(uri: str, pvc_root: Path) -> Path:
    if uri.startswith("pvc://"):
        return pvc_root / uri.removeprefix("pvc://")
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    raise LabError(f"{uri}: a local lab run reads artifacts from pvc:// or file:// only")


def read_record(name: str, directory: Path, process_seconds: float, checkpoints: list[Path]) -> RunRecord:
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise LabError(f"{name}: no published artifact at {directory}")
    manifest = ArtifactManifest.model_validate_json(manifest_path.read_text())
    log = directory / TRAINING_LOG_FILE
    history = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    files = {rel: digest.size for rel, digest in manifest.files.items()}
    return RunRecord(
        name=name,
        artifact=str(directory),
        metrics=dict(manifest.metrics or {}),
        history=history,
        files=files,
        artifact_bytes=sum(files.values()),
        process_seconds=process_seconds,
        checkpoints=checkpoints,
        precision=manifest.precision,
        libraries=dict(manifest.libraries),
    )


class LocalLab:
    """The side-effect layer of a local lab run: folders, trainer processes, reading artifacts back."""

    def __init__(self, work: Path, *, model_dir: Path | None, data_dir: Path) -> None:
        self.work = work.resolve()
        self.pvc_root = self.work / "pvc"
        claim = self.pvc_root / CLAIM
        (claim / "runs").mkdir(parents=True, exist_ok=True)
        self._link(claim / "data", data_dir)
        if model_dir is not None:
            self._link(claim / "model", model_dir)
        self.cache = self.work / "cache"
        self.logs = self.work / "logs"
        self.logs.mkdir(exist_ok=True)
        self._processes = 0

    @staticmethod
    def _link(link: Path, target: Path) -> None:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve(), target_is_directory=True)

    def workdir(self, name: str) -> Path:
        return self.work / "jobs" / name

    def _run(self, config_paths: list[Path], label: str) -> float:
        """Run the trainer on `config_paths`; returns its wall time; on failure, the log tail."""
        self._processes += 1
        log_path = self.logs / f"{self._processes:02d}-{label}.log"
        env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
        print(f"kubetune lab: {label}: {len(config_paths)} run(s), log {log_path}", flush=True)
        started = time.monotonic()
        with log_path.open("w") as log:
            code = subprocess.call(trainer_command(config_paths), stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.monotonic() - started
        if code:
            tail = "\n".join(log_path.read_text().splitlines()[-LOG_TAIL_LINES:])
            raise LabError(f"{label}: the trainer exited with {code}; last lines of {log_path}:\n{tail}")
        return seconds

    def train(self, documents: list[dict[str, Any]], *, isolate: bool = False) -> dict[str, RunRecord]:
        """Train FineTuneJobs in order (later jobs may start from earlier artifacts)."""
        paths = {
            name_of(d): write_config(
                local_trainer_config(d, self.workdir(name_of(d)), self.pvc_root, cache_dir=self.cache),
                self.workdir(name_of(d)),
            )
            for d in documents
        }
        seconds: dict[str, float] = {}
        if isolate:
            for name, path in paths.items():
                seconds[name] = self._run([path], name)
        else:
            total = self._run(list(paths.values()), "train")
            seconds = dict.fromkeys(paths, total)
        records = {}
        for document in documents:
            name = name_of(document)
            checkpoints = sorted(
                (self.workdir(name) / "scratch" / "checkpoints").glob("checkpoint-*"),
                key=lambda p: int(p.name.rsplit("-", 1)[1]),
            )
            directory = local_uri_path(artifact_uri(document), self.pvc_root)
            records[name] = read_record(name, directory, seconds[name], checkpoints)
        return records

    def merge(self, adapters: list[dict[str, Any]], sources: dict[str, RunRecord]) -> dict[str, RunRecord]:
        """Compose Adapters with `spec.merge` from the named trained sources, in one trainer process."""
        configs = {}
        for document in adapters:
            names = [s["name"] for s in document["spec"]["merge"]["sources"]]
            missing = [n for n in names if n not in sources]
            if missing:
                raise LabError(f"Adapter {name_of(document)} merges {missing}, which no job of the lab trained")
            uris = {n: f"file://{sources[n].artifact}/" for n in names}
            configs[name_of(document)] = local_merge_config(
                document, uris, self.workdir(name_of(document)), self.pvc_root, cache_dir=self.cache
            )
        paths = [write_config(c, self.workdir(n)) for n, c in configs.items()]
        seconds = self._run(paths, "merge")
        records = {}
        for name, config in configs.items():
            assert config.merge is not None
            directory = local_uri_path(config.merge.output_uri, self.pvc_root)
            records[name] = read_record(name, directory, seconds, [])
        return records

    def score(self, request: ScoreRequest, label: str) -> ScoreResult:
        self._processes += 1
        request_path = self.work / f"score-{label}.json"
        result_path = self.work / f"score-{label}-result.json"
        request_path.write_text(json.dumps(request.to_wire(), indent=2))
        log_path = self.logs / f"{self._processes:02d}-score-{label}.log"
        print(f"kubetune lab: scoring {len(request.models)} model(s) ({label}), log {log_path}", flush=True)
        command = trainer_module("kubetune_trainer.score", str(request_path), str(result_path))
        with log_path.open("w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if code:
            tail = "\n".join(log_path.read_text().splitlines()[-LOG_TAIL_LINES:])
            raise LabError(f"scoring {label} failed ({code}); last lines of {log_path}:\n{tail}")
        return ScoreResult.model_validate_json(result_path.read_text())

    def score_request(self, model_uri: str, models: list[ScoredModel], suites: list[ScoreSuite]) -> ScoreRequest:
        return ScoreRequest(
            base_model=model_uri,
            cache_dir=str(self.cache),
            pvc_root=str(self.pvc_root),
            models=models,
            suites=suites,
        )

    def data(self, file: str) -> str:
        """Local path of one of the lab datasets (for scoring)."""
        return str(self.pvc_root / CLAIM / "data" / file)

"""Artifacts: weights, tokenizer and a `kubetune.json` manifest, staged locally then published whole.

Layout under `<output.uri>/<adapterName>/` (an hf:// output is the repository itself, with a
README.md model card; see `hub`): the adapter (PEFT `adapter_model.safetensors` +
`adapter_config.json`, or full `model.safetensors` for full/partial), the tokenizer, optionally
`merged/` (full weights with the adapter folded in), `training_log.jsonl` (every logged step: loss,
learning rate, eval loss, the objective's own signals such as DPO reward margins) and `kubetune.json`.
`sha256` is over every file
in sorted relative-path order (`sha256(path NUL file-sha256 LF ...)`), so it is stable across
filesystems and tells whether two artifacts are byte-identical.

Nothing half-written is ever visible: volumes get a sibling temp directory that is renamed into
place; object storage has no rename, so the manifest is uploaded last and readers (the operator, the
Adapter) treat a prefix without `kubetune.json` as absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.artifact import (
    TRAINING_LOG_FILE,
    ArtifactManifest,
    FileDigest,
    ManifestBaseModel,
    ManifestDataset,
    ManifestFormat,
    ManifestGate,
    ManifestMethod,
    ManifestTokenizer,
)
from kubetune.api.v1alpha1.finetunejob import TrainResult
from kubetune_trainer import hub
from kubetune_trainer.context import RunContext
from kubetune_trainer.data.uris import FileUri, PvcUri, S3Uri, local_path, parse_uri, s3_filesystem
from kubetune_trainer.evaluate.suites import HARNESS_RESULTS
from kubetune_trainer.manifest import MANIFEST_FILE, write_manifest
from kubetune_trainer.methods import bottleneck  # noqa: F401  (registers the bottleneck tuner with PEFT)
from kubetune_trainer.model_card import model_card
from kubetune_trainer.tracking import publish_with_artifact

log = logging.getLogger(__name__)

MERGED_DIR = "merged"
_LIBRARIES = ("kubetune", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "deepspeed")


@dataclass
class RunResult:
    """What a finished run produced; `to_train_result` gives the status.result shape."""

    artifact_uri: str
    sha256: str
    size_bytes: int
    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate_passed: bool = True
    gate_message: str | None = None
    base_model_revision: str | None = None
    dataset_digest: str | None = None
    prep_report: dict[str, int] = field(default_factory=dict)

    def to_train_result(self) -> TrainResult:
        return TrainResult.model_validate(asdict(self))


def artifact_name(ctx: RunContext) -> str:
    return ctx.spec.output.adapter_name or ctx.config.target.name


def artifact_uri(ctx: RunContext) -> str:
    """`<output.uri>/<adapterName>/`; an hf:// output is a repository of its own (pinned to a commit once pushed)."""
    if hub.hub_output(ctx) is not None:
        return ctx.spec.output.uri
    return ctx.spec.output.uri.rstrip("/") + "/" + artifact_name(ctx) + "/"


def save_weights(ctx: RunContext, trainer: Any, directory: Path) -> ManifestFormat | None:
    """Write the trained weights and tokenizer (rank 0 writes); returns the artifact format name."""
    # every rank must call this: Trainer.save_model gathers ZeRO-3/FSDP shards (PEFT adapters
    # included), then rank 0 writes model.safetensors or adapter_model.safetensors
    trainer.save_model(str(directory))
    if not trainer.is_world_process_zero():
        return None
    (directory / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest has the config
    ctx.tokenizer.save_pretrained(str(directory))
    write_training_log(directory / TRAINING_LOG_FILE, trainer.state.log_history)
    return "peft-safetensors" if ctx.is_peft else "safetensors"


def write_training_log(path: Path, history: list[dict[str, Any]]) -> None:
    """One JSON object per logged step, numbers only (what the trainer logged, in order)."""
    lines = [{k: v for k, v in entry.items() if isinstance(v, int | float)} for entry in history]
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))


def save_merged(ctx: RunContext, adapter_dir: Path, directory: Path) -> None:
    """Fold the adapter into an unquantized copy of the base (a 4-bit base would make the merge lossy)."""
    merged = load_trained(adapter_dir, ctx.base_model_path).merge_and_unload()
    merged.save_pretrained(str(directory))
    ctx.tokenizer.save_pretrained(str(directory))


def load_trained(artifact_dir: Path, base_model_path: Path | None = None, *, dtype: str = "float32") -> Any:
    """Load a published artifact for inference, evaluation or merging, whatever the method was.

    Adapters need their base model (resized to the artifact's tokenizer first, since new tokens change
    the embedding shape); full/partial artifacts are complete models.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubetune_trainer.tokenizer_align import resize_embeddings

    torch_dtype = getattr(torch, dtype)
    if (artifact_dir / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(artifact_dir, dtype=torch_dtype)
    if base_model_path is None:
        raise ValueError(f"{artifact_dir} holds an adapter; pass the base model path")
    base = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch_dtype)
    resize_embeddings(base, AutoTokenizer.from_pretrained(artifact_dir))
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(artifact_dir))


def file_digests(root: Path) -> dict[str, FileDigest]:
    out: dict[str, FileDigest] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out[path.relative_to(root).as_posix()] = FileDigest(sha256=digest.hexdigest(), size=path.stat().st_size)
    return out


def tree_digest(root: Path) -> tuple[str, int]:
    """(hex sha256, total bytes) over every file under `root`, in sorted relative-path order."""
    digest = hashlib.sha256()
    total = 0
    for rel, info in sorted(file_digests(root).items()):
        digest.update(f"{rel}\0{info.sha256}\n".encode())
        total += info.size
    return digest.hexdigest(), total


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def training_manifest(
    ctx: RunContext, root: Path, *, fmt: ManifestFormat, gate: tuple[bool, str | None]
) -> ArtifactManifest:
    spec = ctx.spec
    return ArtifactManifest(
        name=artifact_name(ctx),
        format=fmt,
        method=ManifestMethod(requested=spec.method.type, resolved=ctx.method, settings=spec.method.to_wire()),
        objective=spec.objective.to_wire(),
        precision=ctx.precision,
        seed=spec.training.seed,
        base_model=ManifestBaseModel(uri=spec.base_model.uri, revision=ctx.base_revision),
        dataset=ManifestDataset(digest=ctx.data_digest, prep_report=ctx.extras.get("prep_report", ctx.prep_report)),
        tokenizer=ManifestTokenizer(added_token_ids=ctx.new_token_ids),
        metrics=ctx.metrics,
        evaluations=ctx.extras.get(HARNESS_RESULTS),
        gate=ManifestGate(passed=gate[0], message=gate[1]),
        merged=(root / MERGED_DIR).is_dir(),
        notes=ctx.notes,
        libraries=library_versions(),
        files=file_digests(root),
        config=ctx.config.to_wire(),
    )


def publish(staging: Path, uri: str, *, pvc_root: Path) -> None:
    """Copy the staged tree to its destination so it appears complete or not at all."""
    parsed = parse_uri(uri)
    if isinstance(parsed, S3Uri):
        _publish_s3(staging, parsed)
        return
    assert isinstance(parsed, FileUri | PvcUri)
    dest = local_path(parsed, pvc_root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    shutil.copytree(staging, tmp)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    log.info("published artifact to %s", dest)


def _publish_s3(staging: Path, uri: S3Uri) -> None:
    fs = s3_filesystem()
    prefix = f"{uri.bucket}/{uri.key.strip('/')}".rstrip("/")
    if fs.exists(f"{prefix}/{MANIFEST_FILE}"):
        fs.rm_file(f"{prefix}/{MANIFEST_FILE}")  # unpublish the old artifact before overwriting its files
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name == MANIFEST_FILE):
        fs.put_file(str(path), f"{prefix}/{path.relative_to(staging).as_posix()}")
    log.info("published artifact to s3://%s/", prefix)


def save_artifacts(ctx: RunContext, trainer: Any, *, gate: tuple[bool, str | None]) -> RunResult:
    """Stage weights (+ merged weights) and the manifest, digest them, publish; rank 0 only publishes."""
    root = ctx.paths.staging_dir / artifact_name(ctx)
    if root.exists() and trainer.is_world_process_zero():
        shutil.rmtree(root)
    fmt = save_weights(ctx, trainer, root)
    if fmt is None:  # not rank 0
        return RunResult(artifact_uri=artifact_uri(ctx), sha256="0" * 64, size_bytes=0, method=ctx.method)
    if ctx.spec.output.merge_weights and ctx.is_peft:
        save_merged(ctx, root, root / MERGED_DIR)
    for relative, source in ctx.extras.get("artifact_files", {}).items():  # e.g. synthesised training data
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / relative)
    publish_with_artifact(ctx, root)
    target = hub.hub_output(ctx)
    if target is not None:
        card = model_card(ctx, target.repo_id, gate=gate, libraries=library_versions())
        (root / hub.MODEL_CARD).write_text(card)
    write_manifest(root, training_manifest(ctx, root, fmt=fmt, gate=gate))
    sha, size = tree_digest(root)
    if target is not None:
        published = hub.push(ctx, root)
    else:
        published = artifact_uri(ctx)
        publish(root, published, pvc_root=ctx.paths.pvc_root)
    return RunResult(
        artifact_uri=published,
        sha256=sha,
        size_bytes=size,
        method=ctx.method,
        metrics=dict(ctx.metrics),
        gate_passed=gate[0],
        gate_message=gate[1],
        base_model_revision=ctx.base_revision,
        dataset_digest=ctx.data_digest,
        prep_report=dict(ctx.prep_report),
    )

"""Merge mode: compose several LoRA Adapters of one base model into a new Adapter artifact.

The operator runs the trainer image with `mode: merge` for an Adapter that has `spec.merge`; it
resolves each source Adapter to its artifact URI (`MergeTask.sources`). PEFT's
`add_weighted_adapter` does the arithmetic (linear, cat, ties, dare_linear, dare_ties, svd; `density`
for ties/dare), so a merged adapter loads and merges exactly like a trained one. The result is
written with the same layout, manifest, digest and publish-then-appear semantics as a training
artifact, and reported in the Adapter's `status.artifact`.

Every source must come from the same base model: the manifest (`kubetune.json`) of each artifact
records the base URI and resolved revision, which must match the merge's base. Merging deltas
trained on different weights is silently meaningless, so it is a config error, not a warning.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.artifact import (
    ArtifactManifest,
    ManifestBaseModel,
    ManifestFormat,
    ManifestMerge,
    ManifestMergeSource,
)
from kubetune.api.v1alpha1.data import BaseModelRef
from kubetune.api.v1alpha1.trainer_config import MergeTask, TrainerConfig
from kubetune_trainer.artifacts import file_digests, library_versions, publish, tree_digest
from kubetune_trainer.data.uris import resolve
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import resolve_base_model
from kubetune_trainer.manifest import MANIFEST_FILE, read_manifest, write_manifest

log = logging.getLogger(__name__)

MERGED_ADAPTER = "default"
"""PEFT saves an adapter named `default` at the directory root (others go to a subdirectory)."""
ARTIFACT_FORMAT: ManifestFormat = "peft-safetensors"


@dataclass(frozen=True)
class MergeSource:
    name: str
    path: Path
    weight: float


@dataclass(frozen=True)
class MergeResult:
    artifact_uri: str
    sha256: str
    size_bytes: int

    def status_artifact(self) -> dict[str, Any]:
        """The Adapter's `status.artifact` (wire form)."""
        return {
            "uri": self.artifact_uri,
            "format": ARTIFACT_FORMAT,
            "sha256": self.sha256,
            "sizeBytes": self.size_bytes,
        }


def check_source(name: str, directory: Path, base_uri: str, base_revision: str | None) -> None:
    """Refuse anything that is not a LoRA adapter trained on exactly this base."""
    config_path = directory / "adapter_config.json"
    if not config_path.is_file():
        raise ConfigError(f"merge source {name} at {directory} is not a PEFT adapter (no adapter_config.json)")
    peft_type = json.loads(config_path.read_text()).get("peft_type")
    if peft_type != "LORA":
        raise ConfigError(f"merge source {name} is a {peft_type} adapter; only LoRA/DoRA/QLoRA adapters can be merged")
    manifest = read_manifest(directory)
    if manifest is None:
        raise ConfigError(f"merge source {name} has no {MANIFEST_FILE}; its base model cannot be verified")
    base = manifest.base_model
    if base.uri != base_uri:
        raise ConfigError(
            f"merge source {name} was trained on base model {base.uri}, not {base_uri}: "
            "all merge sources must share the merge's base model"
        )
    trained_on = base.revision
    if trained_on and base_revision and trained_on != base_revision:
        raise ConfigError(
            f"merge source {name} was trained on {base_uri} at revision {trained_on}, but the base resolves to "
            f"{base_revision}: pin baseModel.revision to the revision the sources were trained on"
        )


def combine(base_path: Path, sources: list[MergeSource], task: MergeTask) -> tuple[Any, Any]:
    """(PEFT model holding only the merged adapter as `default`, tokenizer of the sources)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubetune_trainer.tokenizer_align import resize_embeddings

    tokenizers = [AutoTokenizer.from_pretrained(s.path) for s in sources]
    if len({len(t) for t in tokenizers}) != 1:
        raise ConfigError("merge sources have different vocabularies (added tokens differ); they cannot be merged")
    base = AutoModelForCausalLM.from_pretrained(base_path)
    resize_embeddings(base, tokenizers[0])
    names = [f"source{i}" for i in range(len(sources))]
    model = PeftModel.from_pretrained(base, str(sources[0].path), adapter_name=names[0])
    for name, source in zip(names[1:], sources[1:], strict=True):
        model.load_adapter(str(source.path), adapter_name=name)
    kwargs: dict[str, Any] = {"combination_type": task.combination}
    if task.density is not None:
        kwargs["density"] = task.density
    try:
        model.add_weighted_adapter(names, [s.weight for s in sources], adapter_name=MERGED_ADAPTER, **kwargs)
    except ValueError as exc:  # e.g. linear over different ranks or target modules
        raise ConfigError(f"merge.combination {task.combination} cannot combine these adapters: {exc}") from exc
    model.set_adapter(MERGED_ADAPTER)
    for name in names:
        model.delete_adapter(name)
    return model, tokenizers[0]


def merge_manifest(
    root: Path, config: TrainerConfig, sources: list[MergeSource], base_revision: str | None
) -> ArtifactManifest:
    task = config.merge
    assert task is not None
    return ArtifactManifest(
        name=config.target.name,
        format=ARTIFACT_FORMAT,
        base_model=ManifestBaseModel(uri=task.base_model.uri, revision=base_revision),
        merge=ManifestMerge(
            sources=[
                ManifestMergeSource(name=s.name, weight=s.weight, uri=i.artifact_uri)
                for s, i in zip(sources, task.sources, strict=True)
            ],
            combination=task.combination,
            density=task.density,
        ),
        libraries=library_versions(),
        files=file_digests(root),
        config=config.to_wire(),
    )


def run(config: TrainerConfig) -> MergeResult:
    """Merge the sources of `config.merge`, publish the artifact and report it on the Adapter."""
    task = config.merge
    if config.mode != "merge" or task is None:
        raise ConfigError(f"mode {config.mode} is not a merge")
    runtime = config.runtime
    cache, pvc_root = Path(runtime.cache_dir), Path(runtime.pvc_mount_root)
    base = resolve_base_model(
        BaseModelRef(uri=task.base_model.uri, revision=task.base_model.revision),
        cache_dir=cache,
        pvc_root=pvc_root,
        token_env=runtime.model_token_env,
    )
    sources = []
    for item in task.sources:
        directory = resolve(item.artifact_uri, cache_dir=cache, pvc_root=pvc_root, repo_type="model").path
        check_source(item.name, directory, task.base_model.uri, base.revision)
        sources.append(MergeSource(name=item.name, path=directory, weight=item.weight))
    model, tokenizer = combine(base.path, sources, task)
    root = Path(runtime.work_dir) / "staging" / config.target.name
    if root.exists():
        shutil.rmtree(root)
    model.save_pretrained(str(root), safe_serialization=True)
    tokenizer.save_pretrained(str(root))
    write_manifest(root, merge_manifest(root, config, sources, base.revision))
    sha, size = tree_digest(root)
    publish(root, task.output_uri, pvc_root=pvc_root)
    result = MergeResult(artifact_uri=task.output_uri, sha256=sha, size_bytes=size)
    log.info("merged %d adapters (%s) into %s", len(sources), task.combination, task.output_uri)
    if runtime.report_status:
        from kubetune_trainer.report import publish_adapter_artifact

        publish_adapter_artifact(config.target, result.status_artifact())
    return result

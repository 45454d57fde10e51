"""The artifact manifest: one model for both writers (training, merge) and every reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.api.v1alpha1.artifact import (
    MANIFEST_FILE,
    ArtifactManifest,
    FileDigest,
    ManifestBaseModel,
    ManifestGate,
    ManifestMerge,
    ManifestMergeSource,
)
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.manifest import read_manifest, write_manifest

pytestmark = pytest.mark.unit


def test_training_manifest_keeps_the_layout_and_its_nulls(tmp_path: Path) -> None:
    manifest = ArtifactManifest(
        name="job",
        format="peft-safetensors",
        base_model=ManifestBaseModel(uri="hf://org/model", revision=None),
        gate=ManifestGate(passed=True, message=None),
        metrics={"train.loss": 1.5},
        merged=False,
        notes=[],
        files={"adapter_config.json": FileDigest(sha256="a" * 64, size=10)},
    )
    write_manifest(tmp_path, manifest)
    document = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert document["apiVersion"] == "kubetune.io/v1alpha1"
    assert document["kind"] == "Artifact"
    assert document["baseModel"] == {"uri": "hf://org/model", "revision": None}
    assert document["gate"] == {"passed": True, "message": None}
    assert (document["merged"], document["notes"]) == (False, [])
    assert document["files"] == {"adapter_config.json": {"sha256": "a" * 64, "size": 10}}
    assert "merge" not in document, "the other mode's sections are left out"
    assert read_manifest(tmp_path) == manifest


def test_merge_manifest_has_no_training_sections(tmp_path: Path) -> None:
    manifest = ArtifactManifest(
        name="merged",
        format="peft-safetensors",
        base_model=ManifestBaseModel(uri="file:///base", revision="sha256:" + "0" * 64),
        merge=ManifestMerge(
            sources=[ManifestMergeSource(name="a", weight=1.0, uri="file:///a/")], combination="linear", density=None
        ),
    )
    write_manifest(tmp_path, manifest)
    document = json.loads((tmp_path / MANIFEST_FILE).read_text())
    common = {"apiVersion", "kind", "name", "format", "baseModel", "libraries", "files", "config"}
    assert set(document) == common | {"merge"}
    assert document["merge"]["density"] is None
    assert read_manifest(tmp_path) == manifest


def test_missing_and_broken_manifests(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"kind": "Artifact", "name": "x"}))
    with pytest.raises(ConfigError, match="is not a valid kubetune artifact manifest"):
        read_manifest(tmp_path)


def test_fields_a_newer_trainer_adds_are_ignored(tmp_path: Path) -> None:
    document = {"name": "x", "format": "safetensors", "baseModel": {"uri": "file:///m", "shards": 2}, "future": 1}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(document))
    manifest = read_manifest(tmp_path)
    assert manifest is not None
    assert manifest.base_model.uri == "file:///m"

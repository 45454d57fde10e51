"""The trainer against a real S3 server: publishing an artifact to s3:// and caching an s3:// base model.

SeaweedFS (the `s3_server` fixture) stands in for the object store a cluster would use, so uploads,
listings and downloads go through the same s3fs/boto3 paths as in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.artifact import MANIFEST_FILE
from kubetune.api.v1alpha1.data import BaseModelRef
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_trainer.artifacts import load_trained, tree_digest
from kubetune_trainer.loading import resolve_base_model
from kubetune_trainer.manifest import read_manifest
from kubetune_trainer.pipeline import run
from support.s3server import S3Server
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.integration, pytest.mark.trainer]


@pytest.fixture
def s3_client(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of the server, with the trainer's S3 environment pointing at it."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.client()


def test_artifact_published_to_s3(
    tmp_path: Path,
    model_dir: Path,
    data_files: dict[str, Path],
    s3_client: Any,
) -> None:
    s3_client.create_bucket(Bucket="adapters")
    wire = trainer_config(
        tmp_path,
        model_dir,
        data_files["alpaca"],
        "lora",
        name="s3-job",
        training={"maxSteps": 2},
        output={"uri": "s3://adapters/team-a/", "adapterName": "legal-lora"},
    )
    result = run(TrainerConfig.model_validate(wire))
    assert result.artifact_uri == "s3://adapters/team-a/legal-lora/"
    listed = s3_client.list_objects_v2(Bucket="adapters", Prefix="team-a/legal-lora/")["Contents"]
    keys = sorted(o["Key"].removeprefix("team-a/legal-lora/") for o in listed)
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", MANIFEST_FILE} <= set(keys)

    download = tmp_path / "download"
    for key in keys:
        target = download / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3_client.download_file("adapters", f"team-a/legal-lora/{key}", str(target))
    assert tree_digest(download) == (result.sha256, result.size_bytes)
    manifest = read_manifest(download)
    assert manifest is not None
    assert manifest.dataset is not None
    assert manifest.dataset.digest == result.dataset_digest
    assert manifest.dataset.prep_report["rows_out"] == 48
    assert manifest.dataset.prep_report["removed"]["duplicate"] == 0
    assert set(manifest.libraries) >= {"torch", "transformers", "peft", "trl"}
    assert result.to_train_result().sha256 == result.sha256
    assert load_trained(download, model_dir) is not None


def test_s3_base_model_is_downloaded_once_into_the_cache(
    tmp_path: Path,
    model_dir: Path,
    s3_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3_client.create_bucket(Bucket="models")
    for file in model_dir.iterdir():
        s3_client.upload_file(str(file), "models", f"tiny/{file.name}")
    ref = BaseModelRef(uri="s3://models/tiny/")
    first = resolve_base_model(ref, cache_dir=tmp_path / "cache", pvc_root=tmp_path, token_env=None)
    assert (first.path / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert first.revision is not None
    assert first.revision.startswith("sha256:")
    caplog.clear()
    with caplog.at_level("INFO"):
        second = resolve_base_model(ref, cache_dir=tmp_path / "cache", pvc_root=tmp_path, token_env=None)
    assert second == first
    assert "downloading" not in caplog.text
    assert caplog.text.count("s3 cache hit") == len(list(model_dir.iterdir()))

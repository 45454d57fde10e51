"""An s3:// model prefix fetches only the files a run needs (SeaweedFS started by the `s3_server` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.data.model_files import model_files
from kubetune_trainer.data.uris import parse_uri, resolve
from support.s3server import S3Server

pytestmark = pytest.mark.integration

FILES = {
    "config.json": b"{}",
    "tokenizer.json": b"[]",
    "model.safetensors": b"weights",
    "pytorch_model.bin": b"the same weights again",
    "original/consolidated.00.pth": b"and again",
}


def test_the_preflight_takes_config_and_tokenizer_and_the_run_one_copy_of_the_weights(
    s3_server: S3Server, tmp_path: Path
) -> None:
    client = s3_server.client()
    client.create_bucket(Bucket="preflight-models")
    for name, body in FILES.items():
        client.put_object(Bucket="preflight-models", Key=f"llama/{name}", Body=body)
    uri, env = parse_uri("s3://preflight-models/llama/"), s3_server.env()

    def fetched() -> set[str]:
        folder = tmp_path / "s3" / "preflight-models" / "llama"
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    checked = resolve(uri, cache_dir=tmp_path, env=env, files=model_files(weights=False, remote_code=False))
    assert fetched() == {"config.json", "tokenizer.json"}
    trained = resolve(uri, cache_dir=tmp_path, env=env, files=model_files(weights=True, remote_code=False))
    assert trained.path == checked.path
    assert fetched() == {"config.json", "tokenizer.json", "model.safetensors"}

"""s3:// loading against a real S3-compatible server (SeaweedFS started by the `s3_server` fixture)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data.load import dataset_digest, load_dataset_uri
from kubetune_trainer.data.uris import parse_uri, resolve
from kubetune_trainer.errors import UriError
from support.data_files import write_parquet
from support.s3server import S3Server

pytestmark = pytest.mark.integration

ROWS = [{"text": f"row number {i}"} for i in range(4)]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    client = s3_server.client()
    client.create_bucket(Bucket="datasets")
    client.put_object(Bucket="datasets", Key="legal/train.jsonl", Body=_jsonl(ROWS))
    return "datasets"


def test_jsonl_uploaded_with_boto3_loads_through_s3_uri(
    s3_server: S3Server, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    loaded = load_dataset_uri(f"s3://{bucket}/legal/train.jsonl", cache_dir=cache, env=s3_server.env())
    assert loaded.dataset.to_list() == ROWS
    assert loaded.path == cache / "s3" / bucket / "legal" / "train.jsonl"
    local = tmp_path / "local" / "train.jsonl"
    local.parent.mkdir()
    local.write_bytes(_jsonl(ROWS))
    assert loaded.digest == dataset_digest(local)

    # a second job with the same cache does not download again
    inode = loaded.path.stat().st_ino
    caplog.clear()  # only the second load's records: the first one's may be captured too, at INFO
    with caplog.at_level(logging.INFO, logger="kubetune_trainer.data.uris"):
        again = load_dataset_uri(f"s3://{bucket}/legal/train.jsonl", cache_dir=cache, env=s3_server.env())
    assert "s3 cache hit" in caplog.text
    assert "downloading" not in caplog.text
    assert again.path.stat().st_ino == inode


def test_changed_object_is_downloaded_again(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="moving/train.jsonl", Body=_jsonl(ROWS[:1]))
    env = s3_server.env()
    first = load_dataset_uri(f"s3://{bucket}/moving/train.jsonl", cache_dir=tmp_path, env=env)
    assert len(first.dataset) == 1
    client.put_object(Bucket=bucket, Key="moving/train.jsonl", Body=_jsonl(ROWS))
    second = load_dataset_uri(f"s3://{bucket}/moving/train.jsonl", cache_dir=tmp_path, env=env)
    assert second.dataset.to_list() == ROWS
    assert second.digest != first.digest


def test_prefix_of_parquet_shards(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    client = s3_server.client()
    for i, chunk in enumerate((ROWS[:2], ROWS[2:])):
        shard = write_parquet(tmp_path / f"shard-{i}.parquet", chunk)
        client.upload_file(str(shard), bucket, f"shards/data/train-{i:05d}.parquet")
    loaded = load_dataset_uri(f"s3://{bucket}/shards/", cache_dir=tmp_path / "cache", env=s3_server.env())
    assert sorted(loaded.dataset["text"]) == sorted(r["text"] for r in ROWS)
    assert (tmp_path / "cache" / "s3" / bucket / "shards" / "data" / "train-00001.parquet").is_file()


def test_endpoint_from_s3_endpoint_url(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    env = s3_server.env()
    env["S3_ENDPOINT_URL"] = env.pop("AWS_ENDPOINT_URL")
    source = resolve(parse_uri(f"s3://{bucket}/legal/train.jsonl"), cache_dir=tmp_path, env=env)
    assert source.path.read_bytes() == _jsonl(ROWS)


def test_missing_key_is_config_error(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(UriError, match=r"s3://datasets/legal/absent.jsonl does not exist"):
        load_dataset_uri(f"s3://{bucket}/legal/absent.jsonl", cache_dir=tmp_path, env=s3_server.env())


def test_wrong_credentials_are_refused(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    env = s3_server.env() | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with pytest.raises(UriError, match=r"access to s3://datasets/legal/train\.jsonl was denied"):
        load_dataset_uri(f"s3://{bucket}/legal/train.jsonl", cache_dir=tmp_path, env=env)
    assert not (tmp_path / "s3" / bucket / "legal" / "train.jsonl").exists()

"""URI parsing for every scheme, clear errors for bad ones, and hub snapshots resolved offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_dev.tiny import write_jsonl
from kubetune_trainer.data.load import load_dataset_uri
from kubetune_trainer.data.uris import (
    FileUri,
    HfUri,
    PvcUri,
    S3Uri,
    local_path,
    parse_uri,
    resolve,
    s3_filesystem,
)
from kubetune_trainer.errors import ConfigError, UriError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("hf://meta-llama/Llama-3.1-8B", HfUri("meta-llama/Llama-3.1-8B")),
        ("hf://org/data_set.v2@v1.0", HfUri("org/data_set.v2", "v1.0")),
        ("hf://org/name@1a2b3c4d5e6f", HfUri("org/name", "1a2b3c4d5e6f")),
        ("hf://org/name@refs/pr/1", HfUri("org/name", "refs/pr/1")),
        ("hf://datasets/tatsu-lab/alpaca", HfUri("tatsu-lab/alpaca", repo_type="dataset")),
        ("hf://datasets/org/data@v2", HfUri("org/data", "v2", repo_type="dataset")),
        ("s3://bucket/dir/train.jsonl", S3Uri("bucket", "dir/train.jsonl")),
        ("s3://my.bucket-1/prefix/", S3Uri("my.bucket-1", "prefix/")),
        ("s3://bucket", S3Uri("bucket", "")),
        ("pvc://data/legal/train.jsonl", PvcUri("data", "legal/train.jsonl")),
        ("pvc://data//legal/./train.jsonl", PvcUri("data", "legal/train.jsonl")),
        ("pvc://model-cache", PvcUri("model-cache", "")),
        ("file:///tmp/data/train.parquet", FileUri("/tmp/data/train.parquet")),
        ("  FILE:///x.jsonl ", FileUri("/x.jsonl")),
    ],
)
def test_parse_valid(uri: str, expected: object) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty"),
        ("train.jsonl", "no scheme"),
        ("ftp://host/file", "unsupported scheme 'ftp'"),
        ("gs://bucket/key", "unsupported scheme 'gs'"),
        ("hf://just-a-name", "hf://ORG/NAME"),
        ("hf://org/name/extra", "hf://ORG/NAME"),
        ("hf://org/na me", "hf://ORG/NAME"),
        ("hf://org/name@", "invalid revision"),
        ("hf://org/name@bad rev", "invalid revision"),
        ("s3://", "no bucket"),
        ("s3:///key", "no bucket"),
        ("s3://Bad_Bucket/key", "not a valid bucket name"),
        ("s3://ab/key", "not a valid bucket name"),
        ("pvc://", "no claim"),
        ("pvc://Data/x", "not a valid PersistentVolumeClaim name"),
        ("pvc://data/../etc/passwd", "must not contain '..'"),
        ("file://relative/path", "must be absolute"),
        ("file:///a/../b", "must not contain '..'"),
    ],
)
def test_parse_invalid(uri: str, message: str) -> None:
    with pytest.raises(UriError) as caught:
        parse_uri(uri)
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("uri", ["hf://org/name@v1", "s3://bucket/k/a.jsonl", "pvc://data/x/y", "file:///a/b"])
def test_str_round_trips(uri: str) -> None:
    assert str(parse_uri(uri)) == uri


def test_local_paths_under_mount_root(tmp_path: Path) -> None:
    assert local_path(PvcUri("data", "legal/train.jsonl"), tmp_path) == tmp_path / "data" / "legal" / "train.jsonl"
    assert local_path(PvcUri("data", "x")) == Path("/mnt/pvc/data/x")
    assert local_path(FileUri("/srv/x.jsonl"), tmp_path) == Path("/srv/x.jsonl")


def test_resolve_missing_local_path_is_config_error(pvc_root: Path) -> None:
    with pytest.raises(UriError, match=r"pvc://data/missing.jsonl does not exist"):
        resolve("pvc://data/missing.jsonl", cache_dir=pvc_root / "cache", pvc_root=pvc_root)


def test_s3_filesystem_reads_endpoint_and_keys_from_env() -> None:
    env = {"S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    fs = s3_filesystem(env)
    assert fs.client_kwargs == {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"}
    assert (fs.key, fs.secret) == ("k", "s")
    both = {"AWS_ENDPOINT_URL": "http://a:1", "S3_ENDPOINT_URL": "http://b:2", "AWS_REGION": "eu-west-1"}
    preferred = s3_filesystem(both)
    assert preferred.client_kwargs == {"endpoint_url": "http://a:1", "region_name": "eu-west-1"}
    assert s3_filesystem({}).client_kwargs == {}


def _fake_hub_cache(cache: Path, repo_id: str, commit: str, rows: list[dict[str, str]]) -> None:
    """The layout huggingface_hub writes (refs + snapshots), so offline resolution is real."""
    repo_dir = cache / ("datasets--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    write_jsonl(repo_dir / "snapshots" / commit / "data" / "train.jsonl", rows)


def test_hf_dataset_resolves_offline_from_cache_and_pins_the_commit(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(tmp_path, "acme/legal", commit, [{"text": "a"}, {"text": "b"}])
    offline = {"HF_HUB_OFFLINE": "1"}
    source = resolve("hf://acme/legal", cache_dir=tmp_path, env=offline)
    assert source.revision == commit
    assert (source.path / "data" / "train.jsonl").is_file()
    pinned = resolve(f"hf://acme/legal@{commit}", cache_dir=tmp_path, env=offline)
    assert pinned.path == source.path
    loaded = load_dataset_uri("hf://acme/legal", cache_dir=tmp_path, env=offline)
    assert loaded.dataset["text"] == ["a", "b"]
    assert loaded.revision == commit


def test_hf_offline_cache_miss_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(UriError, match=r"not in the cache .* HF_HUB_OFFLINE is set"):
        resolve("hf://acme/absent", cache_dir=tmp_path, env={"HF_HUB_OFFLINE": "1"})


def test_hf_dataset_prefix_round_trips() -> None:
    assert str(parse_uri("hf://datasets/org/data@v2")) == "hf://datasets/org/data@v2"
    assert str(parse_uri("hf://org/model")) == "hf://org/model"

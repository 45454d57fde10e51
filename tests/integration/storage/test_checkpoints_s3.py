"""Durable checkpoints on a real S3 server (SeaweedFS): complete-or-invisible on an object store without rename,
credentials that cannot write are a config error before training, and uploads survive the server going down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_dev.controlplane.testing import wait_until
from kubetune_trainer.checkpoint_store import CheckpointStore, marker_name
from kubetune_trainer.durable import CheckpointSync, snapshot
from kubetune_trainer.errors import UriError
from support.s3server import S3Process, s3_process

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Process]:
    """A server of its own: these tests stop it and start it again."""
    with s3_process(tmp_path / "seaweedfs") as process:
        for key, value in process.server.env().items():
            monkeypatch.setenv(key, value)
        process.server.client().create_bucket(Bucket="ckpt")
        yield process


def checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    (folder / "global_step1").mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"w" * 2048)
    (folder / "global_step1" / "optim_states.pt").write_bytes(b"o" * 100)
    return folder


def keys(client: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="ckpt", Prefix=prefix).get("Contents", []))


def test_checkpoints_on_s3_are_complete_only_with_their_marker(tmp_path: Path, s3: S3Process) -> None:
    store = CheckpointStore.open("s3://ckpt/runs/uid-1/", tmp_path)
    store.probe(0)
    for step in (2, 4, 6):
        store.upload(checkpoint(tmp_path / "local", step), step, node=0, nodes=1)
    client = s3.server.client()
    client.delete_object(Bucket="ckpt", Key=f"runs/uid-1/checkpoint-6/{marker_name(0, 1)}")
    client.put_object(Bucket="ckpt", Key="runs/uid-1/checkpoint-4/adapter_model.safetensors", Body=b"cut")
    assert store.complete_steps() == [2]

    store.download(2, tmp_path / "restored")
    assert (tmp_path / "restored" / "global_step1" / "optim_states.pt").read_bytes() == b"o" * 100
    store.upload(checkpoint(tmp_path / "again", 8), 8, node=0, nodes=1)
    assert store.prune(keep_last=1) == [2, 4, 6]
    assert keys(client, "runs/uid-1/") == [
        "runs/uid-1/checkpoint-8/adapter_model.safetensors",
        "runs/uid-1/checkpoint-8/global_step1/optim_states.pt",
        f"runs/uid-1/checkpoint-8/{marker_name(0, 1)}",
    ]
    store.delete_all()
    assert keys(client, "runs/") == []


def test_wrong_credentials_are_a_config_error_before_training(
    tmp_path: Path, s3: S3Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(UriError, match="not writable"):
        CheckpointStore.open("s3://ckpt/runs/uid-1/", tmp_path).probe(0)


def test_uploads_wait_out_a_store_that_is_down(tmp_path: Path, s3: S3Process) -> None:
    store = CheckpointStore.open("s3://ckpt/runs/uid-2/", tmp_path)
    synced: list[int] = []
    sync = CheckpointSync(store, node=0, nodes=1, keep_last=2, on_complete=synced.append, backoff=(0.2, 1.0))
    outbox = tmp_path / "outbox"
    try:
        sync.submit(5, snapshot(checkpoint(tmp_path / "local", 5), outbox))
        assert sync.drain(30)
        s3.stop()
        sync.submit(10, snapshot(checkpoint(tmp_path / "local", 10), outbox))
        wait_until("an upload to fail", lambda: sync.failures >= 1, timeout=120)
        assert not sync.drain(1), "nothing lands while the server is down"
        s3.start()
        assert sync.drain(60), "the waiting checkpoint lands once the server is back"
    finally:
        sync.close()
    assert synced == [5, 10]
    assert store.complete_steps() == [5, 10]

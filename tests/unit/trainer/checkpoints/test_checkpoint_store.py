"""Durable checkpoints on a mounted volume (fsspec's local filesystem): complete or invisible, and uploads that
survive a store that is down. The same store against a real S3 server is in tests/integration/storage."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.checkpoint_store import CheckpointStore, marker_name
from kubetune_trainer.durable import CheckpointSync, snapshot

pytestmark = pytest.mark.unit


def checkpoint(root: Path, step: int, files: dict[str, bytes] | None = None) -> Path:
    """A folder as the Trainer writes it (the rng file of each rank, weights, state)."""
    folder = root / f"checkpoint-{step}"
    for name, data in (files or {"adapter_model.safetensors": b"w" * 64, "trainer_state.json": b"{}"}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore.open(f"file://{tmp_path}/durable/uid-1/", tmp_path)


def test_a_checkpoint_is_complete_only_once_its_marker_is_written(tmp_path: Path, store: CheckpointStore) -> None:
    local = tmp_path / "local"
    store.upload(checkpoint(local, 2), 2, node=0, nodes=1)
    store.upload(checkpoint(local, 4, {"nested/optim.pt": b"o" * 10, "trainer_state.json": b"{}"}), 4, node=0, nodes=1)
    assert store.complete_steps() == [2, 4]
    (Path(store.root) / "checkpoint-4" / marker_name(0, 1)).unlink()
    assert store.complete_steps() == [2], "files without a marker: cut off mid-upload"

    target = tmp_path / "restored"
    store.download(2, target)
    assert (target / "adapter_model.safetensors").read_bytes() == b"w" * 64
    assert not list(target.glob("kubetune-checkpoint-*")), "markers are the store's, not the Trainer's"
    with pytest.raises(FileNotFoundError, match="not complete"):
        store.download(4, tmp_path / "nope")


def test_a_truncated_or_half_written_checkpoint_is_never_picked(tmp_path: Path, store: CheckpointStore) -> None:
    local = tmp_path / "local"
    for step in (2, 4, 6):
        store.upload(checkpoint(local, step), step, node=0, nodes=1)
    (Path(store.root) / "checkpoint-6" / "adapter_model.safetensors").write_bytes(b"w" * 10)  # truncated
    (Path(store.root) / "checkpoint-4" / marker_name(0, 1)).write_text('{"step": 4, "no')  # a marker cut off
    assert store.complete_steps() == [2]


def test_a_multi_node_checkpoint_needs_every_nodes_marker(tmp_path: Path, store: CheckpointStore) -> None:
    node0 = checkpoint(tmp_path / "node0", 5, {"model.safetensors": b"m" * 32, "rng_state_0.pth": b"r0"})
    node1 = checkpoint(tmp_path / "node1", 5, {"rng_state_1.pth": b"r1"})
    store.upload(node0, 5, node=0, nodes=2)
    assert store.complete_steps() == [], "node 1's files are not there yet"
    store.upload(node1, 5, node=1, nodes=2)
    assert store.complete_steps() == [5]
    store.download(5, tmp_path / "restored")
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == [
        "model.safetensors",
        "rng_state_0.pth",
        "rng_state_1.pth",
    ], "each node resumes from the whole checkpoint"


def test_prune_keeps_the_newest_complete_and_anything_newer(tmp_path: Path, store: CheckpointStore) -> None:
    local = tmp_path / "local"
    for step in (2, 4, 6, 8):
        store.upload(checkpoint(local, step), step, node=0, nodes=1)
    leftover = Path(store.root) / "checkpoint-3"  # a crash mid-upload, older than what is kept
    leftover.mkdir()
    (leftover / "optimizer.pt").write_bytes(b"o")
    in_flight = Path(store.root) / "checkpoint-10"  # another node may still be uploading it
    in_flight.mkdir()
    (in_flight / "rng_state_1.pth").write_bytes(b"r")
    assert store.prune(keep_last=2) == [2, 3, 4]
    assert sorted(p.name for p in Path(store.root).iterdir()) == ["checkpoint-10", "checkpoint-6", "checkpoint-8"]
    store.delete_all()
    assert not Path(store.root).exists()


class FlakyStore:
    """A store whose uploads fail while `down` is set (connection refused), as an object store that is down."""

    def __init__(self, inner: CheckpointStore) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.down = threading.Event()
        self.attempts: list[int] = []

    def upload(self, folder: Path, step: int, *, node: int, nodes: int) -> None:
        self.attempts.append(step)
        if self.down.is_set():
            raise ConnectionRefusedError("connection refused")
        self.inner.upload(folder, step, node=node, nodes=nodes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_uploads_are_retried_while_the_store_is_down_and_the_newest_one_lands(
    tmp_path: Path, store: CheckpointStore
) -> None:
    flaky = FlakyStore(store)
    completed: list[int] = []
    sync = CheckpointSync(
        flaky,  # type: ignore[arg-type]
        node=0,
        nodes=1,
        keep_last=1,
        on_complete=completed.append,
        backoff=(0.05, 0.2),
    )
    outbox, local = tmp_path / "outbox", tmp_path / "local"
    try:
        sync.submit(2, snapshot(checkpoint(local, 2), outbox))
        assert sync.drain(10)
        assert completed == [2]
        flaky.down.set()
        sync.submit(4, snapshot(checkpoint(local, 4), outbox))
        assert not sync.drain(0.5), "still waiting while the store is down"
        assert flaky.attempts.count(4) >= 2, "retried"
        sync.submit(6, snapshot(checkpoint(local, 6), outbox))  # training went on meanwhile
        flaky.down.clear()
        assert sync.drain(10)
    finally:
        sync.close()
    assert completed == [2, 6], "checkpoint 4 was replaced by the newer 6 while the store was down"
    assert store.complete_steps() == [6], "keepLast 1 on the store too"
    assert sync.failures >= 2
    assert not list(outbox.iterdir()), "the outbox is emptied"


def test_a_snapshot_survives_the_trainer_rotating_the_original(tmp_path: Path) -> None:
    original = checkpoint(tmp_path / "local", 2)
    copy = snapshot(original, tmp_path / "outbox")
    for path in sorted(original.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    original.rmdir()
    assert (copy / "adapter_model.safetensors").read_bytes() == b"w" * 64

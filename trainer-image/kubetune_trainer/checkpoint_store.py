"""Checkpoints on durable storage (a PVC path or an object store prefix), complete or invisible.

Layout under the run's folder (`runtime.checkpointUri`: `checkpointing.storage.uri`/<FineTuneJob uid>/):
`checkpoint-<step>/` holds the files the Trainer wrote, and one marker per node,
`kubetune-checkpoint-<node>-of-<nodes>.json`, listing the files that node uploaded and their sizes. A node
writes its marker after its files, and markers go first when a checkpoint is deleted, so a checkpoint is
complete exactly when every node's marker is there and every listed file has its listed size. A checkpoint cut
off mid-upload (the pod killed, the store down) or truncated later is never resumed from: the newest complete
one is. One code path serves both stores through fsspec (the local filesystem for a mounted claim, s3fs for
s3://); object stores have no rename, so nothing here relies on one.
"""

from __future__ import annotations

import errno
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune_trainer.data.uris import FileUri, PvcUri, S3Uri, local_path, parse_uri, s3_filesystem
from kubetune_trainer.errors import UriError

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
"""The Trainer's folder names (`transformers.trainer_utils.PREFIX_CHECKPOINT_DIR`)."""
_FOLDER = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_MARKER = re.compile(r"^kubetune-checkpoint-(\d+)-of-(\d+)\.json$")


def marker_name(node: int, nodes: int) -> str:
    return f"kubetune-checkpoint-{node}-of-{nodes}.json"


@dataclass
class StoredCheckpoint:
    """What one `checkpoint-<step>/` folder holds: file sizes by relative path, and the markers' contents."""

    step: int
    files: dict[str, int] = field(default_factory=dict)
    markers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def is_complete(self) -> bool:
        """Every node's marker is there and every file a marker lists has the size it lists."""
        nodes = {m.get("nodes") for m in self.markers.values()}
        if len(nodes) != 1:
            return False
        (count,) = nodes
        if not isinstance(count, int) or count < 1 or len(self.markers) != count:
            return False
        listed: dict[str, set[int]] = {}
        for marker in self.markers.values():
            for name, size in (marker.get("files") or {}).items():
                listed.setdefault(name, set()).add(size)
        return all(self.files.get(name) in sizes for name, sizes in listed.items())


def group_listing(sizes: Mapping[str, int]) -> dict[int, StoredCheckpoint]:
    """Relative paths under the run folder (`checkpoint-N/...`) -> checkpoints by step; markers not yet read."""
    found: dict[int, StoredCheckpoint] = {}
    for relative, size in sizes.items():
        top, _, rest = relative.partition("/")
        matched = _FOLDER.match(top)
        if not matched or not rest:
            continue
        step = int(matched.group(1))
        checkpoint = found.setdefault(step, StoredCheckpoint(step))
        if _MARKER.match(rest):
            checkpoint.markers[rest] = {}
        else:
            checkpoint.files[rest] = size
    return found


def local_files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


class CheckpointStore:
    """One run's checkpoint folder on durable storage, through an fsspec filesystem."""

    def __init__(self, fs: Any, root: str, uri: str, *, folders: bool) -> None:
        """`folders`: the filesystem needs directories made (a volume); an object store has none, and s3fs's
        makedirs would create a missing bucket instead of failing on a mistyped name."""
        self.fs = fs
        self.root = root.rstrip("/")
        self.uri = uri
        self.folders = folders

    @classmethod
    def open(cls, uri: str, pvc_root: Path) -> CheckpointStore:
        parsed = parse_uri(uri)
        if isinstance(parsed, S3Uri):
            return cls(s3_filesystem(), f"{parsed.bucket}/{parsed.key}", uri, folders=False)
        import fsspec

        assert isinstance(parsed, PvcUri | FileUri)
        return cls(fsspec.filesystem("file"), str(local_path(parsed, pvc_root)), uri, folders=True)

    def _makedirs(self, path: str) -> None:
        if self.folders:
            self.fs.makedirs(path, exist_ok=True)

    def probe(self, node: int) -> None:
        """Writes and removes a small file: a location that can never be written is a config error now, not
        after hours of training. Anything else (the store unreachable) propagates and the pod is retried."""
        probe = f"{self.root}/.kubetune-probe-{node}"
        try:
            self._makedirs(self.root)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except FileNotFoundError as error:
            raise UriError(
                f"checkpoint storage {self.uri} does not exist (bucket or claim path): create it, or set "
                "checkpointing.storage.uri"
            ) from error
        except PermissionError as error:
            raise UriError(
                f"checkpoint storage {self.uri} is not writable: check the storage credentials and the bucket "
                "policy, or the claim's access mode"
            ) from error
        except OSError as error:
            if error.errno != errno.EROFS:
                raise
            raise UriError(f"checkpoint storage {self.uri} is on a read-only filesystem") from error

    def _path(self, step: int, relative: str = "") -> str:
        folder = f"{self.root}/{CHECKPOINT_PREFIX}{step}"
        return f"{folder}/{relative}" if relative else folder

    def listing(self) -> dict[int, StoredCheckpoint]:
        """Every checkpoint folder with its files and markers (the markers read)."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        sizes = {name[len(self.root) + 1 :]: int(info.get("size") or 0) for name, info in found.items()}
        checkpoints = group_listing({name.lstrip("/"): size for name, size in sizes.items()})
        for checkpoint in checkpoints.values():
            for name in checkpoint.markers:
                try:
                    checkpoint.markers[name] = json.loads(self.fs.cat_file(self._path(checkpoint.step, name)))
                except (FileNotFoundError, ValueError):
                    checkpoint.markers[name] = {}  # half-written or just deleted: incomplete
        return checkpoints

    def complete_steps(self) -> list[int]:
        return sorted(step for step, checkpoint in self.listing().items() if checkpoint.is_complete())

    def upload(self, folder: Path, step: int, *, node: int, nodes: int) -> None:
        """This node's files of checkpoint `step`, then its marker (the last write)."""
        files = local_files(folder)
        for relative in files:
            target = self._path(step, relative)
            self._makedirs(target.rsplit("/", 1)[0])
            self.fs.put_file(str(folder / relative), target)
        marker = {"step": step, "node": node, "nodes": nodes, "files": files}
        self.fs.pipe_file(self._path(step, marker_name(node, nodes)), json.dumps(marker).encode())

    def download(self, step: int, folder: Path) -> None:
        """Every file of a complete checkpoint (all nodes' files: each node resumes from the whole of it)."""
        checkpoint = self.listing().get(step)
        if checkpoint is None or not checkpoint.is_complete():
            raise FileNotFoundError(f"{self.uri}: checkpoint {step} is not complete")
        for relative in checkpoint.files:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._path(step, relative), str(target))
        if local_files(folder) != checkpoint.files:
            raise OSError(f"{self.uri}: checkpoint {step} changed while it was downloaded")

    def delete(self, steps: Iterable[int]) -> None:
        """Markers first, so a checkpoint is incomplete before any of its files goes."""
        listing = self.listing()
        for step in steps:
            for name in listing.get(step, StoredCheckpoint(step)).markers:
                self.fs.rm_file(self._path(step, name))
            if self.fs.exists(self._path(step)):
                self.fs.rm(self._path(step), recursive=True)

    def prune(self, keep_last: int) -> list[int]:
        """Keeps the newest `keep_last` complete checkpoints and anything newer (maybe still uploading);
        deletes the rest, complete or not. Returns the deleted steps."""
        listing = self.listing()
        complete = sorted(step for step, c in listing.items() if c.is_complete())
        if not complete:
            return []
        oldest_kept = complete[-keep_last:][0]
        doomed = sorted(step for step in listing if step < oldest_kept)
        self.delete(doomed)
        return doomed

    def delete_all(self) -> None:
        self.delete(self.listing())
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

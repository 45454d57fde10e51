"""A writable `TORCH_EXTENSIONS_DIR`, so the image's prebuilt DeepSpeed ops load as the non-root pod user.

torch takes a file lock inside an extension's build directory even when it only loads a prebuilt op
(`<dir>/<op>/lock`), so the image's `/opt/kubetune/torch_extensions` (root-owned, and on a read-only root
filesystem) fails with a PermissionError as uid 65532. Before anything imports DeepSpeed, the trainer copies
the prebuilt ops into its scratch volume and points the variable there. The copy keeps modification times:
ninja compares them against the sources, so the copied ops load as they are and nothing recompiles.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "TORCH_EXTENSIONS_DIR"
COPY_NAME = "torch_extensions"


def is_writable(path: Path) -> bool:
    """Whether this process (its effective uid, on this filesystem) may create files in `path`."""
    return os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def writable_extensions_dir(work_dir: Path, environ: MutableMapping[str, str]) -> Path | None:
    """The extensions directory this process can use; a copy under `work_dir` when the configured one is not
    writable (`environ[ENV]` is updated). None when the variable is unset (torch's default is under HOME)."""
    configured = environ.get(ENV)
    if not configured:
        return None
    source = Path(configured)
    if not source.is_dir():
        return source
    folders = [source, *(p for p in source.iterdir() if p.is_dir())]
    if all(is_writable(folder) for folder in folders):
        return source
    target = work_dir / COPY_NAME
    if not target.is_dir():
        _copy_atomically(source, target)
        log.info("prebuilt torch extensions in %s are read-only here: using a copy in %s", source, target)
    environ[ENV] = str(target)
    return target


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy (file times kept, folders made writable) into a sibling, then rename: a pod's ranks may race here."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{COPY_NAME}-", dir=target.parent))
    try:
        copy = staging / COPY_NAME
        shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns("lock"))
        for folder in [copy, *(p for p in copy.rglob("*") if p.is_dir())]:
            folder.chmod(folder.stat().st_mode | stat.S_IRWXU)  # copytree copied the read-only modes
        try:
            os.rename(copy, target)
        except OSError:
            if not target.is_dir():  # another rank's copy won the race only if it is there
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

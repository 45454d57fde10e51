"""The trainer makes the image's read-only prebuilt DeepSpeed ops loadable by the non-root pod user.

The read-only case is real: the prebuilt tree is root-owned with no write bits, and the call runs with the
pod's uid as the effective user (when the tests run as root) so the kernel, not the test, says "not writable".
The image test (tests/images) then loads the copied ops in a DeepSpeed run as the image's user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kubetune_trainer.torch_extensions import COPY_NAME, ENV, writable_extensions_dir

pytestmark = pytest.mark.unit

POD_UID = 65532
BUILT_AT = 1_700_000_000


@contextmanager
def as_pod_user() -> Iterator[None]:
    """Root ignores permission bits: act as the pod's uid for the call (nothing to change for other users)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(POD_UID)
    os.seteuid(POD_UID)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def root() -> Iterator[Path]:
    """Outside pytest's 0700 basetemp, so the pod's uid can reach it."""
    path = Path(tempfile.mkdtemp(prefix="kubetune-ext-"))
    path.chmod(0o755)
    yield path
    for folder in [path, *path.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    shutil.rmtree(path)


def prebuilt(root: Path, *, read_only: bool) -> Path:
    """An extensions tree as the image has it: one folder per op, built files with their build times."""
    source = root / "prebuilt"
    for op, files in {
        "deepspeed_shm_comm": ("deepspeed_shm_comm.so", "build.ninja"),
        "cpu_adam": ("cpu_adam.so",),
    }.items():
        (source / op).mkdir(parents=True)
        for name in files:
            (source / op / name).write_bytes(f"{op}/{name}".encode())
            os.utime(source / op / name, (BUILT_AT, BUILT_AT))
    if read_only:
        for path in [*sorted(source.rglob("*"), reverse=True), source]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    return source


def work_dir(root: Path) -> Path:
    scratch = root / "scratch"
    scratch.mkdir()
    os.chown(scratch, POD_UID if os.geteuid() == 0 else os.getuid(), -1)
    return scratch


def test_read_only_prebuilt_ops_are_copied_to_scratch_with_their_build_times(root: Path) -> None:
    source, scratch = prebuilt(root, read_only=True), work_dir(root)
    environ = {ENV: str(source)}
    with as_pod_user():
        found = writable_extensions_dir(scratch, environ)
        writable = os.access(scratch / COPY_NAME / "cpu_adam", os.W_OK, effective_ids=True)
    assert found == scratch / COPY_NAME
    assert environ[ENV] == str(found)
    copied = {p.relative_to(found).as_posix(): p for p in found.rglob("*") if p.is_file()}
    assert set(copied) == {
        "deepspeed_shm_comm/deepspeed_shm_comm.so",
        "deepspeed_shm_comm/build.ninja",
        "cpu_adam/cpu_adam.so",
    }
    assert copied["cpu_adam/cpu_adam.so"].read_bytes() == b"cpu_adam/cpu_adam.so"
    assert {int(p.stat().st_mtime) for p in copied.values()} == {BUILT_AT}, "ninja would rebuild on new times"
    assert writable, "torch writes its lock file into each op's folder"
    assert not list(scratch.glob(f".{COPY_NAME}-*")), "no staging folder left behind"


def test_a_second_rank_uses_the_copy_the_first_made(root: Path) -> None:
    source, scratch = prebuilt(root, read_only=True), work_dir(root)
    with as_pod_user():
        first = writable_extensions_dir(scratch, {ENV: str(source)})
        (scratch / COPY_NAME / "marker").write_text("rank 0")
        environ = {ENV: str(source)}
        second = writable_extensions_dir(scratch, environ)
    assert first == second == scratch / COPY_NAME
    assert (second / "marker").read_text() == "rank 0"
    assert environ[ENV] == str(second)


def test_writable_ops_and_an_unset_variable_are_left_alone(root: Path) -> None:
    source, scratch = prebuilt(root, read_only=False), work_dir(root)
    environ = {ENV: str(source)}
    assert writable_extensions_dir(scratch, environ) == source
    assert environ == {ENV: str(source)}
    assert not (scratch / COPY_NAME).exists()
    unset: dict[str, str] = {}
    assert writable_extensions_dir(scratch, unset) is None
    assert unset == {}

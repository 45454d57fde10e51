"""Fixtures for the trainer data tests: tiny datasets on disk, a pvc mount root, a real S3 server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_ROOT = Path(__file__).resolve().parents[2]
if str(TESTS_ROOT) not in sys.path:  # tests/conftest.py normally puts it there (rootdir-relative imports)
    sys.path.insert(0, str(TESTS_ROOT))

from support.s3server import S3Server, running_s3_server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS with S3 on free loopback ports for the whole session, killed by PID at the end."""
    with running_s3_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def pvc_root(tmp_path: Path) -> Path:
    """Stands in for /mnt/pvc, where the operator mounts each claim."""
    root = tmp_path / "mnt-pvc"
    root.mkdir()
    return root

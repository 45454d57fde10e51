"""Against a real S3-compatible server (SeaweedFS, started once per session, stopped by PID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.s3server import S3Server, running_s3_server
from support.trainer_fixtures import data_files, model_dir, pvc_root

__all__ = ["data_files", "model_dir", "pvc_root", "s3_server"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS with S3 on free loopback ports for the whole session, killed by PID at the end."""
    with running_s3_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server

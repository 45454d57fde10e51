"""The local node's mount planning (pure parts): ordering and keeping the toolchain visible."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_dev.local_node.pods import NodeRuntime, visible_host_paths_kept
from kubetune_dev.local_node.process import mount_order
from kubetune_dev.local_node.volumes import Mount

pytestmark = pytest.mark.unit


def test_mount_over_a_parent_of_other_sources_goes_last() -> None:
    tmp = Mount(Path("/tmp/sandbox/volumes/tmp"), "/tmp")
    config = Mount(Path("/tmp/sandbox/volumes/config"), "/etc/kubetune")
    scratch = Mount(Path("/tmp/sandbox/volumes/scratch"), "/scratch")
    assert mount_order([tmp, config, scratch]) == [config, scratch, tmp]


def test_mounts_that_would_hide_the_virtualenv_are_dropped() -> None:
    runtime = NodeRuntime("127.0.0.1", 6443, Path("/tmp/checkout/.venv/bin"), Path("/tmp/checkout/.kubetune"))
    tmp = Mount(Path("/x/tmp"), "/tmp")
    scratch = Mount(Path("/x/scratch"), "/scratch")
    assert visible_host_paths_kept([tmp, scratch], runtime) == [scratch]

"""The built images and how tests run them: buildah with chroot isolation (no daemon, works as root in CI).

`make images` builds them into buildah's local storage as localhost/kubetune-*:<version>; these helpers
read an image's config and run a command in a throwaway container of it, as a kubelet starts a container.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
OPERATOR_IMAGE = f"localhost/kubetune-operator:{VERSION}"
OPERATOR_ALLOCATOR_ENV = {
    "PYTHONMALLOC": "malloc",
    "MALLOC_ARENA_MAX": "2",
    "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0:glibc.malloc.mmap_threshold=131072",
}
"""What the operator image sets for its memory allocator (Dockerfile ENV; test_operator_image checks the built
image has it): the scale benchmark runs `kubetune operator` with it, as the image does."""
TRAINER_IMAGE = f"localhost/kubetune-trainer:{VERSION}"
REQUIREMENTS = "/opt/kubetune/requirements.txt"
"""What each image records of the locked requirements it was built from (`uv export`, with hashes)."""


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False

    def flag(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True)
class Run:
    """One container start: the command (entrypoint included), the user and what the pod would mount."""

    command: Sequence[str]
    user: str | None = None
    mounts: Sequence[Mount] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    hostname: str | None = None


def require_image(image: str, make_target: str) -> dict[str, Any]:
    """The image's OCI config; a missing image fails the test with the command that builds it."""
    if shutil.which("buildah") is None:
        pytest.fail(f"buildah is not installed: `make {make_target}` installs it and builds {image}")
    found = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        pytest.fail(f"image {image} is not built: run `make {make_target}` first ({found.stderr.strip()})")
    config: dict[str, Any] = json.loads(found.stdout)["OCIv1"]["config"]
    return config


def run_in_image(image: str, run: Run, timeout: float) -> subprocess.CompletedProcess[str]:
    container = subprocess.run(
        ["buildah", "from", "--quiet", "--pull-never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        command = ["buildah", "run", "--isolation", "chroot"]
        if run.user:
            command += ["--user", run.user]
        if run.workdir:
            command += ["--workingdir", run.workdir]
        if run.hostname:
            command += ["--hostname", run.hostname]
        for mount in run.mounts:
            command += ["--volume", mount.flag()]
        for name, value in run.env.items():
            command += ["--env", f"{name}={value}"]
        return subprocess.run(
            [*command, container, "--", *run.command], capture_output=True, text=True, check=False, timeout=timeout
        )
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)

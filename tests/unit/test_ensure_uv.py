"""hack/ensure-uv.sh (run by every make target) finds an installed uv silently and never reinstalls it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "ensure-uv.sh"


def _run(path: str, user_base: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "PYTHONUSERBASE": str(user_base), "PYTHON": sys.executable, "HOME": os.environ["HOME"]}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


def _fake_uv(directory: Path) -> Path:
    directory.mkdir(parents=True)
    uv = directory / "uv"
    uv.write_text("#!/bin/sh\necho fake uv\n")
    uv.chmod(0o755)
    return uv


def test_uv_in_the_user_site_but_not_on_path_is_found_without_installing(tmp_path: Path) -> None:
    uv = _fake_uv(tmp_path / "userbase" / "bin")
    result = _run("/usr/bin:/bin", tmp_path / "userbase")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(uv)
    assert result.stderr == ""  # no "installing uv from PyPI" line, no pip run


def test_uv_on_path_wins(tmp_path: Path) -> None:
    uv = _fake_uv(tmp_path / "onpath")
    _fake_uv(tmp_path / "userbase" / "bin")
    result = _run(f"{uv.parent}:/usr/bin:/bin", tmp_path / "userbase")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, str(uv), "")

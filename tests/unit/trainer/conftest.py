"""Trainer tests (tests/unit/trainer/<area>/, mirroring kubetune_trainer): shared fixtures from support."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_ROOT = Path(__file__).resolve().parents[2]
if str(TESTS_ROOT) not in sys.path:  # tests/conftest.py normally puts it there (rootdir-relative imports)
    sys.path.insert(0, str(TESTS_ROOT))

from support.trainer_fixtures import (  # noqa: E402
    data_files,
    model_dir,
    pvc_root,
    run_job,
    termination_log,
    weights_never_load,
)

__all__ = ["data_files", "model_dir", "pvc_root", "run_job", "termination_log", "weights_never_load"]

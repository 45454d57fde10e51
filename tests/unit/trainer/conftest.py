"""Fixtures for trainer tests: the cached tiny model, toy data files and a TrainerConfig builder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_ROOT = Path(__file__).resolve().parents[2]
if str(TESTS_ROOT) not in sys.path:
    sys.path.insert(0, str(TESTS_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from kubetune_dev.tiny import alpaca_rows, text_rows, tiny_model_dir, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="session")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "text": write_jsonl(root / "text.jsonl", text_rows()),
        "alpaca": write_jsonl(root / "alpaca.jsonl", alpaca_rows()),
    }

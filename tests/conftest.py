"""Test tiers follow folders: a test under tests/<tier>/ carries the <tier> marker automatically."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "contract", "integration", "e2e", "bench", "gpu", "images")
ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.path)).relative_to(ROOT)
        tier = relative.parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))

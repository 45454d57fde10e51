"""Every example renders to exactly its golden file; drift fails with the command that refreshes them.

Refresh after an intended change: KUBETUNE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/operator/test_operator_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.v1alpha1.adapter import Adapter
from kubetune.render.adapter import merge_bundle
from kubetune.render.bundle import render_bundle
from kubetune.settings import OperatorSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
UPDATE = os.environ.get("KUBETUNE_UPDATE_GOLDEN") == "1"
UID = "00000000-0000-4000-8000-000000000001"
SETTINGS = OperatorSettings()


class _Literal(yaml.SafeDumper):
    """Multi-line strings (trainer.json) as literal blocks, so golden diffs read line by line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Literal.add_representer(str, _str)


def source_adapter(name: str, base: str) -> Adapter:
    return Adapter.model_validate(
        {
            "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}"},
            "spec": {
                "baseModel": {"uri": base, "revision": "0123abcd"},
                "method": {"type": "lora", "rank": 16, "alpha": 32, "targetModules": ["q_proj", "v_proj"]},
                "artifact": {"uri": f"s3://adapters/{name}/", "sha256": "a" * 64, "sizeBytes": 1024},
            },
            "status": {"phase": "Ready"},
        }
    )


def render_example(document: dict[str, Any]) -> list[dict[str, Any]]:
    document = {**document, "metadata": {**document["metadata"], "uid": UID, "generation": 1}}
    if document["kind"] == "FineTuneJob":
        return render_bundle(document, SETTINGS)
    adapter = Adapter.model_validate(document)
    merge = adapter.spec.merge
    assert merge is not None
    sources = [source_adapter(s.name, adapter.spec.base_model.uri) for s in merge.sources]
    return merge_bundle(adapter, sources, SETTINGS)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_render_matches_golden(example: Path) -> None:
    rendered = yaml.dump_all(
        render_example(yaml.safe_load(example.read_text())), Dumper=_Literal, sort_keys=False, width=120
    )
    golden = GOLDEN / example.name
    if UPDATE:
        golden.write_text(rendered)
    assert golden.exists(), f"no golden file for {example.name}: run KUBETUNE_UPDATE_GOLDEN=1 pytest {__file__}"
    assert rendered == golden.read_text(), (
        f"render of {example.name} drifted from {golden.relative_to(ROOT)}; if the change is intended, "
        f"refresh with KUBETUNE_UPDATE_GOLDEN=1 .venv/bin/pytest {Path(__file__).relative_to(ROOT)}"
    )


def test_no_orphan_golden_files() -> None:
    assert {p.name for p in GOLDEN.glob("*.yaml")} == {p.name for p in EXAMPLES}

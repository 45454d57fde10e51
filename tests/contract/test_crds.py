"""The committed CRDs equal the models, are structural, and bound everything CEL might iterate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.crd.__main__ import render_yaml
from kubetune.api.crd.build import all_crds

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
CRDS = all_crds()


def schema_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict) and "type" in node:
        yield path, node
        for name, child in node.get("properties", {}).items():
            yield from schema_nodes(child, f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            yield from schema_nodes(node["additionalProperties"], f"{path}.*")
        if "items" in node:
            yield from schema_nodes(node["items"], f"{path}[]")


def schema_of(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("name", sorted(CRDS))
def test_committed_crds_match_the_models(name: str) -> None:
    for folder in ("crds", "charts/kubetune/crds"):
        assert (ROOT / folder / name).read_text() == render_yaml(CRDS[name]), f"run `make generate` ({folder}/{name})"


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural_and_bounded(name: str) -> None:
    text = yaml.safe_dump(schema_of(name))
    for forbidden in ("$ref", "anyOf", "oneOf", "title:", "additionalProperties: false", "$defs"):
        assert forbidden not in text
    for path, node in schema_nodes(schema_of(name)):
        assert node["type"] in {"object", "array", "string", "integer", "number", "boolean"}, path
        if node["type"] == "array":
            assert "maxItems" in node, f"{path}: arrays need maxItems to keep CEL cost bounded"
        if node["type"] == "string" and "enum" not in node and path.startswith(".spec"):
            assert "maxLength" in node, f"{path}: strings need maxLength to keep CEL cost bounded"
        if node["type"] == "object" and "additionalProperties" in node and path.startswith(".spec"):
            assert "maxProperties" in node, f"{path}: maps need maxProperties"


@pytest.mark.parametrize("name", sorted(CRDS))
@pytest.mark.parametrize("part", ["spec", "status"])
def test_every_spec_and_status_field_is_documented(name: str, part: str) -> None:
    for path, node in schema_nodes(schema_of(name)["properties"][part], f".{part}"):
        if path != f".{part}" and not path.endswith(("[]", ".*")):
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_finetunejob_crd_names_columns_and_status() -> None:
    crd = CRDS["finetunejobs.kubetune.io.yaml"]["spec"]
    assert crd["names"]["shortNames"] == ["ftj", "ftjs"]
    assert crd["names"]["categories"] == ["kubetune"]
    version = crd["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Reason", "Method", "Objective", "Progress", "Loss", "Adapter", "Age"]
    adapter_columns = [
        c["name"] for c in CRDS["adapters.kubetune.io.yaml"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert adapter_columns == ["Phase", "Base Model", "Method", "Rank", "Validated", "Age"]


def test_defaults_are_published_for_the_api_server() -> None:
    spec = schema_of("finetunejobs.kubetune.io.yaml")["properties"]["spec"]["properties"]
    assert spec["training"]["default"]["learningRate"] == 2e-4
    assert spec["training"]["properties"]["learningRate"]["default"] == 2e-4
    assert spec["dataset"]["properties"]["prep"]["properties"]["dedup"]["default"] == "exact"
    assert "default" not in spec["method"]["properties"]["lora"], "union blocks must not be defaulted"


def test_hand_edited_crd_fails_verify_with_instructions(tmp_path: Path) -> None:
    for folder in ("crds", "charts/kubetune/crds"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    target = tmp_path / "crds/finetunejobs.kubetune.io.yaml"
    target.write_text(target.read_text().replace("maximum: 1024", "maximum: 2048", 1))
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.api.crd", "check"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "crds/finetunejobs.kubetune.io.yaml" in result.stderr
    assert "run `make generate`" in result.stderr

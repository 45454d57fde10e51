"""The built operator image (`make image-operator`): runs as the chart's user, exposes the chart's ports,
carries its OCI labels, and its `kubetune` is the one in this tree."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
import yaml

from support.images import (
    OPERATOR_ALLOCATOR_ENV,
    OPERATOR_IMAGE,
    REPO,
    REQUIREMENTS,
    VERSION,
    Mount,
    Run,
    locked_versions,
    require_image,
    run_in_image,
)

CHART = REPO / "charts" / "kubetune"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return require_image(OPERATOR_IMAGE, "image-operator")


def chart_run_as_users() -> set[int]:
    """Every runAsUser the chart sets (templates and values)."""
    texts = [p.read_text() for p in (CHART / "templates").glob("*.yaml")] + [(CHART / "values.yaml").read_text()]
    return {int(uid) for text in texts for uid in re.findall(r"runAsUser:\s*(\d+)", text)}


def test_runs_as_the_non_root_user_the_chart_sets(config: dict[str, Any]) -> None:
    user, group = config["User"].split(":")
    assert int(user) != 0
    assert chart_run_as_users() == {int(user)}
    assert group == user


def test_exposes_the_ports_the_chart_uses_and_starts_the_operator(config: dict[str, Any]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(config["ExposedPorts"]) == {f"{values['metrics']['port']}/tcp", f"{values['livenessPort']}/tcp"}
    assert config["Entrypoint"] == ["kubetune", "operator"]


def test_sets_the_allocator_the_scale_benchmark_measured(config: dict[str, Any]) -> None:
    """docs/benchmarks.md's RSS after a burst is measured with these; an image without them keeps more."""
    env = dict(item.split("=", 1) for item in config["Env"])
    assert OPERATOR_ALLOCATOR_ENV.items() <= env.items()


def test_oci_labels_name_the_version_revision_and_base(config: dict[str, Any]) -> None:
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    datetime.fromisoformat(labels["org.opencontainers.image.created"])
    assert labels["org.opencontainers.image.base.name"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_kubetune_version_as_the_image_user(config: dict[str, Any]) -> None:
    result = run_in_image(OPERATOR_IMAGE, Run(command=["kubetune", "version"]), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kubetune {VERSION} (API kubetune.io/v1alpha1)"


SOURCE_DIGESTS = """
import hashlib, json, pathlib, kubetune, kubetune_trainer
digests = {}
for package in (kubetune, kubetune_trainer):
    root = pathlib.Path(package.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digests[f"{root.name}/{path.relative_to(root)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
print(json.dumps(digests))
"""


def test_installed_sources_are_this_trees(config: dict[str, Any]) -> None:
    """No stale layer: every Python file of kubetune in the image is the tree's file, byte for byte."""
    result = run_in_image(OPERATOR_IMAGE, Run(command=["python", "-c", SOURCE_DIGESTS]), timeout=120)
    assert result.returncode == 0, result.stderr
    tree = {
        f"{root.name}/{path.relative_to(root)}": hashlib.sha256(path.read_bytes()).hexdigest()
        for root in (REPO / "operator" / "kubetune", REPO / "trainer-image" / "kubetune_trainer")
        for path in sorted(root.rglob("*.py"))
    }
    assert json.loads(result.stdout) == tree


def test_records_the_locked_requirements_it_was_built_from(config: dict[str, Any]) -> None:
    result = run_in_image(OPERATOR_IMAGE, Run(command=["cat", REQUIREMENTS]), timeout=60)
    assert result.returncode == 0, result.stderr
    pinned = dict(re.findall(r"^([a-z0-9_.-]+)==([^ ;\\]+)", result.stdout, flags=re.MULTILINE))
    locked = locked_versions()
    assert {"kopf", "kubernetes", "prometheus-client", "pydantic"} <= set(pinned)
    assert pinned == {name: locked[name] for name in pinned}
    assert result.stdout.count("--hash=sha256:") >= len(pinned)
    assert "torch" not in pinned


def test_renders_exactly_what_this_tree_renders(config: dict[str, Any]) -> None:
    example = "examples/demo-tiny-lora.yaml"
    inside = run_in_image(
        OPERATOR_IMAGE,
        Run(
            command=["kubetune", "render", f"/examples/{example.removeprefix('examples/')}"],
            mounts=[Mount(str(REPO / "examples"), "/examples", read_only=True)],
        ),
        timeout=120,
    )
    here = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "render", str(REPO / example)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout == here.stdout

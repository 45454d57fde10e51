"""The generated CRDs on a real kube-apiserver: they install, every example is accepted and every invalid
fixture is rejected with its expected message (OpenAPI schema and CEL rules evaluated by the apiserver
itself), and kubectl shows the printer columns and field documentation.

Runs on Tier A (no controllers needed); the control plane fixture upgrades to Tier B only when a
``tier_b`` test is selected too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.problems import validate
from kubetune.api.v1alpha1 import FineTuneJob
from kubetune.api.v1alpha1.finetunejob import Progress
from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.client import AdminClient, condition
from kubetune_dev.controlplane.testing import Kubectl, wait_until, with_namespace

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "tests" / "fixtures" / "invalid").glob("*.yaml"))
PRINTER_COLUMNS = ["NAME", "PHASE", "REASON", "METHOD", "OBJECTIVE", "PROGRESS", "LOSS", "ADAPTER", "AGE"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"#\s*expect:\s*(.+?)\s*", first)
    assert match, f"{path.name}: first line must be '# expect: <substring of the error message>'"
    return match.group(1)


@pytest.fixture(scope="session")
def crds(control_plane: LocalControlPlane, kubectl: Kubectl) -> list[dict[str, Any]]:
    """Installed once per session, the way a user would (server-side apply), and awaited until Established."""
    assert CRD_FILES, "crds/*.yaml missing: run `make generate`"
    for path in CRD_FILES:
        kubectl("apply", "--server-side", "-f", str(path))
    installed = []
    for path in CRD_FILES:
        name = _docs(path)[0]["metadata"]["name"]

        def established(name: str = name) -> dict[str, Any] | None:
            crd = control_plane.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            cond = condition(crd, "Established")
            return crd if cond and cond["status"] == "True" else None

        installed.append(wait_until(f"CRD {name} Established", established, timeout=60))
    return installed


def test_crds_install_and_become_established(crds: list[dict[str, Any]], api: AdminClient) -> None:
    names = {crd["metadata"]["name"] for crd in crds}
    assert names == {"finetunejobs.kubetune.io", "adapters.kubetune.io"}
    for crd in crds:
        accepted = condition(crd, "NamesAccepted")
        assert accepted is not None
        assert accepted["status"] == "True"
    resources = {r["name"] for r in api.get("/apis/kubetune.io/v1alpha1")["resources"]}
    assert {"finetunejobs", "finetunejobs/status", "adapters", "adapters/status"} <= resources


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5, "examples/*.yaml missing"
    assert len(INVALID) >= 5, "tests/fixtures/invalid/*.yaml missing"


@pytest.mark.parametrize("example", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_is_accepted_by_server_side_dry_run(
    example: Path, crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    docs = with_namespace(_docs(example), namespace)
    result = kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert result.returncode == 0, f"{example.name} rejected by the apiserver:\n{result.stderr}"
    for doc in docs:
        assert f"{doc['kind'].lower()}.kubetune.io/{doc['metadata']['name']} serverside-applied (server dry run)" in (
            result.stdout
        )


@pytest.mark.parametrize("fixture", INVALID, ids=_ids(INVALID))
def test_invalid_fixture_is_rejected_with_its_message(
    fixture: Path, crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    expected = _expected_message(fixture)
    docs = with_namespace(_docs(fixture), namespace)
    result = kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert result.returncode != 0, f"{fixture.name} was accepted, expected rejection with {expected!r}"
    assert "is invalid" in result.stderr, result.stderr
    assert expected in result.stderr, f"expected {expected!r} in:\n{result.stderr}"


def test_get_ftj_shows_printer_columns(crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str) -> None:
    (doc,) = with_namespace(_docs(REPO / "examples" / "method-lora.yaml"), namespace)
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    out = kubectl("get", "ftj", "-n", namespace).stdout.splitlines()
    assert out[0].split() == PRINTER_COLUMNS
    row = out[1].split()
    assert row[0] == doc["metadata"]["name"]
    assert doc["spec"]["method"]["type"] in row
    assert doc["spec"]["objective"]["type"] in row


def _explain(kubectl: Kubectl, path: str) -> str:
    def explained() -> str | None:
        # The OpenAPI v3 document for a new CRD is published a moment after it is Established.
        result = kubectl("explain", path, check=False)
        return result.stdout if result.returncode == 0 else None

    out: str = wait_until(f"kubectl explain {path}", explained, timeout=30)
    return out


def _schema(*path: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "finetunejobs.kubetune.io.yaml").read_text())
    node: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path:
        node = node["properties"][name]
    return node


@pytest.mark.parametrize("path", [("spec", "method"), ("status",), ("status", "progress")], ids=".".join)
def test_explain_documents_every_field(crds: list[dict[str, Any]], kubectl: Kubectl, path: tuple[str, ...]) -> None:
    schema = _schema(*path)
    out = _explain(kubectl, ".".join(("finetunejob", *path)))
    flat = " ".join(out.split())
    assert f"FIELD: {path[-1]}" in out
    assert " ".join(schema["description"].split()[:6]) in flat
    for field, child in schema["properties"].items():
        assert re.search(rf"^\s+{field}\b", out, re.MULTILINE), f"field {field} not listed:\n{out}"
        assert " ".join(child["description"].split()[:4]) in flat, f"{field}: description missing:\n{out}"


def test_unknown_field_hint_is_a_path_kubectl_explain_accepts(crds: list[dict[str, Any]], kubectl: Kubectl) -> None:
    (doc,) = _docs(REPO / "examples" / "method-lora.yaml")
    doc["spec"]["method"]["lora"]["rnak"] = 8
    _, problems = validate(FineTuneJob, doc)
    (problem,) = problems
    hinted = problem.message.split("(kubectl explain ")[1].rstrip(")")
    assert hinted == "finetunejob.spec.method.lora"
    assert re.search(r"^\s+rank\b", _explain(kubectl, hinted), re.MULTILINE)


def test_objective_defaults_to_sft_on_the_server(crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str) -> None:
    (doc,) = with_namespace(_docs(REPO / "examples" / "method-lora.yaml"), namespace)
    del doc["spec"]["objective"]
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    stored = kubectl.json("get", "ftj", doc["metadata"]["name"], "-n", namespace)
    # completionOnlyLoss stays unset: the trainer applies it wherever the data and chat template allow
    assert stored["spec"]["objective"] == {"type": "sft"}


def test_printer_columns_show_reason_progress_with_unit_and_rounded_loss(
    crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    (doc,) = with_namespace(_docs(REPO / "examples" / "method-lora.yaml"), namespace)
    name = doc["metadata"]["name"]
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    progress = Progress(step=420, total_steps=1000, loss=1.23456789).to_wire()
    status = {"status": {"phase": "Running", "reason": "Training", "progress": progress}}
    kubectl("patch", "ftj", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    header, row = kubectl("get", "ftj", name, "-n", namespace).stdout.splitlines()
    cells = dict(zip(PRINTER_COLUMNS, re.split(r"\s{2,}", row.strip()), strict=False))
    assert header.split() == PRINTER_COLUMNS
    assert (cells["PHASE"], cells["REASON"]) == ("Running", "Training")
    assert (cells["PROGRESS"], cells["LOSS"]) == ("42% (420/1000 steps)", "1.235")


def test_spec_is_immutable_once_started_except_suspend(
    crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    (doc,) = with_namespace(_docs(REPO / "examples" / "method-lora.yaml"), namespace)
    name = doc["metadata"]["name"]
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    rank = '{"spec": {"method": {"type": "lora", "lora": {"rank": 64}}}}'
    kubectl("patch", "ftj", name, "-n", namespace, "--type=merge", "-p", rank)  # not started: editable
    started = '{"status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}}'
    kubectl("patch", "ftj", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", started)
    changed = kubectl("patch", "ftj", name, "-n", namespace, "--type=merge", "-p", rank.replace("64", "8"), check=False)
    assert changed.returncode != 0
    assert "spec is immutable once the job has started (only spec.suspend may change)" in changed.stderr
    kubectl("patch", "ftj", name, "-n", namespace, "--type=merge", "-p", '{"spec": {"suspend": true}}')
    assert kubectl.json("get", "ftj", name, "-n", namespace)["spec"]["suspend"] is True

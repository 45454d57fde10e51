"""The chart's Argo CD health check on what the integration test cannot capture (no status yet, a generation
the operator has not seen), and the install recipe of docs/gitops.md, run with kustomize as a user would.

Objects captured from real runs go through the same check in
tests/integration/operator/test_operator_gitops_health.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaError

from kubetune.api.resources import ADAPTER, API_VERSION, FINETUNEJOB
from kubetune_dev.controlplane.paths import REPO_ROOT, find_kubectl
from support.gitops_health import HEALTH_LUA, argocd_health

pytestmark = pytest.mark.contract

DOC = REPO_ROOT / "docs" / "gitops.md"


def ftj(generation: int = 1, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "FineTuneJob",
        "metadata": {"name": "j", "generation": generation},
        "spec": {},
    }
    if status:
        body["status"] = status
    return body


def cond(kind: str, status: str, reason: str = "R", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (ftj(), ("Progressing", "waiting for the kubetune operator to observe this generation")),
        (
            ftj(2, observedGeneration=1, phase="Succeeded", conditions=[cond("Ready", "True")]),
            ("Progressing", "waiting for the kubetune operator to observe this generation"),
        ),
        (
            ftj(observedGeneration=1, conditions=[cond("Ready", "False"), cond("Stalled", "True", message="oom")]),
            ("Degraded", "oom"),
        ),
        (
            ftj(
                observedGeneration=1,
                phase="Queued",
                conditions=[cond("Reconciling", "True", message="waiting for team-a"), cond("Suspended", "True")],
            ),
            ("Progressing", "waiting for team-a"),
        ),
        (
            ftj(observedGeneration=1, phase="Suspended", conditions=[cond("Ready", "True", message="by spec")]),
            ("Suspended", "by spec"),
        ),
        (ftj(observedGeneration=1, conditions=[cond("Ready", "True", message="done")]), ("Healthy", "done")),
        (ftj(observedGeneration=1, conditions=[cond("Ready", "False", message="hm")]), ("Progressing", "hm")),
    ],
    ids=["no status", "generation not observed", "stalled", "queued", "suspended", "ready", "ready false only"],
)
def test_health_when_nothing_else_decides(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    health = argocd_health(obj)
    assert (health["status"], health["message"]) == expected


def test_the_harness_opens_only_what_argo_cd_opens() -> None:
    """A check that calls string or math functions fails in Argo CD; it must fail here too."""
    for script in ('return {status = string.upper("healthy")}', 'return {status = ("x"):upper()}'):
        with pytest.raises(LuaError):
            argocd_health(ftj(), script)


def test_docs_kustomization_installs_the_check_for_both_kinds(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(# kustomization\.yaml\n.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/gitops.md has one kustomization.yaml block"
    (tmp_path / "kustomization.yaml").write_text(blocks[0])
    (tmp_path / "health.lua").write_text(HEALTH_LUA.read_text())
    argocd_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}, "data": {"url": "x"}}
    (tmp_path / "argocd-cm.yaml").write_text(yaml.safe_dump(argocd_cm))
    built = subprocess.run(
        [str(find_kubectl()), "kustomize", str(tmp_path)], capture_output=True, text=True, check=True, timeout=60
    )
    (merged,) = list(yaml.safe_load_all(built.stdout))
    assert merged["metadata"]["name"] == "argocd-cm"
    assert merged["data"]["url"] == "x"  # merged into the existing ConfigMap, not replacing it
    for resource in (FINETUNEJOB, ADAPTER):
        script = merged["data"][f"resource.customizations.health.{resource.group}_{resource.kind}"]
        assert script == HEALTH_LUA.read_text()
        assert argocd_health(ftj(), script)["status"] == "Progressing"

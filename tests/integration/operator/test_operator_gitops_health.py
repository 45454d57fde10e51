"""What Flux/kpt (kstatus, the real library through hack/kstatus) and Argo CD (the chart's health Lua) read
from FineTuneJobs and Adapters captured from real runs on the local control plane.

| object | state | kstatus | Argo CD |
|---|---|---|---|
| FineTuneJob | Pending (a missing Secret), Queued (Kueue), Running | InProgress | Progressing |
| FineTuneJob | Suspended (spec.suspend) | Current | Suspended |
| FineTuneJob | Succeeded; or gate missed with publishUnvalidated | Current | Healthy |
| FineTuneJob | Failed; or Succeeded but the gate rejected the adapter | Failed | Degraded |
| Adapter | Ready (gate passed, or publishUnvalidated) | Current | Healthy |
| Adapter | gate failed; merge of a rejected source | Failed | Degraded |
| Adapter | Merging | InProgress | Progressing |
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_dev.controlplane.paths import find_kstatus
from kubetune_dev.controlplane.testing import wait_until
from support.gitops_health import argocd_health, kstatus
from support.operator_objects import adapter, result, trainer_apply

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

KEEP_RUNNING = {"kwok.kubetune.io/keep-running": "true"}
GATE = {"suites": [{"name": "heldout", "metric": "perplexity"}], "gate": {"minScores": {"heldout": 3.0}}}
MISSED = "gate failed: heldout.perplexity 3.5 is above the limit 3"
SECRET = {"name": "hf-token"}  # never created: the run waits for it

# (kind, name): (phase, Ready's reason, kstatus, Argo CD, a word of the message both report)
EXPECTED = {
    ("FineTuneJob", "waiting"): ("Pending", "SecretNotFound", "InProgress", "Progressing", "hf-token"),
    ("FineTuneJob", "queued"): ("Queued", "WaitingForAdmission", "InProgress", "Progressing", "team-a"),
    ("FineTuneJob", "running"): ("Running", "Training", "InProgress", "Progressing", "running"),
    ("FineTuneJob", "paused"): ("Suspended", "Suspended", "Current", "Suspended", ""),
    ("FineTuneJob", "done"): ("Succeeded", "Completed", "Current", "Healthy", ""),
    ("FineTuneJob", "opted"): ("Succeeded", "PublishedUnvalidated", "Current", "Healthy", ""),
    ("FineTuneJob", "crashed"): ("Failed", "ConfigError", "Failed", "Degraded", "not retried"),
    ("FineTuneJob", "gated"): ("Succeeded", "GateFailed", "Failed", "Degraded", MISSED),
    ("Adapter", "done"): ("Ready", "ArtifactPublished", "Current", "Healthy", ""),
    ("Adapter", "opted"): ("Ready", "PublishedUnvalidated", "Current", "Healthy", ""),
    ("Adapter", "gated"): ("Failed", "GateFailed", "Failed", "Degraded", MISSED),
    ("Adapter", "blend"): ("Failed", "SourceGateFailed", "Failed", "Degraded", MISSED),
    ("Adapter", "merging"): ("Merging", "Merging", "InProgress", "Progressing", "running"),
}


def ready_reason(body: dict[str, Any]) -> str:
    found = [c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
    return str(found[0]["reason"]) if found else ""


def test_kstatus_and_argocd_read_captured_objects_right(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    binary = find_kstatus()  # fails with "run make binaries" before any cluster work when it is not built
    ns = cluster.namespace
    ftj_factory("waiting", KEEP_RUNNING, baseModel={"uri": "hf://org/tiny", "credentialsSecretRef": SECRET})
    ftj_factory("queued", KEEP_RUNNING, resources={"gpus": 1, "queueName": "team-a"})
    ftj_factory("running", KEEP_RUNNING)
    ftj_factory("paused", KEEP_RUNNING, suspend=True)
    ftj_factory("crashed", {"kwok.kubetune.io/exit-code": "78"})
    for name, evaluation, passed in (("done", GATE, True), ("gated", GATE, False)):
        ftj_factory(name, evaluation=evaluation)
        written = result(name) if passed else result(name, gate=False, gate_message=MISSED)
        trainer_apply(cluster.kube, cluster, "FineTuneJob", name, {"result": written})
    ftj_factory("opted", evaluation={**GATE, "gate": {**GATE["gate"], "publishUnvalidated": True}})
    trainer_apply(cluster.kube, cluster, "FineTuneJob", "opted", {"result": result("opted", False, MISSED)})
    for name in ("done", "gated", "opted"):
        wait_until(f"Adapter {name}", lambda name=name: cluster.get("Adapter", name))
    create = cluster.url("Adapter")
    cluster.kube.create(create, adapter("blend", ns, merge={"sources": [{"name": "done"}, {"name": "gated"}]}))
    merging = adapter("merging", ns, merge={"sources": [{"name": "done"}, {"name": "opted"}]})
    merging["metadata"]["annotations"] = KEEP_RUNNING
    cluster.kube.create(create, merging)

    captured = []
    for (kind, name), (phase, reason, *_) in EXPECTED.items():

        def reached(kind: str = kind, name: str = name, phase: str = phase, reason: str = reason) -> Any:
            body = cluster.get(kind, name) or {}
            status = body.get("status") or {}
            settled = status.get("observedGeneration") == body["metadata"]["generation"]
            return body if settled and (status.get("phase"), ready_reason(body)) == (phase, reason) else None

        captured.append(wait_until(f"{kind} {name}: {phase}/{reason}", reached, timeout=60))

    verdicts = kstatus(captured, binary)
    table = {}
    for body, verdict in zip(captured, verdicts, strict=True):
        argo = argocd_health(body)
        table[(body["kind"], body["metadata"]["name"])] = (verdict["status"], argo["status"])
        word = EXPECTED[(body["kind"], body["metadata"]["name"])][4]
        assert word in argo["message"], (body["metadata"]["name"], argo)
        if verdict["status"] != "Current":  # kstatus says "Resource is Ready" for Current
            assert word in verdict["message"], (body["metadata"]["name"], verdict)
    assert table == {key: (want[2], want[3]) for key, want in EXPECTED.items()}

"""The evaluation gate gates: an adapter that missed it is not Ready, no merge and no rlhf reward reference
accepts it, and `evaluation.gate.publishUnvalidated` is the one way to publish it anyway."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_dev.controlplane.testing import wait_until
from support.operator_objects import adapter, result, trainer_apply

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

GATE = {"suites": [{"name": "heldout", "metric": "perplexity"}], "gate": {"minScores": {"heldout": 3.0}}}
OPT_IN = {**GATE, "gate": {**GATE["gate"], "publishUnvalidated": True}}
MISSED = "gate failed: heldout.perplexity 3.5 is above the limit 3"


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def wait_reason(cluster: Any, kind: str, name: str, reason: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = (cluster.get(kind, name) or {}).get("status") or {}
        return status if conditions(status).get("Ready", ("", ""))[1] == reason else None

    return wait_until(f"{kind} {name} reason {reason}", reached, timeout=60)


def test_failed_gate_is_not_ready_not_mergeable_and_not_a_reward_model(
    operator: Any, cluster: Any, ftj_factory: Any
) -> None:
    ns = cluster.namespace
    reward_model = {
        "objective": {"type": "reward"},
        "dataset": {"train": {"uri": "s3://data/pairs.jsonl"}, "format": "preference"},
    }
    for name, evaluation, passed in (("good", GATE, True), ("gated", GATE, False), ("opted", OPT_IN, False)):
        ftj_factory(name, evaluation=evaluation, **(reward_model if name == "gated" else {}))  # gated: a reward model
        written = result(name) if passed else result(name, gate=False, gate_message=MISSED)
        trainer_apply(cluster.kube, cluster, "FineTuneJob", name, {"result": written})

    run = wait_reason(cluster, "FineTuneJob", "gated", "GateFailed")
    assert run["phase"] == "Succeeded"
    assert MISSED in run["message"]
    assert "publishUnvalidated" in run["message"]
    assert conditions(run)["Stalled"] == ("True", "GateFailed")
    assert conditions(run)["Succeeded"] == ("True", "Completed")
    rejected = cluster.wait_phase("gated", "Failed", kind="Adapter")
    assert conditions(rejected)["Ready"] == ("False", "GateFailed")
    assert conditions(rejected)["Validated"] == ("False", "GateFailed")
    assert MISSED in rejected["message"]
    gate = {"passed": False, "message": MISSED, "publishUnvalidated": False}
    assert cluster.get("Adapter", "gated")["spec"]["gate"] == gate

    # A Warning on the run and one on the Adapter, each posted by its own controller right after its status write.
    def gate_warnings() -> list[tuple[str, str]] | None:
        events = [e for e in cluster.list("Event") if e["reason"] == "GateFailed" and e["type"] == "Warning"]
        found = sorted((e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in events)
        return found if len(found) >= 2 else None

    warned = wait_until("GateFailed Warnings on the run and its Adapter", gate_warnings, timeout=30)
    assert warned == [("Adapter", "gated"), ("FineTuneJob", "gated")]

    opted = wait_reason(cluster, "Adapter", "opted", "PublishedUnvalidated")
    assert opted["phase"] == "Ready"
    assert conditions(opted)["Validated"] == ("False", "GateFailed")
    assert conditions(cluster.status("opted"))["Ready"] == ("True", "PublishedUnvalidated")
    cluster.wait_phase("good", "Ready", kind="Adapter")

    create = cluster.url("Adapter")
    cluster.kube.create(create, adapter("blend", ns, merge={"sources": [{"name": "good"}, {"name": "gated"}]}))
    cluster.kube.create(create, adapter("blend-opted", ns, merge={"sources": [{"name": "good"}, {"name": "opted"}]}))
    rlhf = {"type": "rlhf", "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "gated"}}}}
    ftj_factory("rl", objective=rlhf, dataset={"train": {"uri": "s3://data/prompts.jsonl"}, "format": "prompt"})

    refused = cluster.wait_phase("blend", "Failed", kind="Adapter")
    assert conditions(refused)["Stalled"] == ("True", "SourceGateFailed")
    assert f"merge source Adapter gated failed its evaluation gate ({MISSED})" in refused["message"]
    wait_until("the merge Job of the opted-in source", lambda: cluster.get("Job", "blend-opted-merge"))
    waiting = wait_reason(cluster, "FineTuneJob", "rl", "AdapterGateFailed")
    assert waiting["phase"] == "Pending"
    assert MISSED in waiting["message"]
    assert cluster.get("Job", "blend-merge") is None
    assert cluster.get("Job", "rl-train") is None

"""Publishing and identity: the trainer's token, Adapter lineage, restart, retention, merge, metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api.v1alpha1.pod_contract import CONFIG_ANNOTATION, TRAINER_SERVICE_ACCOUNT
from kubetune.k8s.interface import KubeError
from kubetune_dev.controlplane.testing import wait_until
from support.operator_objects import DIGEST, SHA, adapter, result, trainer_apply

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]


def test_trainer_token_progress_result_and_published_adapter(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ns = cluster.namespace
    ftj_factory("other", {"kwok.kubetune.io/keep-running": "true"})
    ftj_factory("pub", {"kwok.kubetune.io/run-for": "8s"})
    cluster.wait_phase("pub", "Running")
    (pod,) = cluster.pods("pub-train")
    trainer = cluster.token_client(TRAINER_SERVICE_ACCOUNT, pod)  # as the kubelet mints it: bound to the pod
    progress = {"step": 50, "totalSteps": 100, "percent": 50, "epoch": 0.5, "loss": 1.25}
    trainer_apply(trainer, cluster, "FineTuneJob", "pub", {"progress": progress})
    trainer_apply(trainer, cluster, "FineTuneJob", "pub", {"progress": progress, "result": result("pub")})
    for forbidden in (
        lambda: trainer_apply(trainer, cluster, "FineTuneJob", "other", {"progress": progress}),
        lambda: trainer.get(cluster.url("FineTuneJob", "pub")),  # it writes its status and reads nothing
        lambda: trainer.get(cluster.url("Secret", "any")),
        lambda: trainer.list(cluster.url("Secret")),
        lambda: trainer.list(cluster.url("FineTuneJob")),
        lambda: trainer.request(
            "PATCH",
            cluster.url("FineTuneJob", "pub"),
            body={"spec": {"suspend": True}},
            content_type="application/merge-patch+json",
        ),
    ):
        with pytest.raises(KubeError) as denied:
            forbidden()
        assert denied.value.status == 403
    status = cluster.wait_phase("pub", "Succeeded")
    assert status["progress"]["step"] == 50  # the operator's status writes never touch progress
    assert status["result"]["sha256"] == SHA
    assert wait_until("adapterRef", lambda: cluster.status("pub").get("adapterRef")) == {"name": "pub"}
    validated = next(c for c in cluster.status("pub")["conditions"] if c["type"] == "Validated")
    assert (validated["status"], validated["reason"]) == ("True", "GatePassed")
    adapter = wait_until("the Adapter", lambda: cluster.get("Adapter", "pub"))
    spec = adapter["spec"]
    assert spec["baseModel"] == {"uri": "hf://org/tiny", "revision": "c0ffee"}
    assert spec["artifact"]["sha256"] == SHA
    assert spec["source"]["fineTuneJob"]["name"] == "pub"
    assert spec["source"]["datasetDigest"] == DIGEST
    assert spec["method"]["type"] == "lora"
    assert spec["metrics"] == {"heldout.perplexity": 3.5}
    adapter_status = cluster.wait_phase("pub", "Ready", kind="Adapter")
    assert next(c for c in adapter_status["conditions"] if c["type"] == "Validated")["status"] == "True"
    managers = {m["manager"] for m in cluster.get("FineTuneJob", "pub")["metadata"]["managedFields"]}
    assert {"kubetune-operator", "kubetune-trainer"} <= managers

    metrics = cluster.metrics()
    assert f'kubetune_finetunejobs{{namespace="{ns}",phase="Succeeded"}} 1.0' in metrics
    assert 'kubetune_finetunejob_transitions_total{phase="Succeeded",reason="Completed"}' in metrics
    assert 'kubetune_finetunejob_time_to_running_seconds_count{method="lora"}' in metrics
    assert 'kubetune_reconciles_total{kind="FineTuneJob"}' in metrics
    assert f'kubetune_adapters{{namespace="{ns}",phase="Ready"}} 1.0' in metrics
    assert 'name="pub"' not in metrics  # no per-object labels


def test_restart_mid_flight_no_duplicates(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("restart", {"kwok.kubetune.io/run-for": "4s"})
    cluster.wait_phase("restart", "Running")
    operator.stop()
    trainer_apply(cluster.kube, cluster, "FineTuneJob", "restart", {"result": result("restart")})
    wait_until(
        "the Job to complete while the operator is down",
        lambda: any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in (cluster.get("Job", "restart-train") or {}).get("status", {}).get("conditions") or []
        ),
        timeout=30,
    )
    assert cluster.status("restart")["phase"] == "Running"  # nobody reconciled while it was down
    operator.start()
    cluster.wait_phase("restart", "Succeeded")
    wait_until("the Adapter", lambda: cluster.get("Adapter", "restart"))
    operator.stop()
    operator.start()  # a second restart changes nothing
    wait_until("a resync", lambda: True)
    assert len(cluster.list("Job", "kubetune.io/job=restart,app.kubernetes.io/component!=preflight")) == 1
    assert len(cluster.list("Adapter")) == 1
    assert cluster.status("restart")["phase"] == "Succeeded"


def test_delete_with_both_retention_modes(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    for name, retention in (("keep", "Retain"), ("drop", "DeleteWithJob")):
        ftj_factory(name, output={"uri": f"s3://adapters/{name}/", "adapterRetention": retention})
        trainer_apply(cluster.kube, cluster, "FineTuneJob", name, {"result": result(name)})
    for name in ("keep", "drop"):
        cluster.wait_phase(name, "Succeeded")
        wait_until(f"Adapter {name}", lambda name=name: cluster.get("Adapter", name))
    for name in ("keep", "drop"):
        cluster.kube.request("DELETE", cluster.url("FineTuneJob", name))
    wait_until("both FineTuneJobs gone", lambda: not cluster.list("FineTuneJob"), timeout=30)
    wait_until("the DeleteWithJob Adapter collected", lambda: cluster.get("Adapter", "drop") is None, timeout=60)
    wait_until("the Jobs collected", lambda: not cluster.list("Job"), timeout=60)
    assert cluster.get("Adapter", "keep") is not None


def test_merge_flow_and_bad_sources(operator: Any, cluster: Any) -> None:
    ns = cluster.namespace
    create = cluster.url("Adapter")
    for name, base in (("legal", "hf://org/tiny"), ("tax", "hf://org/tiny"), ("other", "hf://org/other")):
        cluster.kube.create(create, adapter(name, ns, base))
    for name in ("legal", "tax", "other"):
        cluster.wait_phase(name, "Ready", kind="Adapter")
    merge = {"sources": [{"name": "legal", "weight": 0.6}, {"name": "tax", "weight": 0.4}], "combination": "linear"}
    cluster.kube.create(create, adapter("merged", ns, merge=merge))
    cluster.kube.create(create, adapter("mismatch", ns, merge={"sources": [{"name": "legal"}, {"name": "other"}]}))
    cluster.kube.create(create, adapter("dangling", ns, merge={"sources": [{"name": "legal"}, {"name": "nope"}]}))

    cluster.wait_phase("merged", "Merging", kind="Adapter")
    job = wait_until("the merge Job", lambda: cluster.get("Job", "merged-merge"))
    assert job["metadata"]["ownerReferences"][0]["kind"] == "Adapter"
    merge_pod = wait_until("the merge pod", lambda: next(iter(cluster.pods("merged-merge")), None))
    merger = cluster.token_client(TRAINER_SERVICE_ACCOUNT, merge_pod)
    artifact = {"uri": "s3://adapters/merged/", "format": "peft-safetensors", "sha256": SHA, "sizeBytes": 2}
    trainer_apply(merger, cluster, "Adapter", "merged", {"artifact": artifact})
    status = cluster.wait_phase("merged", "Ready", kind="Adapter")
    assert status["artifact"]["uri"] == "s3://adapters/merged/"

    failed = cluster.wait_phase("mismatch", "Failed", kind="Adapter")
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BaseModelMismatch"
    assert "hf://org/other" in ready["message"]
    pending = wait_until(
        "SourceNotFound",
        lambda: next(
            (
                c
                for c in (cluster.get("Adapter", "dangling") or {}).get("status", {}).get("conditions", [])
                if c["reason"] == "SourceNotFound"
            ),
            None,
        ),
    )
    assert "nope" in pending["message"]
    assert cluster.get("Job", "mismatch-merge") is None
    assert cluster.get("Job", "dangling-merge") is None


def test_missing_secret_waits_then_starts(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory(
        "needs-secret",
        {"kwok.kubetune.io/keep-running": "true"},
        baseModel={"uri": "hf://org/tiny", "credentialsSecretRef": {"name": "hf-token"}},
    )
    status = wait_until(
        "SecretNotFound",
        lambda: cluster.status("needs-secret").get("reason") == "SecretNotFound" and cluster.status("needs-secret"),
    )
    assert "hf-token" in status["message"]
    assert cluster.get("Job", "needs-secret-train") is None
    warnings = [e for e in cluster.list("Event") if e["reason"] == "SecretNotFound"]
    assert warnings
    assert warnings[0]["type"] == "Warning"
    cluster.kube.create(
        cluster.url("Secret"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"}, "stringData": {"token": "s3cr3t"}},
    )
    cluster.wait_phase("needs-secret", "Running")
    assert "s3cr3t" not in str(cluster.get("FineTuneJob", "needs-secret"))
    assert "s3cr3t" not in str(cluster.get("Job", "needs-secret-train"))


def test_unknown_reward_adapter_is_a_condition_until_it_exists(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    """The reward model and a cost model (an Adapter too, the CRD's CEL rules accept it) resolve into trainer.json."""
    cost = {"name": "harm", "adapterRef": {"name": "harm-cost"}, "threshold": 0.1}
    rlhf = {
        "type": "rlhf",
        "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "rm"}}, "constraints": [cost]},
    }
    ftj_factory(
        "rl",
        {"kwok.kubetune.io/keep-running": "true"},
        objective=rlhf,
        dataset={"train": {"uri": "s3://data/prompts.jsonl"}, "format": "prompt"},
    )
    status = wait_until(
        "AdapterNotFound", lambda: cluster.status("rl").get("reason") == "AdapterNotFound" and cluster.status("rl")
    )
    assert "objective.rlhf.reward.adapterRef" in status["message"]
    assert cluster.get("Job", "rl-train") is None
    cluster.kube.create(cluster.url("Adapter"), adapter("rm", cluster.namespace))
    waiting = wait_until(
        "the cost model", lambda: "harm-cost" in cluster.status("rl").get("message", "") and cluster.status("rl")
    )
    assert "objective.rlhf.constraints[0].adapterRef" in waiting["message"]
    cluster.kube.create(cluster.url("Adapter"), adapter("harm-cost", cluster.namespace))
    cluster.wait_phase("rl", "Running")
    annotations = cluster.get("Job", "rl-train")["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations[CONFIG_ANNOTATION])["adapters"] == {
        "harm-cost": "s3://adapters/harm-cost/",
        "rm": "s3://adapters/rm/",
    }

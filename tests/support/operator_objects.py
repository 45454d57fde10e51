"""Objects and writes the operator integration tests share: what the trainer writes, and Adapters made by hand."""

from __future__ import annotations

from typing import Any

from kubetune.api.resources import API_VERSION
from kubetune.api.v1alpha1.pod_contract import TRAINER_FIELD_MANAGER
from kubetune.k8s.client import APPLY, Kube

SHA = "e" * 64
DIGEST = "sha256:" + "f" * 64


def trainer_apply(client: Kube, cluster: Any, kind: str, name: str, status: dict[str, Any]) -> None:
    """What the trainer does: server-side apply of its own status fields under its own field manager."""
    url = cluster.url(kind, name, "status")
    body = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": cluster.namespace},
        "status": status,
    }
    client.request(
        "PATCH", url, query={"fieldManager": TRAINER_FIELD_MANAGER, "force": "true"}, body=body, content_type=APPLY
    )


def result(name: str, gate: bool = True, gate_message: str | None = None) -> dict[str, Any]:
    """A trainer result; `gate=False` is a run that missed its evaluation gate (with the trainer's message)."""
    written: dict[str, Any] = {
        "artifactUri": f"s3://adapters/{name}/{name}/",
        "sha256": SHA,
        "sizeBytes": 123,
        "metrics": {"heldout.perplexity": 3.5},
        "gatePassed": gate,
        "baseModelRevision": "c0ffee",
        "datasetDigest": DIGEST,
        "method": "lora",
    }
    if gate_message is not None:
        written["gateMessage"] = gate_message
    return written


def adapter(name: str, namespace: str, base: str = "hf://org/tiny", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"baseModel": {"uri": base, "revision": "c0ffee"}}
    if "merge" not in extra:
        spec["method"] = {"type": "lora", "rank": 8, "alpha": 16}
        spec["artifact"] = {"uri": f"s3://adapters/{name}/", "sha256": SHA, "sizeBytes": 1}
    spec.update(extra.pop("spec", {}))
    spec.update(extra)
    return {
        "apiVersion": API_VERSION,
        "kind": "Adapter",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"kwok.kubetune.io/run-for": "6s"}},
        "spec": spec,
    }


def finetunejob(name: str, namespace: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A small valid FineTuneJob (no PVCs, no Secret) that the fake trainer can 'run'."""
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/tiny"},
        "dataset": {"train": {"uri": "s3://data/train.jsonl"}},
        "method": {"type": "lora", "lora": {"rank": 8}},
        "objective": {"type": "sft"},
        "resources": {"gpus": 1},
        "output": {"uri": f"s3://adapters/{name}/"},
        "backoffLimit": 1,
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": body,
    }

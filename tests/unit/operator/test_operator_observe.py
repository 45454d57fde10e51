"""What one reconcile reads: with no RBAC on Secrets (the chart's default) the operator never asks for one."""

from __future__ import annotations

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.k8s.interface import Obj
from kubetune.k8s.observe import observe_finetunejob
from support.fake_kube import FakeKube

pytestmark = pytest.mark.unit


class RecordingKube(FakeKube):
    """The in-memory API server, remembering every URL read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        self.reads.append(url)
        return super().get(url, metadata_only=metadata_only)


@pytest.mark.parametrize("check_secrets", [True, False])
def test_secret_lookup_only_when_the_operator_may_read_secrets(check_secrets: bool) -> None:
    kube = RecordingKube()
    run = FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "j", "namespace": "ml"},
            "spec": {
                "baseModel": {"uri": "hf://org/model", "credentialsSecretRef": {"name": "hf-token"}},
                "dataset": {"train": {"uri": "s3://d/t.jsonl"}},
                "method": {"type": "lora", "lora": {}},
                "output": {"uri": "hf://org/adapter", "credentialsSecretRef": {"name": "hub-write"}},
                "checkpointing": {"storage": {"uri": "s3://checkpoints/j/"}},
            },
        }
    )
    observed = observe_finetunejob(kube, run, "j-train", "j", [], check_secrets=check_secrets)
    asked = {"/api/v1/namespaces/ml/secrets/hf-token", "/api/v1/namespaces/ml/secrets/hub-write"} <= set(kube.reads)
    assert asked is check_secrets
    assert observed.missing_secrets == (("hf-token", "hub-write") if check_secrets else ())

"""The trainer's progress reporting against a real kube-apiserver (Tier A), with a per-job token.

The identity is the operator's own rendered ServiceAccount/Role/RoleBinding (get/patch on one
FineTuneJob's status, by resourceNames); the token comes from the TokenRequest API, exactly what the
pod gets. A real (tiny) training run reports through it: progress and result land in status under
the `kubetune-trainer` field manager, and the same token is refused on another FineTuneJob.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.render.meta import Owner
from kubetune.render.rbac import identity
from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.client import AdminClient, condition
from kubetune_dev.controlplane.pki import write_token_kubeconfig
from kubetune_dev.controlplane.testing import Kubectl, wait_until

TESTS_ROOT = Path(__file__).resolve().parents[1]
if str(TESTS_ROOT) not in sys.path:
    sys.path.insert(0, str(TESTS_ROOT))

pytestmark = [pytest.mark.integration, pytest.mark.trainer]

REPO = TESTS_ROOT.parent
CRD_DIR = Path(os.environ.get("KUBETUNE_TEST_CRD_DIR") or REPO / "crds")
"""The CRDs to install; the override (shared with tests/integration/operator) points at a regenerated set."""
GROUP_PATH = "/apis/kubetune.io/v1alpha1"
STEPS = 6


@pytest.fixture(scope="module")
def kubetune_crds(control_plane: LocalControlPlane, kubectl: Kubectl) -> None:
    for path in sorted(CRD_DIR.glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        name = yaml.safe_load(path.read_text())["metadata"]["name"]

        def established(name: str = name) -> bool:
            crd = control_plane.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            cond = condition(crd, "Established")
            return bool(cond and cond["status"] == "True")

        wait_until(f"CRD {name} Established", established, timeout=60)


def _finetunejob(api: AdminClient, namespace: str, name: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / "objective-sft.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    return api.create(f"{GROUP_PATH}/namespaces/{namespace}/finetunejobs", doc)


def _trainer_kubeconfig(api: AdminClient, plane: LocalControlPlane, obj: dict[str, Any], path: Path) -> Path:
    meta = obj["metadata"]
    owner = Owner(kind=obj["kind"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    account = f"{meta['name']}-trainer"
    for manifest in identity(account, owner):
        kind = manifest["kind"]
        base = "/api/v1" if kind == "ServiceAccount" else "/apis/rbac.authorization.k8s.io/v1"
        plural = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings"}[kind]
        api.create(f"{base}/namespaces/{meta['namespace']}/{plural}", manifest)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
    token = api.create(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", request)
    return write_token_kubeconfig(path, plane.api_url, plane.pki.ca_cert, token["status"]["token"])


@pytest.mark.usefixtures("kubetune_crds")
def test_progress_and_result_land_in_status_with_a_per_job_token(
    control_plane: LocalControlPlane,
    api: AdminClient,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubetune.api.v1alpha1.trainer_config import StatusTarget
    from kubetune_dev.tiny import text_rows, write_jsonl
    from kubetune_trainer.report import StatusWriter

    job = _finetunejob(api, namespace, "reported")
    other = _finetunejob(api, namespace, "someone-else")
    kubeconfig = _trainer_kubeconfig(api, control_plane, job, tmp_path / "trainer.kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    started = time.monotonic()
    result = _train_reported(
        job, write_jsonl(tmp_path / "text.jsonl", text_rows()), tmp_path, monkeypatch, training={"maxSteps": STEPS}
    )

    status = api.get(f"{GROUP_PATH}/namespaces/{namespace}/finetunejobs/reported")["status"]
    progress = status["progress"]
    assert (progress["step"], progress["totalSteps"], progress["percent"]) == (STEPS, STEPS, 100)
    assert progress["loss"] > 0
    assert progress["learningRate"] > 0
    assert progress["tokensPerSecond"] > 0
    assert progress["updatedAt"].endswith("Z")
    assert status["result"]["artifactUri"] == result.artifact_uri
    assert status["result"]["sha256"] == result.sha256
    assert status["result"]["sizeBytes"] == result.size_bytes > 0
    assert status["result"]["gatePassed"] is True
    managers = {(m["manager"], m.get("subresource")) for m in job_fields(api, namespace, "reported")}
    assert ("kubetune-trainer", "status") in managers
    assert time.monotonic() - started < 120

    # the same token cannot touch another run's status
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.client.exceptions import ApiException

    objects = client.CustomObjectsApi(kube_config.new_client_from_config(config_file=str(kubeconfig)))
    body = {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "someone-else"}}
    with pytest.raises(ApiException) as refused:
        objects.patch_namespaced_custom_object_status(
            "kubetune.io",
            "v1alpha1",
            namespace,
            "finetunejobs",
            "someone-else",
            body | {"status": {"progress": {"step": 1}}},
            field_manager="kubetune-trainer",
            _content_type="application/apply-patch+yaml",
        )
    assert refused.value.status == 403
    stray = StatusWriter(StatusTarget(kind="FineTuneJob", namespace=namespace, name="someone-else"), objects.api_client)
    assert stray.apply({"progress": {"step": 1}}) is False
    untouched = api.get(f"{GROUP_PATH}/namespaces/{namespace}/finetunejobs/someone-else")
    assert "progress" not in (untouched.get("status") or {})
    assert untouched["metadata"]["uid"] == other["metadata"]["uid"]


def _train_reported(
    target: dict[str, Any], data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **blocks: Any
) -> Any:
    """One tiny training run that reports on `target` through KUBECONFIG (set by the caller), as a trainer pod would."""
    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_dev.tiny import tiny_model_dir
    from kubetune_trainer.context import Hooks
    from kubetune_trainer.pipeline import run
    from kubetune_trainer.report import attach_reporter, publish_result
    from support.trainer_job import trainer_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    meta = target["metadata"]
    wire = trainer_config(
        tmp_path,
        tiny_model_dir(),
        data,
        blocks.pop("method", "lora"),
        name=meta["name"],
        runtime={"progressIntervalSeconds": 0.05, "metricsPort": 0, "reportStatus": True},
        **blocks,
    )
    wire["target"] = {"kind": "FineTuneJob", "namespace": meta["namespace"], "name": meta["name"]}
    seen: dict[str, Any] = {}
    hooks = Hooks(before_train=[attach_reporter], after_result=[publish_result, lambda ctx, _: seen.update(ctx=ctx)])
    result = run(TrainerConfig.model_validate(wire), hooks=hooks)
    reporter = seen["ctx"].extras["reporter"]
    assert reporter.writer is not None, "the reporter must have picked up KUBECONFIG"
    assert reporter.writer.failures == 0
    return result


@pytest.mark.usefixtures("kubetune_crds")
def test_constraint_signals_land_in_live_progress(
    control_plane: LocalControlPlane, api: AdminClient, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A constrained GRPO run: each constraint's cost, multiplier and violation rate reach status.progress through
    the CRD schema (a field the schema lacked would be pruned by the API server) while it trains."""
    from kubetune_dev.tiny import prompt_rows, write_jsonl

    job = _finetunejob(api, namespace, "constrained")
    monkeypatch.setenv("KUBECONFIG", str(_trainer_kubeconfig(api, control_plane, job, tmp_path / "kubeconfig")))
    from kubetune_trainer.report import ProgressReporter

    seen: list[list[dict[str, Any]]] = []
    path = f"{GROUP_PATH}/namespaces/{namespace}/finetunejobs/constrained"
    on_log = ProgressReporter.on_log

    def read_back_each_step(self: ProgressReporter, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        on_log(self, args, state, control, **kwargs)
        if "loss" in (kwargs.get("logs") or {}):
            self.update(state, force=True)
            seen.append(api.get(path)["status"]["progress"].get("constraints", []))

    monkeypatch.setattr(ProgressReporter, "on_log", read_back_each_step)
    constraint = {"name": "no-e", "builtin": "blocked-terms", "patterns": ["e"], "threshold": 0.3}
    rlhf = {"reward": {"builtin": ["length"]}, "numGenerations": 4, "maxCompletionLength": 8}
    rlhf["constraints"] = [constraint]
    result = _train_reported(
        job,
        write_jsonl(tmp_path / "prompts.jsonl", prompt_rows()),
        tmp_path,
        monkeypatch,
        method="full",
        job={"objective": {"type": "rlhf", "beta": 0.01, "rlhf": rlhf}},
        training={"maxSteps": 3, "batchSize": 8, "learningRate": 3e-2},
    )
    assert len(seen) == 3, "read back after every step's log"
    assert all([c["name"] for c in step] == ["no-e"] for step in seen), seen
    final = api.get(path)["status"]
    for signal in ("cost", "multiplier", "violationRate"):
        assert 0 <= final["progress"]["constraints"][0][signal] == seen[-1][0][signal]
    # TRL averages logged metrics in float32, the result keeps the trainer's float64
    last = final["progress"]["constraints"][0]
    assert last["violationRate"] == pytest.approx(result.metrics["constraint.no-e.violation-rate"], rel=1e-6)
    assert last["multiplier"] == pytest.approx(final["result"]["metrics"]["constraint.no-e.multiplier"], rel=1e-6)


@pytest.mark.usefixtures("kubetune_crds")
def test_merge_mode_reports_the_artifact_on_its_adapter(
    control_plane: LocalControlPlane, api: AdminClient, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetune.api.v1alpha1.trainer_config import StatusTarget
    from kubetune_trainer.report import publish_adapter_artifact

    doc = yaml.safe_load((REPO / "examples" / "adapter-merge.yaml").read_text())
    doc["metadata"] = {"name": "merged", "namespace": namespace}
    adapter = api.create(f"{GROUP_PATH}/namespaces/{namespace}/adapters", doc)
    monkeypatch.setenv(
        "KUBECONFIG", str(_trainer_kubeconfig(api, control_plane, adapter, tmp_path / "merge.kubeconfig"))
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    artifact = {"uri": "s3://adapters/merged/", "format": "peft-safetensors", "sha256": "a" * 64, "sizeBytes": 1234}
    target = StatusTarget(kind="Adapter", namespace=namespace, name="merged")
    assert publish_adapter_artifact(target, artifact) is True
    status = api.get(f"{GROUP_PATH}/namespaces/{namespace}/adapters/merged")["status"]
    assert status["artifact"] == artifact
    # the Adapter's token has no say over FineTuneJobs
    assert publish_adapter_artifact(target.model_copy(update={"kind": "FineTuneJob"}), artifact, seconds=0) is False


def job_fields(api: AdminClient, namespace: str, name: str) -> list[dict[str, Any]]:
    managed: list[dict[str, Any]] = api.get(f"{GROUP_PATH}/namespaces/{namespace}/finetunejobs/{name}")["metadata"][
        "managedFields"
    ]
    return managed


@pytest.mark.usefixtures("kubetune_crds")
def test_a_status_string_outside_the_bmp_lands(
    control_plane: LocalControlPlane, api: AdminClient, namespace: str, tmp_path: Path
) -> None:
    """Found by fuzzing the operator's applies: JSON escapes an emoji as a surrogate pair, which the API server's
    YAML decoder refuses, so every status write of the run would fail. The trainer's writer sends YAML."""
    from kubernetes import config as kube_config

    from kubetune.api.v1alpha1.trainer_config import StatusTarget
    from kubetune_trainer.report import StatusWriter

    job = _finetunejob(api, namespace, "emoji")
    kubeconfig = _trainer_kubeconfig(api, control_plane, job, tmp_path / "trainer.kubeconfig")
    writer = StatusWriter(
        StatusTarget(kind="FineTuneJob", namespace=namespace, name="emoji"),
        kube_config.new_client_from_config(config_file=str(kubeconfig)),  # type: ignore[no-untyped-call]
    )
    summary = "🦙 step 1/2 \U0001d518"
    assert writer.apply({"progress": {"step": 1, "totalSteps": 2, "percent": 50, "summary": summary}})
    assert writer.failures == 0
    stored = api.get(f"{GROUP_PATH}/namespaces/{namespace}/finetunejobs/emoji")["status"]["progress"]
    assert (stored["step"], stored["summary"]) == (1, summary)

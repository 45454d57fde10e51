"""Render: names, identity, pod security, failure policy, Kueue, suspend, multi-node, volumes, adapters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob, TrainResult
from kubetune.api.v1alpha1.pod_contract import CONFIG_ANNOTATION, CONFIG_DIR, CONFIG_FILE
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.errors import InvalidResourceError
from kubetune.render import names
from kubetune.render.adapter import published_adapter
from kubetune.render.bundle import bundle, job_suspend, preflight_bundle, render_bundle
from kubetune.render.job import pod_failure_policy
from kubetune.render.trainer_config import resolve_runtime
from kubetune.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings()
SUPERVISED = ["python", "-m", "kubetune_trainer.launch", "--"]
SHA = "b" * 64


def ftj(name: str = "legal", **spec: Any) -> FineTuneJob:
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/model", "credentialsSecretRef": {"name": "hf-token"}},
        "dataset": {"train": {"uri": "pvc://data/train.jsonl"}},
        "method": {"type": "lora", "lora": {"rank": 8}},
        "objective": {"type": "sft"},
        "output": {"uri": "pvc://out/legal/"},
    }
    body.update(spec)
    return FineTuneJob.model_validate(
        {"metadata": {"name": name, "namespace": "ml", "uid": "u-1", "generation": 1}, "spec": body}
    )


def kinds(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("length", [1, 40, 63, 200, 253])
def test_names_are_deterministic_dns_labels(length: int) -> None:
    owner = ("a" * (length - 1) + "b")[:length]
    for name in (names.job_name(owner), names.service_name(owner), names.merge_job_name(owner)):
        assert len(name) <= 63
        assert name == name.lower()
        assert name[0].isalnum()
        assert name[-1].isalnum()
    assert len(names.job_name(owner)) <= names.JOB_NAME_MAX
    assert names.job_name(owner) == names.job_name(owner)


def test_truncated_names_do_not_collide() -> None:
    first, second = "x" * 100 + "-one", "x" * 100 + "-two"
    assert names.job_name(first) != names.job_name(second)
    assert names.label_value("hf://org/" + "m" * 80) != names.label_value("hf://org/" + "m" * 81)
    assert len(names.label_value("z" * 300)) <= 63


def test_children_in_order_with_owner_references_and_labels() -> None:
    out = bundle(ftj(), SETTINGS)
    assert [m["kind"] for m in out] == ["ServiceAccount", "Role", "RoleBinding", "Job"]
    for manifest in out:
        meta = manifest["metadata"]
        assert meta["ownerReferences"][0] == {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "name": "legal",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert meta["labels"]["kubetune.io/job"] == "legal"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubetune-operator"


def test_role_allows_only_own_status_and_get() -> None:
    role = kinds(bundle(ftj(), SETTINGS))["Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["kubetune.io"],
            "resources": ["finetunejobs/status"],
            "resourceNames": ["legal"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["kubetune.io"], "resources": ["finetunejobs"], "resourceNames": ["legal"], "verbs": ["get"]},
    ]


def test_service_account_carries_cloud_identity_and_pull_secrets() -> None:
    settings = OperatorSettings(
        service_account_annotations={"eks.amazonaws.com/role-arn": "arn:cluster", "team": "all"},
        service_account_annotations_by_namespace={"ml": {"eks.amazonaws.com/role-arn": "arn:ml"}, "x": {"a": "b"}},
        image_pull_secrets=("regcred",),
    )
    account = kinds(bundle(ftj(), settings))["ServiceAccount"]
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:ml",
        "team": "all",
        "kubetune.io/owner": "FineTuneJob/legal",
    }
    assert account["imagePullSecrets"] == [{"name": "regcred"}]
    own = ftj(serviceAccountAnnotations={"eks.amazonaws.com/role-arn": "arn:run", "kubetune.io/owner": "forged"})
    annotations = kinds(bundle(own, settings))["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == "arn:run"
    assert annotations["kubetune.io/owner"] == "FineTuneJob/legal", "the owner annotation cannot be overridden"
    plain = kinds(bundle(ftj(), SETTINGS))["ServiceAccount"]
    assert plain["metadata"]["annotations"] == {"kubetune.io/owner": "FineTuneJob/legal"}
    assert "imagePullSecrets" not in plain


def test_credentials_only_as_secret_env_never_in_trainer_json() -> None:
    out = kinds(bundle(ftj(), SETTINGS))
    config = out["Job"]["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    assert "hf-token" in config  # the reference, not a value
    env = {e["name"]: e for e in pod(out["Job"])["containers"][0]["env"]}
    assert env["KUBETUNE_MODEL_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert '"modelTokenEnv": "KUBETUNE_MODEL_TOKEN"' in config


def test_trainer_json_travels_in_the_pod_template_and_is_mounted_read_only_through_the_downward_api() -> None:
    """No ConfigMap: the pod reads trainer.json where it always did, from its own annotation."""
    job = kinds(bundle(ftj(), SETTINGS))["Job"]
    spec = pod(job)
    (volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    assert volume == {
        "name": "config",
        "downwardAPI": {
            "items": [{"path": CONFIG_FILE, "fieldRef": {"fieldPath": f"metadata.annotations['{CONFIG_ANNOTATION}']"}}]
        },
    }
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "config"]
    assert mount == {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}
    assert spec["containers"][0]["command"][-2:] == ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    config = TrainerConfig.model_validate_json(job["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION])
    assert config.target.name == "legal"
    assert CONFIG_ANNOTATION not in job["metadata"].get("annotations", {})


def test_hub_output_token_arrives_as_its_own_secret_env() -> None:
    hub = {"uri": "hf://team/legal-lora", "credentialsSecretRef": {"name": "hub-write", "key": "hf"}}
    out = kinds(bundle(ftj(output=hub, checkpointing={"storage": {"uri": "pvc://checkpoints/legal/"}}), SETTINGS))
    env = {e["name"]: e for e in pod(out["Job"])["containers"][0]["env"]}
    assert env["KUBETUNE_OUTPUT_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hub-write", "key": "hf"}}
    assert env["KUBETUNE_MODEL_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert (
        '"outputTokenEnv": "KUBETUNE_OUTPUT_TOKEN"'
        in out["Job"]["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    )


def test_mlflow_credentials_are_optional_secret_keys_and_tensorboard_claims_writable() -> None:
    tracking = {
        "mlflow": {"trackingUri": "https://mlflow.example", "credentialsSecretRef": {"name": "mlflow-auth"}},
        "tensorboard": {"logDir": "pvc://runs/tb"},
    }
    out = kinds(bundle(ftj(tracking=tracking), SETTINGS))
    spec = pod(out["Job"])
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    for key in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[key]["valueFrom"] == {"secretKeyRef": {"name": "mlflow-auth", "key": key, "optional": True}}
    assert (
        '"trackingUri": "https://mlflow.example"'
        in out["Job"]["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    )
    claims = {v["persistentVolumeClaim"]["claimName"]: v for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert {name: c["persistentVolumeClaim"]["readOnly"] for name, c in claims.items()} == {
        "data": True,
        "out": False,
        "runs": False,
    }
    assert not any(
        e["name"].startswith("MLFLOW") for e in pod(kinds(bundle(ftj(), SETTINGS))["Job"])["containers"][0]["env"]
    )


def test_restricted_pod_security() -> None:
    spec = pod(kinds(bundle(ftj(), SETTINGS))["Job"])
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/dev/shm", "/scratch", "/tmp", "/var/cache/kubetune", "/etc/kubetune"} <= mounts
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert spec["restartPolicy"] == "Never"


def test_pod_failure_policy_ignores_disruption_and_sigterm_and_fails_on_config_error() -> None:
    job = kinds(bundle(ftj(backoffLimit=2, activeDeadlineSeconds=600), SETTINGS))["Job"]
    assert job["spec"]["podFailurePolicy"] == pod_failure_policy()
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "Ignore"
    assert rules[1]["onExitCodes"] == {"containerName": "trainer", "operator": "In", "values": [143]}
    assert rules[2]["action"] == "FailJob"
    assert rules[2]["onExitCodes"]["values"] == [78]
    assert rules[2]["onExitCodes"]["containerName"] == "trainer"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == SETTINGS.termination_grace_seconds


def trainer_json(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(
        kinds(manifests)["Job"]["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    )
    return config


def claims(manifests: list[dict[str, Any]]) -> dict[str, bool]:
    """claim -> readOnly of the trainer pod's PVC volumes."""
    volumes = pod(kinds(manifests)["Job"])["volumes"]
    return {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in volumes
        if "persistentVolumeClaim" in v
    }


def test_checkpoints_go_to_durable_storage_under_the_run_uid() -> None:
    default = bundle(ftj(output={"uri": "pvc://models/out"}), SETTINGS)
    assert trainer_json(default)["runtime"]["checkpointUri"] == "pvc://models/out/.checkpoints/u-1/"
    assert trainer_json(default)["runtime"]["terminationGraceSeconds"] == SETTINGS.termination_grace_seconds
    assert claims(default) == {"data": True, "models": False}

    chosen = bundle(
        ftj(output={"uri": "pvc://models/out"}, checkpointing={"storage": {"uri": "pvc://scratch-claim/ckpt"}}),
        SETTINGS,
    )
    assert trainer_json(chosen)["runtime"]["checkpointUri"] == "pvc://scratch-claim/ckpt/u-1/"
    assert claims(chosen) == {"data": True, "models": False, "scratch-claim": False}, "output and checkpoints written"

    on_s3 = bundle(ftj(checkpointing={"storage": {"uri": "s3://ckpt-bucket/runs/"}}), SETTINGS)
    assert trainer_json(on_s3)["runtime"]["checkpointUri"] == "s3://ckpt-bucket/runs/u-1/"


def test_without_a_uid_checkpoints_stay_in_the_pod() -> None:
    document = ftj()
    document = document.model_copy(update={"metadata": document.metadata.model_copy(update={"uid": None})})
    assert trainer_json(bundle(document, SETTINGS))["runtime"].get("checkpointUri") is None


def test_gpus_product_tolerations_priority() -> None:
    job = kinds(
        bundle(
            ftj(
                resources={
                    "gpus": 4,
                    "gpuProduct": "NVIDIA-H100",
                    "nodeSelector": {"pool": "train"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "priorityClassName": "high",
                    "memory": "64Gi",
                }
            ),
            SETTINGS,
        )
    )["Job"]
    spec = pod(job)
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "4"}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100", "pool": "train"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["priorityClassName"] == "high"
    assert spec["containers"][0]["command"][:7] == [
        *SUPERVISED,
        "torchrun",
        "--standalone",
        "--nnodes=1",
    ], "a launcher runs under the wrapper that maps SIGTERM and exit codes"


def test_pvc_uris_become_volumes_and_only_output_is_writable() -> None:
    spec = pod(kinds(bundle(ftj(), SETTINGS))["Job"])
    claims = {v["persistentVolumeClaim"]["claimName"]: v for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert set(claims) == {"data", "out"}
    assert claims["data"]["persistentVolumeClaim"]["readOnly"] is True
    assert claims["out"]["persistentVolumeClaim"]["readOnly"] is False
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/pvc/data"]["readOnly"] is True


def test_multi_node_indexed_job_with_headless_service() -> None:
    out = kinds(bundle(ftj(resources={"gpus": 8, "nodes": 3}), SETTINGS))
    service, job = out["Service"], out["Job"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert job["spec"]["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}, "rank 0's success is the run's"
    spec = pod(job)
    assert spec["subdomain"] == service["metadata"]["name"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    command = spec["containers"][0]["command"]
    assert command[:7] == [*SUPERVISED, "torchrun", "--nnodes=3", "--nproc-per-node=8"]
    assert "--node-rank=$(NODE_RANK)" in command


@pytest.mark.parametrize(
    ("method", "gpus", "nodes", "strategy", "expected"),
    [
        ({"type": "lora", "lora": {}}, 1, 1, "auto", ("single", "python", 1)),
        ({"type": "lora", "lora": {}}, 0, 1, "auto", ("single", "python", 1)),
        ({"type": "lora", "lora": {}}, 4, 1, "auto", ("ddp", "torchrun", 4)),
        ({"type": "full"}, 8, 1, "auto", ("deepspeed", "deepspeed", 8)),
        ({"type": "full"}, 8, 2, "auto", ("deepspeed", "torchrun", 16)),
        ({"type": "lora", "lora": {}}, 1, 1, "ddp", ("single", "python", 1)),
        ({"type": "lora", "lora": {}}, 2, 1, "fsdp", ("fsdp", "torchrun", 2)),
    ],
)
def test_strategy_and_launcher(
    method: dict[str, Any], gpus: int, nodes: int, strategy: str, expected: tuple[str, str, int]
) -> None:
    job = ftj(method=method, resources={"gpus": gpus, "nodes": nodes}, distributed={"strategy": strategy})
    runtime = resolve_runtime(job.spec, SETTINGS)
    assert (runtime.strategy, runtime.launcher, runtime.world_size) == expected


def test_kueue_created_suspended_then_follows_kueue() -> None:
    queued = ftj(resources={"queueName": "team-a"})
    job = kinds(bundle(queued, SETTINGS))["Job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    assert job_suspend(queued, None) is True
    assert job_suspend(queued, False) is False  # Kueue admitted it: do not fight Kueue
    assert job_suspend(queued, True) is True


def test_spec_suspend_suspends_and_resumes() -> None:
    assert kinds(bundle(ftj(suspend=True), SETTINGS))["Job"]["spec"]["suspend"] is True
    assert kinds(bundle(ftj(suspend=False), SETTINGS, current_suspend=True))["Job"]["spec"]["suspend"] is False
    assert job_suspend(ftj(suspend=True, resources={"queueName": "q"}), False) is True


def test_annotation_prefixes_propagate_to_pods_only() -> None:
    job_model = ftj().model_copy(
        update={
            "metadata": ftj().metadata.model_copy(
                update={"annotations": {"kwok.kubetune.io/exit-code": "1", "other": "x"}}
            )
        }
    )
    settings = OperatorSettings(pod_annotation_prefixes=("kwok.kubetune.io/",))
    template = kinds(bundle(job_model, settings))["Job"]["spec"]["template"]["metadata"]["annotations"]
    assert template["kwok.kubetune.io/exit-code"] == "1"
    assert "other" not in template
    assert template["kubetune.io/owner"] == "FineTuneJob/legal"
    plain = kinds(bundle(job_model, SETTINGS))["Job"]["spec"]["template"]["metadata"]["annotations"]
    assert "kwok.kubetune.io/exit-code" not in plain


def test_render_bundle_rejects_invalid_documents_with_messages() -> None:
    with pytest.raises(InvalidResourceError) as error:
        render_bundle({"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "spec": {}}, SETTINGS)
    assert "spec.baseModel" in str(error.value)


def test_render_without_uid_has_no_owner_references() -> None:
    document = {"metadata": {"name": "x", "namespace": "ml"}, "spec": ftj().spec.to_wire()}
    assert all("ownerReferences" not in m["metadata"] for m in render_bundle(document, SETTINGS))


@pytest.mark.parametrize(("retention", "owned"), [("Retain", False), ("DeleteWithJob", True)])
def test_published_adapter_lineage_and_retention(retention: str, owned: bool) -> None:
    job = ftj(
        output={"uri": "s3://b/legal/", "adapterName": "legal-v1", "adapterRetention": retention},
        method={"type": "qlora", "lora": {"rank": 32, "alpha": 16, "targetModules": ["q_proj"]}},
    )
    result = TrainResult(
        artifact_uri="s3://b/legal/legal-v1/",
        sha256=SHA,
        size_bytes=42,
        metrics={"heldout.perplexity": 3.1},
        base_model_revision="deadbeef",
        dataset_digest="sha256:" + "c" * 64,
        gate_passed=True,
    )
    adapter = published_adapter(job, result)
    assert adapter["metadata"]["name"] == "legal-v1"
    assert ("ownerReferences" in adapter["metadata"]) is owned
    assert adapter["metadata"]["labels"]["kubetune.io/base-model"].startswith("org-model-")
    spec = adapter["spec"]
    assert spec["baseModel"] == {"uri": "hf://org/model", "revision": "deadbeef"}
    assert spec["method"]["type"] == "qlora"
    assert spec["method"]["rank"] == 32
    assert spec["method"]["quantization"]["bits"] == 4
    assert spec["artifact"] == {
        "uri": "s3://b/legal/legal-v1/",
        "format": "peft-safetensors",
        "sha256": SHA,
        "sizeBytes": 42,
    }
    assert spec["source"] == {
        "fineTuneJob": {"name": "legal", "uid": "u-1"},
        "datasetDigest": "sha256:" + "c" * 64,
        "objective": "sft",
    }
    assert spec["metrics"] == {"heldout.perplexity": 3.1}
    assert spec["gate"] == {"passed": True, "publishUnvalidated": False}


def test_published_adapter_records_the_constitution_behind_synthesised_data() -> None:
    principles = ["Be harmless.", "Be honest."]
    job = ftj(
        objective={"type": "dpo"},
        dataset={
            "train": {"uri": "pvc://data/prompts.jsonl"},
            "format": "prompt",
            "constitution": {"principles": principles},
        },
    )
    adapter = published_adapter(job, TrainResult(artifact_uri="pvc://out/legal/legal/", sha256=SHA, size_bytes=1))
    assert adapter["spec"]["source"]["constitution"] == {"principles": principles, "model": "hf://org/model"}
    writer = ftj(
        objective={"type": "sft"},
        dataset={
            "train": {"uri": "pvc://data/prompts.jsonl"},
            "format": "prompt",
            "constitution": {"principles": principles, "model": "hf://org/critic"},
        },
    )
    lineage = published_adapter(writer, TrainResult(artifact_uri="x", sha256=SHA, size_bytes=1))["spec"]["source"]
    assert lineage["constitution"]["model"] == "hf://org/critic"
    by_adapter = ftj(
        objective={"type": "sft"},
        dataset={
            "train": {"uri": "pvc://data/prompts.jsonl"},
            "format": "prompt",
            "constitution": {"principles": principles, "adapterRef": {"name": "critic"}},
        },
    )
    source = published_adapter(by_adapter, TrainResult(artifact_uri="x", sha256=SHA, size_bytes=1))["spec"]["source"]
    assert source["constitution"]["model"] == "adapter:critic"
    assert (
        "constitution"
        not in published_adapter(ftj(), TrainResult(artifact_uri="x", sha256=SHA, size_bytes=1))["spec"]["source"]
    )


def test_resolved_adapters_reach_the_trainer_config_and_their_claims_are_mounted() -> None:
    rlhf = {"type": "rlhf", "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "rm"}}}}
    model = ftj(objective=rlhf, dataset={"train": {"uri": "s3://d/p.jsonl"}, "format": "prompt"})
    adapters = {"rm": "pvc://models/rm/"}
    children = bundle(model, SETTINGS, adapters=adapters)
    container = children[-1]["spec"]["template"]["spec"]["containers"][0]
    assert trainer_json(children)["adapters"] == adapters
    assert {"name": "pvc-models", "mountPath": "/mnt/pvc/models", "readOnly": True} in container["volumeMounts"]
    preflight = preflight_bundle(model, SETTINGS, adapters)
    assert trainer_json(preflight) == trainer_json(children), "the preflight checks the very same document"
    assert "adapters" not in trainer_json(bundle(model, SETTINGS)), "kubetune render of a file resolves none"


def test_published_adapter_records_a_failed_gate_and_the_opt_in() -> None:
    gate = {"suites": [{"name": "heldout", "metric": "perplexity"}], "gate": {"minScores": {"heldout": 9.0}}}
    result = TrainResult(
        artifact_uri="s3://b/j/", sha256=SHA, size_bytes=1, gate_passed=False, gate_message="gate failed: too high"
    )
    rejected = published_adapter(ftj(evaluation=gate), result)["spec"]["gate"]
    assert rejected == {"passed": False, "message": "gate failed: too high", "publishUnvalidated": False}
    opted = {**gate, "gate": {**gate["gate"], "publishUnvalidated": True}}
    assert published_adapter(ftj(evaluation=opted), result)["spec"]["gate"]["publishUnvalidated"] is True

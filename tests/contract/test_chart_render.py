"""charts/kubetune as `helm template` renders it: values are validated by values.schema.json, the knobs a
platform team expects reach the objects, monitoring objects follow the cluster's APIs, and the operator's
settings, RBAC and the trainer pods the operator renders line up with the chart. Needs `make binaries` (helm).

Installing on the real apiserver: tests/integration/test_chart.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.v1alpha1 import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import TRAINER_SERVICE_ACCOUNT
from kubetune.decisions.trainer_policy import policy_problem
from kubetune.render.bundle import bundle
from kubetune.render.rbac import namespace_identity
from kubetune.settings import ENV_PREFIX, OperatorSettings
from kubetune_dev.chart import CHART, MONITORING_VALUES, PROMETHEUS_OPERATOR_APIS, ChartError, helm_args, only, template
from kubetune_dev.controlplane.paths import REPO_ROOT, find_binaries

pytestmark = pytest.mark.contract

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def helm() -> Path:
    return find_binaries().helm


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


KOPF_FIELD_REFS = {"POD_ID": "metadata.name"}
"""Variables kopf itself reads, from the pod's own fields: its peering identity is the pod's name."""


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The operator's literal settings; `field_refs` checks the ones taken from the pod."""
    return {e["name"]: e["value"] for e in operator_container(objects)["env"] if "valueFrom" not in e}


def field_refs(objects: list[dict[str, Any]]) -> dict[str, str]:
    entries = operator_container(objects)["env"]
    return {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in entries if "valueFrom" in e}


@pytest.mark.parametrize("values", [None, MONITORING_VALUES])
def test_helm_lint_strict(helm: Path, values: Path | None) -> None:
    args = helm_args([values] if values else [])
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "0"}, "at '/replicaCount': minimum: got 0, want 1"),
        ({"replicas": "3"}, "additional properties 'replicas' not allowed"),
        ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy'"),
        ({"watchNamespaces": "{Team_A}"}, "at '/watchNamespaces/0'"),
        ({"monitoring.prometheusRule.lossDivergenceFactor": "1"}, "lossDivergenceFactor"),
        ({"monitoring.serviceMonitor.interval": "often"}, "at '/monitoring/serviceMonitor/interval'"),
        ({"trainerServiceAccount.imagePullSecrets[0].name": "x"}, "at '/trainerServiceAccount/imagePullSecrets/0'"),
        ({"podAnnotations.prometheus\\.io/scrape": "false"}, "got boolean, want string"),
    ],
)
def test_schema_rejects_bad_values_with_the_path(helm: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(ChartError, match="values don't meet the specifications") as error:
        template(helm, values=values)
    assert message in str(error.value)


def test_pod_knobs_reach_the_deployment(helm: Path) -> None:
    objects = template(
        helm,
        values={
            "imagePullSecrets[0].name": "regcred",
            "podAnnotations.example\\.com/owner": "ml-platform",
            "podLabels.team": "ml-platform",
            "podLabels.app\\.kubernetes\\.io/name": "hijacked",
            "nodeSelector.pool": "system",
            "tolerations[0].key": "dedicated",
            "tolerations[0].operator": "Exists",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
            ".matchExpressions[0].key": "pool",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
            ".matchExpressions[0].operator": "Exists",
            "resources.limits.memory": "1Gi",
            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn": "arn:operator",
        },
    )
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}
    assert pod["metadata"]["labels"]["team"] == "ml-platform"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "kubetune", "chart labels win over podLabels"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["nodeSelector"] == {"pool": "system"}
    assert pod["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert "nodeAffinity" in pod["spec"]["affinity"]
    assert operator_container(objects)["resources"]["limits"]["memory"] == "1Gi"
    account = only(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:operator"}


@pytest.mark.parametrize(("replicas", "rendered"), [("2", True), ("1", False)])
def test_disruption_budget_keeps_a_replica(helm: Path, replicas: str, rendered: bool) -> None:
    objects = template(helm, values={"replicaCount": replicas})
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert bool(budgets) is rendered
    if budgets:
        selector = budgets[0]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
        assert budgets[0]["spec"]["maxUnavailable"] == 1


def test_every_setting_the_chart_passes_is_an_operator_setting(helm: Path) -> None:
    objects = template(
        helm,
        values={
            "modelCacheClaim": "cache",
            "storageSecretName": "s3",
            "trainerServiceAccount.annotations.iam\\.gke\\.io/gcp-service-account": "t@p.iam.gserviceaccount.com",
            "trainerServiceAccount.byNamespace.team-a.eks\\.amazonaws\\.com/role-arn": "arn:team-a",
            "trainerServiceAccount.imagePullSecrets[0]": "regcred",
        },
    )
    variables = env(objects)
    assert field_refs(objects) == KOPF_FIELD_REFS
    fields = {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}
    assert set(variables) <= fields, set(variables) - fields
    settings = OperatorSettings.from_env(variables)
    assert settings.check_secrets is False
    assert settings.service_account_annotations_for("team-a") == {
        "iam.gke.io/gcp-service-account": "t@p.iam.gserviceaccount.com",
        "eks.amazonaws.com/role-arn": "arn:team-a",
    }
    assert settings.image_pull_secrets == ("regcred",)
    assert (settings.model_cache_claim, settings.storage_secret_name) == ("cache", "s3")
    assert settings.lifecycle_events is False, "the chart's default: Warning Events only"
    loud = OperatorSettings.from_env(env(template(helm, values={"lifecycleEvents": "true"})))
    assert loud.lifecycle_events is True


@pytest.mark.parametrize("watch", [None, "{ml,team-b}"])
def test_operator_holds_no_secret_permission(helm: Path, watch: str | None) -> None:
    objects = template(helm, values={"watchNamespaces": watch} if watch else None)
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
            assert "*" not in rule["resources"] + rule["verbs"], role["metadata"]["name"]


def test_monitoring_objects_follow_the_apis_the_cluster_serves(helm: Path) -> None:
    bare = template(helm, values_files=[MONITORING_VALUES])
    assert not {o["kind"] for o in bare} & MONITORING_KINDS
    served = template(helm, values_files=[MONITORING_VALUES], api_versions=PROMETHEUS_OPERATOR_APIS)
    for kind in MONITORING_KINDS:
        assert only(served, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not {o["kind"] for o in template(helm, api_versions=PROMETHEUS_OPERATOR_APIS)} & MONITORING_KINDS


def test_service_monitor_selects_the_metrics_service(helm: Path) -> None:
    objects = template(
        helm,
        values={"monitoring.serviceMonitor.enabled": "true", "monitoring.serviceMonitor.labels.release": "prom"},
        api_versions=PROMETHEUS_OPERATOR_APIS,
    )
    monitor, service = only(objects, "ServiceMonitor"), only(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_pod_monitor_selects_the_trainer_pods_the_operator_renders(helm: Path) -> None:
    objects = template(helm, values={"monitoring.podMonitor.enabled": "true"}, api_versions=PROMETHEUS_OPERATOR_APIS)
    monitor = only(objects, "PodMonitor")
    document = yaml.safe_load((REPO_ROOT / "examples" / "method-lora.yaml").read_text())
    document["metadata"]["uid"] = "u-1"
    job = next(m for m in bundle(FineTuneJob.model_validate(document), OperatorSettings()) if m["kind"] == "Job")
    pod = job["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert ports[endpoint["port"]] == 9400
    relabel = {r.get("targetLabel"): r for r in endpoint["relabelings"]}
    job_label = relabel["finetunejob"]["sourceLabels"][0].removeprefix("__meta_kubernetes_pod_label_")
    assert job_label in {k.replace(".", "_").replace("/", "_") for k in pod["metadata"]["labels"]}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    scoped = template(
        helm,
        values={"monitoring.podMonitor.enabled": "true", "watchNamespaces": "{ml}"},
        api_versions=PROMETHEUS_OPERATOR_APIS,
    )
    assert only(scoped, "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}


def test_dashboard_json_is_valid_grafana_json() -> None:
    dashboard = json.loads((CHART / "dashboards" / "kubetune.json").read_text())
    assert dashboard["uid"] == "kubetune-overview"
    ids = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "two panels at the same grid position"


@pytest.mark.parametrize("release", ["kubetune", "ml"])
def test_the_trainer_policy_is_the_one_the_operator_looks_for(helm: Path, release: str) -> None:
    objects = template(helm, release=release)
    policy, binding = only(objects, "ValidatingAdmissionPolicy"), only(objects, "ValidatingAdmissionPolicyBinding")
    name = policy["metadata"]["name"]
    assert binding["metadata"]["name"] == binding["spec"]["policyName"] == name
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy_problem(name, policy, binding) is None
    settings = OperatorSettings.from_env(env(objects))
    assert settings.trainer_status_policy == name
    if release == "kubetune":
        assert OperatorSettings().trainer_status_policy == name, "an operator run without the chart finds it too"
    cluster_rules = [r for o in objects if o["kind"] == "ClusterRole" for r in o["rules"]]
    (check,) = [r for r in cluster_rules if "validatingadmissionpolicies" in r["resources"]]
    assert (check["resourceNames"], check["verbs"]) == ([name], ["get"])
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert f"':{TRAINER_SERVICE_ACCOUNT}'" in spec["matchConditions"][0]["expression"]
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == set(namespace_identity("ns", settings)[1]["rules"][0]["resources"])


@pytest.mark.parametrize("watch", [None, "{ml}"])
def test_the_operator_holds_every_permission_it_grants_the_trainer(helm: Path, watch: str | None) -> None:
    """RBAC lets the operator create the trainer's Role without `escalate` only if it holds the same permissions."""
    objects = template(helm, values={"watchNamespaces": watch} if watch else None)
    operator_rules = [r for o in objects if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]]
    settings = OperatorSettings()
    granted = [*namespace_identity("ml", settings)[1]["rules"], *bundle(ftj_for_rbac(), settings)[1]["rules"]]
    for rule in granted:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                assert any(
                    rule["apiGroups"][0] in held["apiGroups"]
                    and resource in held["resources"]
                    and verb in held["verbs"]
                    and "resourceNames" not in held
                    for held in operator_rules
                ), f"the operator cannot grant {verb} {resource}"
    assert not any(verb in ("bind", "escalate") for held in operator_rules for verb in held["verbs"])


def ftj_for_rbac() -> FineTuneJob:
    spec = {
        "baseModel": {"uri": "hf://org/m"},
        "dataset": {"train": {"uri": "s3://d/t.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "output": {"uri": "s3://o/"},
    }
    return FineTuneJob.model_validate({"metadata": {"name": "r", "namespace": "ml"}, "spec": spec})

"""The chart's alerts and dashboard against promtool and the metrics kubetune really exports.

`promtool test rules` runs tests/contract/alerts/*.test.yaml against the PrometheusRule as helm renders it;
every PromQL expression of the rules and the dashboard parses (promtool) and names only series in the
operator's and the trainer's registries. Needs `make binaries` (helm, promtool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_dev.chart import CHART, MONITORING_VALUES, PROMETHEUS_OPERATOR_APIS, only, template
from kubetune_dev.controlplane.paths import find_binaries, find_promtool
from kubetune_dev.monitoring import (
    check_expressions_parse,
    dashboard_expressions,
    kubetune_series,
    metric_names,
    rule_expressions,
    unknown_names,
)

pytestmark = pytest.mark.contract

ALERT_TESTS = sorted((Path(__file__).parent / "alerts").glob("*.test.yaml"))
DASHBOARD = json.loads((CHART / "dashboards" / "kubetune.json").read_text())


@pytest.fixture(scope="module")
def helm() -> Path:
    return find_binaries().helm


@pytest.fixture(scope="module")
def promtool() -> Path:
    return find_promtool()


@pytest.fixture(scope="module")
def rules_spec(helm: Path) -> dict[str, Any]:
    """The PrometheusRule's spec as released: release and namespace `kubetune`, default thresholds."""
    objects = template(helm, values_files=[MONITORING_VALUES], api_versions=PROMETHEUS_OPERATOR_APIS)
    spec: dict[str, Any] = only(objects, "PrometheusRule")["spec"]
    return spec


def promtool_run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_rendered_rules_pass_promtool_check(promtool: Path, rules_spec: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules_spec))
    result = promtool_run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


@pytest.mark.parametrize("case", ALERT_TESTS, ids=[p.name for p in ALERT_TESTS])
def test_alerts_pass_their_promtool_unit_tests(
    promtool: Path, rules_spec: dict[str, Any], tmp_path: Path, case: Path
) -> None:
    spec = json.loads(json.dumps(rules_spec))
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("description", None)  # prose; summaries are compared
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(case, tmp_path / case.name)
    result = promtool_run(promtool, "test", "rules", case.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested(rules_spec: dict[str, Any]) -> None:
    tested = {
        check["alertname"]
        for path in ALERT_TESTS
        for case in yaml.safe_load(path.read_text())["tests"]
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    alerts = {rule["alert"] for group in rules_spec["groups"] for rule in group["rules"]}
    assert alerts == {
        "KubetuneFineTuneJobFailed",
        "KubetuneFineTuneJobStuck",
        "KubetuneTrainingLossNaN",
        "KubetuneTrainingLossDiverging",
        "KubetuneFineTuneJobWaitingTooLong",
        "KubetuneOperatorReconcileErrors",
        "KubetuneOperatorDown",
    }
    assert tested == alerts


def test_every_expression_parses(promtool: Path, rules_spec: dict[str, Any]) -> None:
    expressions = rule_expressions(rules_spec) + dashboard_expressions(DASHBOARD)
    assert len(expressions) > 20
    assert f"SUCCESS: {len(expressions)} rules found" in check_expressions_parse(promtool, expressions)


def test_expressions_name_only_series_the_registries_export(rules_spec: dict[str, Any]) -> None:
    expressions = rule_expressions(rules_spec) + dashboard_expressions(DASHBOARD)
    assert unknown_names(expressions, kubetune_series()) == {}


def test_a_misspelt_series_is_caught() -> None:
    assert unknown_names(["rate(kubetune_reconcile_error_total[5m])"], kubetune_series()) == {
        "rate(kubetune_reconcile_error_total[5m])": {"kubetune_reconcile_error_total"}
    }


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ('sum by (reason) (rate(a_total{reason="x", b="y"}[5m])) > 1e-3', {"a_total"}),
        ("a unless on (job) b offset 15m or c:recorded", {"a", "b", "c:recorded"}),
        ('label_replace(up, "dst", "$1", "src", "(.*)") + ignoring (x) group_left (y) d', {"up", "d"}),
        ("abs(a) == +Inf and b != NaN", {"a", "b"}),
        ("max_over_time(deriv(a[15m])[1h:5m]) @ start()", {"a"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names


def test_dashboard_covers_jobs_training_queue_and_operator() -> None:
    expressions = " ".join(dashboard_expressions(DASHBOARD))
    for series in (
        "kubetune_finetunejobs",
        "kubetune_trainer_step",
        "kubetune_trainer_total_steps",
        "kubetune_trainer_loss",
        "kubetune_trainer_tokens_total",
        "kubetune_trainer_gpu_memory_bytes",
        "kubetune_finetunejobs_oldest_creation_timestamp_seconds",
        "kubetune_finetunejob_time_to_running_seconds_bucket",
        "kubetune_reconcile_duration_seconds_bucket",
        "kubetune_reconcile_errors_total",
    ):
        assert series in expressions, f"no dashboard panel shows {series}"
    titles = {p["title"] for p in DASHBOARD["panels"]}
    assert {"FineTuneJobs by phase", "Progress", "ETA", "Training loss", "Tokens per second"} <= titles
    assert {"GPU memory allocated", "Queue wait: longest current wait", "Reconcile latency"} <= titles


def test_dashboard_configmap_carries_the_sidecar_label(helm: Path) -> None:
    configmap = only(template(helm, values_files=[MONITORING_VALUES]), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert json.loads(configmap["data"]["kubetune.json"]) == DASHBOARD
    custom = template(
        helm,
        values={
            "monitoring.grafanaDashboard.enabled": "true",
            "monitoring.grafanaDashboard.labels.grafana_dashboard": "null",
            "monitoring.grafanaDashboard.labels.dashboards": "ml",
            "monitoring.grafanaDashboard.namespace": "monitoring",
        },
    )
    labels = only(custom, "ConfigMap")["metadata"]["labels"]
    assert labels["dashboards"] == "ml"
    assert "grafana_dashboard" not in labels
    assert only(custom, "ConfigMap")["metadata"]["namespace"] == "monitoring"

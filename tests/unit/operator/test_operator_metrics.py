"""Operator metrics and settings: low-cardinality series, and settings read from an explicit mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubetune import metrics
from kubetune.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_metrics_count_transitions_without_object_labels() -> None:
    common = {"namespace": "m-ns", "method": "lora", "created": "2026-11-29T11:00:00Z", "completion_time": None}
    metrics.record_finetunejob(
        name="a", before=None, after="Running", reason="Training", start_time="2026-11-29T11:01:00Z", **common
    )
    metrics.record_finetunejob(
        name="a", before="Running", after="Running", reason="Training", start_time="2026-11-29T11:01:00Z", **common
    )
    metrics.record_finetunejob(
        name="b",
        before="Running",
        after="Failed",
        reason="OOMKilled",
        start_time=None,
        **{**common, "completion_time": "2026-11-29T11:10:00Z"},
    )
    value = metrics.REGISTRY.get_sample_value
    assert value("kubetune_finetunejobs", {"namespace": "m-ns", "phase": "Running"}) == 1
    assert value("kubetune_finetunejobs", {"namespace": "m-ns", "phase": "Failed"}) == 1
    assert value("kubetune_finetunejob_failures_total", {"reason": "OOMKilled"}) >= 1
    assert value("kubetune_finetunejob_time_to_running_seconds_sum", {"method": "lora"}) >= 60
    metrics.record_finetunejob(
        name="c", before=None, after="Running", reason="Training", start_time=None, **{**common, "created": None}
    )
    oldest = "kubetune_finetunejobs_oldest_creation_timestamp_seconds"
    created = datetime(2026, 11, 29, 11, tzinfo=UTC).timestamp()
    assert value(oldest, {"namespace": "m-ns", "phase": "Running"}) == created  # c has no timestamp: ignored
    metrics.FINETUNEJOB_PHASES.set("m-ns", "c", None)
    metrics.FINETUNEJOB_PHASES.set("m-ns", "a", None)
    assert value(oldest, {"namespace": "m-ns", "phase": "Running"}) is None
    assert value("kubetune_finetunejobs", {"namespace": "m-ns", "phase": "Running"}) is None
    exported = "".join(str(m) for m in metrics.REGISTRY.collect())
    assert "'name':" not in exported


def test_settings_from_env_mapping() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_TRAINER_IMAGE": "r/t:1",
            "KUBETUNE_ERROR_BACKOFFS": "1, 2",
            "KUBETUNE_METRICS_PORT": "0",
            "KUBETUNE_POD_ANNOTATION_PREFIXES": "a/,b/",
            "UNRELATED": "x",
        }
    )
    assert settings.trainer_image == "r/t:1"
    assert settings.error_backoffs == (1.0, 2.0)
    assert settings.metrics_port == 0
    assert settings.pod_annotation_prefixes == ("a/", "b/")
    with pytest.raises(ValueError, match="metrics_port"):
        OperatorSettings.from_env({"KUBETUNE_METRICS_PORT": "-1"})


def test_service_account_settings_from_json_env() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS": '{"iam.gke.io/gcp-service-account": "t@p.iam.gserviceaccount.com"}',
            "KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS_BY_NAMESPACE": '{"ml": {"iam.gke.io/gcp-service-account": "ml@p"}}',
            "KUBETUNE_IMAGE_PULL_SECRETS": "regcred, other",
            "KUBETUNE_CHECK_SECRETS": "false",
        }
    )
    assert settings.service_account_annotations_for("ml") == {"iam.gke.io/gcp-service-account": "ml@p"}
    assert settings.service_account_annotations_for("b") == {
        "iam.gke.io/gcp-service-account": "t@p.iam.gserviceaccount.com"
    }
    assert settings.image_pull_secrets == ("regcred", "other")
    assert settings.check_secrets is False
    with pytest.raises(ValueError, match="KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS must be a JSON object"):
        OperatorSettings.from_env({"KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS": "role=arn"})

"""Operator metrics and settings: low-cardinality series, and settings read from an explicit mapping."""

from __future__ import annotations

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
    metrics.FINETUNEJOB_PHASES.set("m-ns", "a", None)
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

"""kopf glue for FineTuneJobs: every trigger runs the same level-based reconcile."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from kubetune import metrics
from kubetune.handlers.startup import ENV_SETTINGS, Runtime
from kubetune.k8s.client import KubeError
from kubetune.k8s.sync import sync_finetunejob

FTJ = ("kubetune.io", "v1alpha1", "finetunejobs")
log = logging.getLogger(__name__)


def reconcile(runtime: Runtime, namespace: str, name: str) -> None:
    """Serialized per object; API errors become a kopf retry after the configured backoff."""
    started = time.monotonic()
    metrics.RECONCILES.labels(kind="FineTuneJob").inc()
    try:
        with runtime.locks.lock("FineTuneJob", namespace, name):
            outcome = sync_finetunejob(runtime.kube, namespace, name, runtime.settings, datetime.now(UTC))
    except KubeError as error:
        metrics.RECONCILE_ERRORS.labels(kind="FineTuneJob").inc()
        raise kopf.TemporaryError(
            f"reconcile of {namespace}/{name}: {error}", delay=runtime.settings.handler_backoff
        ) from None
    finally:
        metrics.RECONCILE_SECONDS.labels(kind="FineTuneJob").observe(time.monotonic() - started)
    if outcome is not None:
        metrics.record_finetunejob(
            namespace=outcome.namespace,
            name=outcome.name,
            method=outcome.method,
            before=outcome.before,
            after=outcome.after,
            reason=outcome.reason,
            created=outcome.created,
            start_time=outcome.start_time,
            completion_time=outcome.completion_time,
        )


@kopf.on.resume(*FTJ)
@kopf.on.create(*FTJ)
@kopf.on.update(*FTJ, field="spec")
def finetunejob_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


@kopf.timer(*FTJ, interval=ENV_SETTINGS.resync_seconds, initial_delay=ENV_SETTINGS.resync_seconds)
def finetunejob_resync(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Level-based safety net: converges even if a watch event was missed."""
    reconcile(memo.runtime, namespace or "", name)


@kopf.on.delete(*FTJ, optional=True)
def finetunejob_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Children and DeleteWithJob Adapters go through garbage collection; only local state is dropped."""
    metrics.FINETUNEJOB_PHASES.set(namespace or "", name, None)
    memo.runtime.locks.forget("FineTuneJob", namespace or "", name)

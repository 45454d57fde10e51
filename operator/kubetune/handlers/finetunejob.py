"""kopf glue for FineTuneJobs: every trigger runs the same level-based reconcile."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from kubetune import metrics
from kubetune.api.resources import FINETUNEJOB
from kubetune.decisions.plan import settled
from kubetune.handlers.startup import RECONCILERS, Runtime, locked_and_metered
from kubetune.k8s.sync import sync_finetunejob

FTJ = (FINETUNEJOB.group, FINETUNEJOB.version, FINETUNEJOB.plural)
log = logging.getLogger(__name__)


def reconcile(runtime: Runtime, namespace: str, name: str) -> None:
    """Serialized per object; API errors become a kopf retry after the configured backoff."""
    outcome = locked_and_metered(
        runtime,
        "FineTuneJob",
        namespace,
        name,
        lambda: sync_finetunejob(runtime.kube, namespace, name, runtime.settings, datetime.now(UTC)),
    )
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


RECONCILERS["FineTuneJob"] = reconcile


@kopf.on.resume(*FTJ)
@kopf.on.create(*FTJ)
@kopf.on.update(*FTJ, field="spec")
def finetunejob_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


@kopf.on.event(*FTJ)
def finetunejob_seen(
    event: Mapping[str, Any], body: Any, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """Keeps the resync set current; a deleted run only drops local state (children go through GC)."""
    runtime: Runtime = memo.runtime
    gone = event.get("type") == "DELETED"
    if runtime.resync is not None:
        runtime.resync.track("FineTuneJob", namespace or "", name, not gone and not settled("FineTuneJob", body))
    if gone:
        metrics.FINETUNEJOB_PHASES.set(namespace or "", name, None)
        runtime.locks.forget("FineTuneJob", namespace or "", name)

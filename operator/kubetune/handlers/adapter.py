"""kopf glue for Adapters: published ones become Ready, merged ones run and follow a merge Job."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from kubetune import metrics
from kubetune.api.resources import ADAPTER as RESOURCE
from kubetune.decisions.plan import settled
from kubetune.handlers.startup import RECONCILERS, Runtime, locked_and_metered
from kubetune.k8s.sync_adapter import sync_adapter

ADAPTER = (RESOURCE.group, RESOURCE.version, RESOURCE.plural)


def reconcile(runtime: Runtime, namespace: str, name: str) -> None:
    phase = locked_and_metered(
        runtime,
        "Adapter",
        namespace,
        name,
        lambda: sync_adapter(runtime.kube, namespace, name, runtime.settings, datetime.now(UTC)),
    )
    metrics.ADAPTER_PHASES.set(namespace, name, phase)


RECONCILERS["Adapter"] = reconcile


@kopf.on.resume(*ADAPTER)
@kopf.on.create(*ADAPTER)
@kopf.on.update(*ADAPTER, field="spec")
def adapter_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


@kopf.on.event(*ADAPTER)
def adapter_seen(event: Mapping[str, Any], body: Any, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A merge waits for sources that other runs publish later: it stays in the resync set until done."""
    runtime: Runtime = memo.runtime
    gone = event.get("type") == "DELETED"
    if runtime.resync is not None:
        runtime.resync.track("Adapter", namespace or "", name, not gone and not settled("Adapter", body))
    if gone:
        metrics.ADAPTER_PHASES.set(namespace or "", name, None)
        runtime.locks.forget("Adapter", namespace or "", name)

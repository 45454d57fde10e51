"""kopf glue for Adapters: published ones become Ready, merged ones run and follow a merge Job."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import kopf

from kubetune import metrics
from kubetune.handlers.startup import ENV_SETTINGS, Runtime
from kubetune.k8s.client import KubeError
from kubetune.k8s.sync_adapter import sync_adapter

ADAPTER = ("kubetune.io", "v1alpha1", "adapters")


def reconcile(runtime: Runtime, namespace: str, name: str) -> None:
    started = time.monotonic()
    metrics.RECONCILES.labels(kind="Adapter").inc()
    try:
        with runtime.locks.lock("Adapter", namespace, name):
            phase = sync_adapter(runtime.kube, namespace, name, runtime.settings, datetime.now(UTC))
    except KubeError as error:
        metrics.RECONCILE_ERRORS.labels(kind="Adapter").inc()
        raise kopf.TemporaryError(
            f"reconcile of {namespace}/{name}: {error}", delay=runtime.settings.handler_backoff
        ) from None
    finally:
        metrics.RECONCILE_SECONDS.labels(kind="Adapter").observe(time.monotonic() - started)
    metrics.ADAPTER_PHASES.set(namespace, name, phase)


@kopf.on.resume(*ADAPTER)
@kopf.on.create(*ADAPTER)
@kopf.on.update(*ADAPTER, field="spec")
def adapter_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


def _is_unfinished_merge(spec: Any, status: Any, **_: Any) -> bool:
    return bool(spec.get("merge")) and status.get("phase") not in ("Ready", "Failed")


@kopf.timer(*ADAPTER, interval=ENV_SETTINGS.resync_seconds, when=_is_unfinished_merge)
def adapter_resync(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A merge waits for its sources (published later by other runs): poll until it can start."""
    reconcile(memo.runtime, namespace or "", name)


@kopf.on.delete(*ADAPTER, optional=True)
def adapter_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    metrics.ADAPTER_PHASES.set(namespace or "", name, None)
    memo.runtime.locks.forget("Adapter", namespace or "", name)

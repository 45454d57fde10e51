"""Operator startup: settings from the environment (the only place that reads it), kopf settings,
the API client and the metrics endpoint."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf
from prometheus_client import start_http_server

from kubetune import metrics
from kubetune.api.resources import GROUP
from kubetune.api.v1alpha1.pod_contract import OPERATOR_FIELD_MANAGER
from kubetune.handlers.resync import Resync
from kubetune.k8s.client import Kube
from kubetune.k8s.interface import KubeError
from kubetune.metrics import REGISTRY
from kubetune.settings import OperatorSettings

PREFIX = GROUP
FINALIZER = f"{GROUP}/finalizer"

log = logging.getLogger(__name__)


class KeyedLocks:
    """One lock per object, so a FineTuneJob change and its pod events never reconcile it concurrently."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}

    def lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((kind, namespace, name), threading.Lock())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((kind, namespace, name), None)


@dataclass
class Runtime:
    """Shared by every handler (kopf copies the operator memo shallowly into each object's memo)."""

    settings: OperatorSettings
    kube: Kube
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    resync: Resync | None = None


RECONCILERS: dict[str, Callable[[Runtime, str, str], None]] = {}
"""Filled by the FineTuneJob and Adapter handler modules, so the resync thread can call them."""

T = TypeVar("T")


def locked_and_metered(runtime: Runtime, kind: str, namespace: str, name: str, sync: Callable[[], T]) -> T:
    """Runs one reconcile serialized per object and counted; API errors become a kopf retry after the
    configured backoff, so every kind gets the same locking, metrics and retry behaviour."""
    started = time.monotonic()
    metrics.RECONCILES.labels(kind=kind).inc()
    try:
        with runtime.locks.lock(kind, namespace, name):
            return sync()
    except KubeError as error:
        metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
        raise kopf.TemporaryError(
            f"reconcile of {namespace}/{name}: {error}", delay=runtime.settings.handler_backoff
        ) from None
    finally:
        metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.monotonic() - started)


_metrics_started = threading.Event()


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """Explicit kopf settings: our own annotation prefix and finalizer, bounded watches, fast retries."""
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    kopf_settings.watching.server_timeout = settings.watch_server_timeout
    kopf_settings.watching.client_timeout = settings.watch_client_timeout
    kopf_settings.watching.connect_timeout = 30
    kopf_settings.networking.error_backoffs = settings.error_backoffs
    kopf_settings.execution.default_backoff = settings.handler_backoff
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.posting.reporting_component = OPERATOR_FIELD_MANAGER
    kopf_settings.peering.name = settings.peering_name


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    operator_settings = OperatorSettings.from_env(os.environ)
    configure_kopf(settings, operator_settings)
    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    runtime = Runtime(settings=operator_settings, kube=Kube.from_environment(kubeconfig))
    runtime.resync = Resync(
        operator_settings.resync_seconds,
        {kind: functools.partial(fn, runtime) for kind, fn in RECONCILERS.items()},
    )
    runtime.resync.start()
    memo.runtime = runtime
    if operator_settings.metrics_port and not _metrics_started.is_set():
        start_http_server(operator_settings.metrics_port, registry=REGISTRY)
        _metrics_started.set()
        log.info("metrics on :%d/metrics", operator_settings.metrics_port)


@kopf.on.cleanup()
def cleanup(memo: Any, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None and runtime.resync is not None:
        runtime.resync.stop()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster token, else KUBECONFIG read at login time (not at import, as the client library does)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.probe(id="api")
def api_reachable(memo: Any, **_: Any) -> str:
    """Liveness/readiness (kopf --liveness): the API server answers this operator's requests."""
    runtime: Runtime = memo.runtime
    return str(runtime.kube.request("GET", "/version").get("gitVersion", "unknown"))

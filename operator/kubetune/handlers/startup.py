"""Operator lifecycle: settings from the environment (the only place that reads it), kopf settings, the
runtime with its reconciler registry built from the kinds, its work queue and resync, the metrics endpoint,
login and the probe."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kopf
from prometheus_client import start_http_server

from kubetune.api.base import compile_all_rules, forget_verdicts
from kubetune.api.resources import GROUP
from kubetune.api.v1alpha1.pod_contract import OPERATOR_FIELD_MANAGER
from kubetune.decisions.trainer_policy import binding_url, policy_problem, policy_url
from kubetune.handlers.children import MANAGED_SELECTOR
from kubetune.handlers.kinds import Kind
from kubetune.handlers.memory import release_free_memory
from kubetune.handlers.peering import MEMBERSHIP_KEY, Membership, PeeringGate
from kubetune.handlers.resync import Resync
from kubetune.handlers.runtime import MEMO_KEY, Runtime, runtime_of
from kubetune.handlers.workqueue import WorkQueue
from kubetune.k8s.cache import CachedKube
from kubetune.k8s.client import Kube
from kubetune.k8s.interface import KubeClient, KubeError
from kubetune.metrics import REGISTRY
from kubetune.settings import OperatorSettings

FINALIZER = f"{GROUP}/finalizer"
GATE_MAX_AGE = 1.0
"""Seconds a read of the peering state answers the workers: bounds both the reads (one per second, however many
keys) and how long a replica goes on reconciling after kopf paused it."""

log = logging.getLogger(__name__)
_metrics_started = threading.Event()


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds the diff base of change handlers (a deep copy of the object) on every watch event, handlers or
    not; the operator has no change handlers, so there is nothing to build, store or compare."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """Explicit kopf settings: our own finalizer name (kopf adds none for event handlers), bounded watches, retries
    of API errors. kopf keeps no diff base: the operator registers no change handlers."""
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    kopf_settings.watching.server_timeout = settings.watch_server_timeout
    kopf_settings.watching.client_timeout = settings.watch_client_timeout
    kopf_settings.watching.connect_timeout = 30
    kopf_settings.networking.error_backoffs = settings.error_backoffs
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.posting.reporting_component = OPERATOR_FIELD_MANAGER


def build_runtime(
    settings: OperatorSettings, kube: KubeClient, kinds: Sequence[Kind[Any]], gate: Callable[[], bool] | None = None
) -> Runtime:
    """The runtime with its registry (each kind's reconcile, bound to this runtime, by kind name), the work queue
    whose workers run them and the resync, which enqueues. `gate` (peering) says whether the workers and the resync
    may reconcile now; without one they always may."""
    runtime = Runtime(settings=settings, kube=kube)
    for kind in kinds:
        runtime.reconcilers[kind.resource.kind] = functools.partial(kind.reconcile, runtime)
    runtime.queue = WorkQueue(runtime.process, settings.workers, settings.handler_backoff, gate=gate)
    runtime.resync = Resync(settings.resync_seconds, runtime.enqueuers(), gate, after_pass=lambda: upkeep(runtime))
    return runtime


def upkeep(runtime: Runtime) -> None:
    """After each resync pass: the read cache forgets old deletions, and an idle operator forgets its CEL verdicts
    and gives free memory back (`kubetune.handlers.memory`)."""
    if runtime.cache is not None:
        runtime.cache.expire()
    if runtime.queue is not None and runtime.queue.idle():
        forget_verdicts()
        release_free_memory()


def with_trainer_identity(settings: OperatorSettings, kube: KubeClient) -> OperatorSettings:
    """Runs share the namespace's trainer identity when the chart's policy is in force; otherwise each run keeps
    its own, said once here (read once: a policy installed later takes effect at the next start)."""
    name = settings.trainer_status_policy
    try:
        problem = policy_problem(name, kube.get(policy_url(name)), kube.get(binding_url(name)))
    except KubeError as error:
        problem = f"cannot read ValidatingAdmissionPolicy {name}: {error}"
    if problem is None:
        log.info("trainer identity: one per namespace, confined by ValidatingAdmissionPolicy %s", name)
    else:
        log.warning(
            "trainer identity: one per run (%s); install the chart's policy to share one per namespace, three API "
            "writes less per run",
            problem,
        )
    return settings.model_copy(update={"namespace_trainer_identity": problem is None})


def read_cache(kube: Kube, kinds: Sequence[Kind[Any]], settings: OperatorSettings) -> CachedKube:
    """Reads of the watched kinds from the watches: the kinds themselves, and the Jobs and pods the operator
    made (the children watchers' label filter), each LISTed again every resync interval."""
    selectors: dict[str, str | None] = {kind.resource.kind: None for kind in kinds}
    selectors.update({"Job": MANAGED_SELECTOR, "Pod": MANAGED_SELECTOR})
    return CachedKube(kube, kube.list_versioned, selectors, settings.resync_seconds)


def peering_gate(kopf_settings: kopf.OperatorSettings, memo: kopf.Memo, kube: KubeClient) -> PeeringGate | None:
    """kopf's pause as the work queue and the resync see it; None without mandatory peering (--standalone, or
    tests)."""
    membership = memo.get(MEMBERSHIP_KEY)
    peering = kopf_settings.peering
    if not isinstance(membership, Membership) or peering.standalone or not peering.mandatory:
        return None
    return PeeringGate(kube, membership, peering.name, max_age=GATE_MAX_AGE)


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """The API server a pod reaches, as client-go and the kubernetes library find it (KUBERNETES_SERVICE_HOST
    and _PORT), so kopf talks to the same endpoint as the operator's own client; kopf's helper assumes that
    cluster DNS resolves kubernetes.default.svc, which a pod with host networking may not have."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def register_lifecycle(registry: kopf.OperatorRegistry, kinds: Sequence[Kind[Any]]) -> None:
    """startup, cleanup, login and the liveness probe."""

    def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        operator_settings = OperatorSettings.from_env(os.environ)
        compile_all_rules()
        configure_kopf(settings, operator_settings)
        kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        kube = Kube.from_environment(kubeconfig, pool_size=operator_settings.workers + 2)
        operator_settings = with_trainer_identity(operator_settings, kube)
        cache = read_cache(kube, kinds, operator_settings)
        runtime = build_runtime(operator_settings, cache, kinds, peering_gate(settings, memo, kube))
        runtime.cache = cache
        if runtime.queue is not None:
            runtime.queue.start()
        if runtime.resync is not None:
            runtime.resync.start()
        memo[MEMO_KEY] = runtime
        if operator_settings.metrics_port and not _metrics_started.is_set():
            start_http_server(operator_settings.metrics_port, registry=REGISTRY)
            _metrics_started.set()
            log.info("metrics on :%d/metrics", operator_settings.metrics_port)

    def cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime = memo.get(MEMO_KEY)
        if not isinstance(runtime, Runtime):
            return
        if runtime.resync is not None:
            runtime.resync.stop()
        if runtime.queue is not None:
            runtime.queue.stop()

    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster token, else KUBECONFIG read at login time (not at import, as the client library does)."""
        in_cluster = kopf.login_with_service_account(**kwargs)
        if in_cluster is None:
            return kopf.login_with_kubeconfig(**kwargs)
        server = in_cluster_server(os.environ)
        return dataclasses.replace(in_cluster, server=server) if server else in_cluster

    def api_reachable(memo: kopf.Memo, **_: Any) -> str:
        """Liveness/readiness (kopf --liveness): the API server answers this operator's requests."""
        version = runtime_of(memo).kube.get("/version") or {}
        return str(version.get("gitVersion", "unknown"))

    kopf.on.startup(id="startup", registry=registry)(startup)
    kopf.on.cleanup(id="cleanup", registry=registry)(cleanup)
    kopf.on.login(id="login", registry=registry)(login)
    kopf.on.probe(id="api", registry=registry)(api_reachable)

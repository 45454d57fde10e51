"""The kopf glue without kopf running: command line, registration, the runtime wrapper, child events, resync.
The work queue itself: test_operator_workqueue.py."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf
import pytest

from kubetune import metrics
from kubetune.api import base
from kubetune.handlers import parse_args, quiet_libraries, register_operator
from kubetune.handlers.children import requeue_owner
from kubetune.handlers.kinds import KINDS
from kubetune.handlers.registration import register_kind
from kubetune.handlers.resync import Resync
from kubetune.handlers.runtime import MEMO_KEY, Runtime, runtime_of
from kubetune.handlers.startup import build_runtime, in_cluster_server, upkeep
from kubetune.k8s.cache import CachedKube
from kubetune.k8s.interface import KubeError, Obj, path
from kubetune.settings import OperatorSettings
from support.fake_kube import FakeKube

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(handler_backoff=7)
FINETUNEJOB = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "j"},
    "spec": {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "s3://d/train.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "objective": {"type": "sft"},
        "output": {"uri": "s3://o/"},
    },
}


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Unavailable(FakeKube):
    """An API server that answers every read with 503."""

    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        raise KubeError(503, "Service Unavailable", "etcd is down")


def test_operator_command_line() -> None:
    options = parse_args(["--standalone", "-n", "a", "-n", "b", "--liveness", "http://0.0.0.0:8081/healthz"])
    assert options.standalone
    assert options.namespace == ["a", "b"]
    assert options.liveness == "http://0.0.0.0:8081/healthz"
    ha = parse_args(["-A", "--peering", "kubetune", "--priority", "10"])
    assert (ha.all_namespaces, ha.peering, ha.priority) == (True, "kubetune", 10)
    with pytest.raises(SystemExit):
        parse_args(["--standalone", "--peering", "x"])


def test_every_kind_gets_the_same_watch_handler_and_no_change_handler() -> None:
    """Change handlers would make kopf patch its progress and diffbase annotations onto every object."""
    registry = kopf.OperatorRegistry()
    register_operator(registry)
    # kopf has no public listing of a registry's handlers; its internal one is read here only.
    assert not registry._changing.get_all_handlers()
    watching = {(h.id, h.selector.any_name) for h in registry._watching.get_all_handlers()}
    assert watching == {
        ("finetunejob_seen", "finetunejobs"),
        ("adapter_seen", "adapters"),
        ("job_event", "jobs"),
        ("pod_event", "pods"),
    }
    assert {h.id for h in registry._activities.get_all_handlers()} == {"startup", "cleanup", "login", "api"}


def test_the_runtime_registry_reaches_each_kinds_controller() -> None:
    kube = FakeKube()
    kube.create(path("FineTuneJob", "ml"), FINETUNEJOB)
    runtime = build_runtime(SETTINGS, kube, KINDS)
    assert set(runtime.reconcilers) == {"FineTuneJob", "Adapter"}
    assert runtime.queue is not None
    assert runtime.queue.workers == SETTINGS.workers
    assert runtime.resync is not None
    assert set(runtime.resync.reconcilers) == {"FineTuneJob", "Adapter"}
    runtime.resync.reconcilers["FineTuneJob"]("ml", "j")  # the resync only enqueues
    assert runtime.queue.pending() == 1
    assert not kube.list(path("Job", "ml"))
    runtime.queue.start()
    wait_for(lambda: bool(kube.list(path("Job", "ml"))))
    runtime.queue.stop()
    (created,) = kube.list(path("Job", "ml"))
    assert created["metadata"]["labels"]["app.kubernetes.io/component"] == "preflight"  # the first child Job
    assert metrics.REGISTRY.get_sample_value("kubetune_finetunejobs", {"namespace": "ml", "phase": "Pending"}) == 1
    metrics.FINETUNEJOB_PHASES.set("ml", "j", None)


def test_api_errors_ask_the_queue_for_a_retry_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    runtime = build_runtime(SETTINGS, Unavailable(), KINDS)
    errors = metrics.REGISTRY.get_sample_value("kubetune_reconcile_errors_total", {"kind": "Adapter"}) or 0
    assert runtime.process(("Adapter", "ml", "a")) is False
    assert "etcd is down" in caplog.text
    assert metrics.REGISTRY.get_sample_value("kubetune_reconcile_errors_total", {"kind": "Adapter"}) == errors + 1
    assert runtime.queue is not None
    assert runtime.queue.backoff == 7


def test_the_runtime_travels_typed_in_the_memo() -> None:
    memo = kopf.Memo()
    with pytest.raises(kopf.PermanentError, match="startup"):
        runtime_of(memo)
    runtime = Runtime(settings=SETTINGS, kube=FakeKube())
    memo[MEMO_KEY] = runtime
    assert runtime_of(memo) is runtime


def test_child_events_reconcile_the_owner_named_in_their_annotation() -> None:
    calls: list[tuple[str, str, str]] = []

    def reconciler(kind: str) -> Any:
        def reconcile(namespace: str, name: str) -> None:
            calls.append((kind, namespace, name))
            raise KubeError(503, "Service Unavailable", "API down")  # retried by the queue, never raised into kopf

        return reconcile

    runtime = Runtime(settings=SETTINGS, kube=FakeKube())  # no queue: enqueue reconciles at once
    runtime.reconcilers.update({"FineTuneJob": reconciler("FineTuneJob"), "Adapter": reconciler("Adapter")})
    requeue_owner(runtime, "ml", {"kubetune.io/owner": "FineTuneJob/j"})
    requeue_owner(runtime, "ml", {"kubetune.io/owner": "Adapter/merged"})
    requeue_owner(runtime, "ml", {"kubetune.io/owner": "Secret/x"})
    requeue_owner(runtime, "ml", {"other": "FineTuneJob/j"})
    assert calls == [("FineTuneJob", "ml", "j"), ("Adapter", "ml", "merged")]


def test_resync_thread_reconciles_tracked_objects_until_stopped() -> None:
    seen: list[tuple[str, str]] = []
    called = threading.Event()

    def reconcile(namespace: str, name: str) -> None:
        seen.append((namespace, name))
        called.set()
        raise RuntimeError("one failure does not stop the loop")

    resync = Resync(0.01, {"FineTuneJob": reconcile})
    resync.track("FineTuneJob", "ns", "a", True)
    resync.track("FineTuneJob", "ns", "b", True)
    resync.track("FineTuneJob", "ns", "b", False)
    resync.start()
    assert called.wait(5)
    resync.stop()
    assert set(seen) == {("ns", "a")}
    assert resync.tracked() == [("FineTuneJob", "ns", "a")]


def test_after_each_resync_pass_its_hook_runs_and_a_failing_hook_stops_nothing() -> None:
    passes: list[int] = []
    twice = threading.Event()

    def after_pass() -> None:
        passes.append(len(passes))
        if len(passes) >= 2:
            twice.set()
        raise RuntimeError("the thread outlives it")

    resync = Resync(0.01, {}, gate=lambda: False, after_pass=after_pass)
    resync.start()
    assert twice.wait(5), "paused or not, and after a failure"
    resync.stop()


def test_the_resync_skips_objects_reconciled_within_its_interval() -> None:
    """Busy objects are reconciled by their events anyway: the resync polls only the ones nothing else brought up."""
    runtime = Runtime(settings=SETTINGS, kube=FakeKube())
    runtime.reconcilers["FineTuneJob"] = lambda namespace, name: None
    runtime.resync = Resync(0.2, {})
    runtime.resync.track("FineTuneJob", "ns", "busy", True)
    runtime.resync.track("FineTuneJob", "ns", "quiet", True)
    assert runtime.resync.due() == [("FineTuneJob", "ns", "busy"), ("FineTuneJob", "ns", "quiet")]
    assert runtime.process(("FineTuneJob", "ns", "busy"))
    assert runtime.resync.due() == [("FineTuneJob", "ns", "quiet")]
    time.sleep(0.25)
    assert runtime.resync.due() == [("FineTuneJob", "ns", "busy"), ("FineTuneJob", "ns", "quiet")]
    runtime.resync.track("FineTuneJob", "ns", "busy", False)
    assert runtime.resync.due() == [("FineTuneJob", "ns", "quiet")], "settled or deleted: forgotten"


def test_watch_events_enqueue_only_when_reconcile_inputs_changed() -> None:
    """The operator's own status writes and the trainer's progress bring no reconcile; spec, result and
    metadata changes do; a deletion forgets the object."""
    registry = kopf.OperatorRegistry()
    seen_inputs = register_kind(registry, KINDS[0])
    (handler,) = registry._watching.get_all_handlers()  # kopf's internal listing, read here only
    enqueued: list[tuple[str, str, str]] = []
    runtime = Runtime(settings=SETTINGS, kube=FakeKube())
    runtime.reconcilers["FineTuneJob"] = lambda namespace, name: enqueued.append(("FineTuneJob", namespace, name))
    runtime.resync = Resync(60, {})
    memo = kopf.Memo({MEMO_KEY: runtime})

    def event(kind: str | None, **changes: Any) -> None:
        body = {**FINETUNEJOB, "metadata": {"name": "j", "namespace": "ml", "generation": 1}, **changes}
        asyncio.run(handler.fn(event={"type": kind, "object": body}, namespace="ml", name="j", memo=memo))

    running = {"phase": "Running", "observedGeneration": 1}
    event(None)  # the listing when the operator starts
    event("MODIFIED", status=running)  # its own status write
    event("MODIFIED", status={**running, "progress": {"step": 5}})  # the trainer's progress
    assert len(enqueued) == 1
    assert runtime.resync.tracked() == [("FineTuneJob", "ml", "j")]
    event("MODIFIED", status={**running, "result": {"artifactUri": "s3://o/", "sha256": "1" * 64}})
    event("MODIFIED", metadata={"name": "j", "namespace": "ml", "generation": 2})
    assert len(enqueued) == 3
    event("DELETED")
    assert len(enqueued) == 3
    assert len(seen_inputs) == 0
    assert runtime.resync.tracked() == []


def test_without_verbose_kopfs_line_per_handler_call_is_dropped_and_failures_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    objects = logging.getLogger("kopf.objects")
    quiet_libraries(verbose=False)
    try:
        with caplog.at_level(logging.INFO):
            objects.info("Handler 'pod_event' succeeded.")
            objects.info("Handler 'job_event' succeeded.")
            objects.info("Handler 'finetunejob_seen' succeeded.")
            objects.warning("Handler 'pod_event' failed temporarily: boom")
            objects.info("Something else happened.")
    finally:
        objects.filters.clear()
    assert [r.getMessage() for r in caplog.records] == [
        "Handler 'finetunejob_seen' succeeded.",
        "Handler 'pod_event' failed temporarily: boom",
        "Something else happened.",
    ]


def test_in_cluster_login_uses_the_service_address_the_pod_was_given() -> None:
    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}) == (
        "https://10.0.0.1:443"
    )
    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}) == (
        "https://[fd00::1]:6443"
    )
    assert in_cluster_server({}) is None  # kopf's default: https://kubernetes.default.svc


def test_upkeep_after_a_resync_pass_forgets_old_deletions_in_the_read_cache() -> None:
    now = [0.0]
    fake = FakeKube()
    cache = CachedKube(fake, fake.list_versioned, {"FineTuneJob": None}, 30.0, lambda: now[0])
    runtime = build_runtime(OperatorSettings(), cache, KINDS)
    runtime.cache = cache
    deleted = {"kind": "FineTuneJob", "metadata": {"name": "a", "namespace": "ml", "resourceVersion": "5"}}
    cache.observe("FineTuneJob", "DELETED", deleted)
    now[0] = 31.0
    upkeep(runtime)
    assert cache._collections[("FineTuneJob", "ml")].tombstones == {}


def test_upkeep_forgets_cel_verdicts_only_when_the_work_queue_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """While reconciles wait, their verdicts are about to be read again; once none do, they only hold memory."""
    monkeypatch.setattr(base, "_verdicts", base.OrderedDict())
    runtime = build_runtime(OperatorSettings(), FakeKube(), KINDS)
    assert runtime.queue is not None
    base.cel_holds("self.rank > 0", {"rank": 1})
    runtime.queue.add(("FineTuneJob", "ml", "waiting"))  # workers not started: it waits
    upkeep(runtime)
    assert len(base._verdicts) == 1
    runtime.queue = build_runtime(OperatorSettings(), FakeKube(), KINDS).queue
    upkeep(runtime)
    assert len(base._verdicts) == 0

"""The kopf glue without kopf running: command line, registration, the runtime wrapper, child events, resync."""

from __future__ import annotations

import threading
from typing import Any

import kopf
import pytest

from kubetune import metrics
from kubetune.handlers import parse_args, register_operator
from kubetune.handlers.children import requeue_owner
from kubetune.handlers.kinds import KINDS
from kubetune.handlers.resync import Resync
from kubetune.handlers.runtime import MEMO_KEY, Runtime, runtime_of
from kubetune.handlers.startup import build_runtime, in_cluster_server
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


def test_every_kind_gets_the_same_handlers_from_one_registration() -> None:
    registry = kopf.OperatorRegistry()
    register_operator(registry)
    # kopf has no public listing of a registry's handlers; its internal one is read here only.
    changing = {(h.id, h.selector.any_name) for h in registry._changing.get_all_handlers()}
    watching = {(h.id, h.selector.any_name) for h in registry._watching.get_all_handlers()}
    for prefix, plural in (("finetunejob", "finetunejobs"), ("adapter", "adapters")):
        assert {(f"{prefix}_changed", plural), (f"{prefix}_changed/spec", plural)} <= changing
        assert (f"{prefix}_seen", plural) in watching
    assert {("job_event", "jobs"), ("pod_event", "pods")} <= watching
    assert {h.id for h in registry._activities.get_all_handlers()} == {"startup", "cleanup", "login", "api"}


def test_the_runtime_registry_reaches_each_kinds_controller() -> None:
    kube = FakeKube()
    kube.create(path("FineTuneJob", "ml"), FINETUNEJOB)
    runtime = build_runtime(SETTINGS, kube, KINDS)
    assert set(runtime.reconcilers) == {"FineTuneJob", "Adapter"}
    assert runtime.resync is not None
    assert runtime.resync.reconcilers is runtime.reconcilers
    runtime.reconcilers["FineTuneJob"]("ml", "j")
    (created,) = kube.list(path("Job", "ml"))
    assert created["metadata"]["labels"]["app.kubernetes.io/component"] == "preflight"  # the first child Job
    assert metrics.REGISTRY.get_sample_value("kubetune_finetunejobs", {"namespace": "ml", "phase": "Pending"}) == 1
    metrics.FINETUNEJOB_PHASES.set("ml", "j", None)


def test_api_errors_become_a_kopf_retry_after_the_backoff_and_are_counted() -> None:
    runtime = build_runtime(SETTINGS, Unavailable(), KINDS)
    errors = metrics.REGISTRY.get_sample_value("kubetune_reconcile_errors_total", {"kind": "Adapter"}) or 0
    with pytest.raises(kopf.TemporaryError) as retry:
        runtime.reconcilers["Adapter"]("ml", "a")
    assert retry.value.delay == 7
    assert "etcd is down" in str(retry.value)
    assert metrics.REGISTRY.get_sample_value("kubetune_reconcile_errors_total", {"kind": "Adapter"}) == errors + 1


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
            raise kopf.TemporaryError("API down")  # left to the resync loop, not raised into kopf

        return reconcile

    runtime = Runtime(settings=SETTINGS, kube=FakeKube())
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


def test_in_cluster_login_uses_the_service_address_the_pod_was_given() -> None:
    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}) == (
        "https://10.0.0.1:443"
    )
    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}) == (
        "https://[fd00::1]:6443"
    )
    assert in_cluster_server({}) is None  # kopf's default: https://kubernetes.default.svc

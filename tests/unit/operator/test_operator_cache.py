"""The read cache: reads from the watches after one LIST, own writes seen at once, stale events and lists never
overwrite newer state, and each LIST drops what the watches missed."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from kubetune.k8s.cache import CachedKube, parse_selector, slim
from kubetune.k8s.interface import Obj, path
from support.fake_kube import FakeKube

NS = "ml"
MANAGED = "app.kubernetes.io/managed-by=kubetune-operator"


class Counting:
    """The fake API server, counting the requests that reach it."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.requests: list[str] = []

    def __getattr__(self, verb: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.requests.append(verb)
            return getattr(self.kube, verb)(*args, **kwargs)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(name: str, rv: int, managed: bool = True, **labels: str) -> Obj:
    if managed:
        labels["app.kubernetes.io/managed-by"] = "kubetune-operator"
    meta = {"name": name, "namespace": NS, "resourceVersion": str(rv), "labels": labels}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}}


@pytest.fixture
def parts() -> tuple[FakeKube, Counting, Clock, CachedKube]:
    fake = FakeKube()
    server = Counting(fake)
    clock = Clock()
    cache = CachedKube(server, server.list_versioned, {"Job": MANAGED, "FineTuneJob": None}, 30.0, clock)
    return fake, server, clock, cache


def test_after_one_list_reads_and_misses_cost_no_request(parts: tuple[FakeKube, Counting, Clock, CachedKube]) -> None:
    fake, server, _, cache = parts
    fake.create(path("Job", NS), job("a", 0))
    fake.create(path("Job", NS), job("theirs", 0, managed=False))
    assert cache.get(path("Job", NS, "a")) is not None
    assert cache.get(path("Job", NS, "missing")) is None
    assert cache.get(path("Job", NS, "theirs")) is None, "outside the watches' label filter"
    assert [j["metadata"]["name"] for j in cache.list(path("Job", NS), MANAGED)] == ["a"]
    assert server.requests == ["list_versioned"]


def test_other_kinds_and_selectors_go_to_the_api_server(parts: tuple[FakeKube, Counting, Clock, CachedKube]) -> None:
    _, server, _, cache = parts
    assert cache.get(path("Secret", NS, "s"), metadata_only=True) is None
    cache.list(path("Job", NS), "a in (b)")
    assert server.requests == ["get", "list"]


def test_events_update_it_and_older_ones_never_overwrite_newer(
    parts: tuple[FakeKube, Counting, Clock, CachedKube],
) -> None:
    _, _, _, cache = parts
    cache.get(path("Job", NS, "x"))  # listed (empty)
    cache.observe("Job", "ADDED", job("a", 10, step="new"))
    cache.observe("Job", "MODIFIED", job("a", 5, step="old"))
    assert cache.get(path("Job", NS, "a"))["metadata"]["labels"]["step"] == "new"  # type: ignore[index]
    cache.observe("Job", "DELETED", job("a", 11))
    cache.observe("Job", "MODIFIED", job("a", 10, step="late"))
    assert cache.get(path("Job", NS, "a")) is None, "a tombstone keeps a late event from reviving it"


def test_a_tombstone_lasts_one_interval_and_then_leaves_nothing_behind(
    parts: tuple[FakeKube, Counting, Clock, CachedKube],
) -> None:
    """Deleted runs must not stay in memory: their tombstones (name and revision) go one interval after."""
    _, _, clock, cache = parts
    cache.get(path("Job", NS, "x"))  # listed (empty) at 0
    cache.observe("Job", "ADDED", job("a", 10))
    cache.observe("Job", "DELETED", job("a", 11))
    clock.now = 29.0
    cache.expire()
    cache.observe("Job", "MODIFIED", job("a", 10, step="late"))
    assert cache.get(path("Job", NS, "a")) is None, "within the interval the tombstone holds"
    assert set(cache._collections[("Job", NS)].tombstones) == {"a"}
    clock.now = 31.0  # no LIST since (nothing reads the collection once a burst is deleted): the interval ends it
    cache.expire()
    assert cache._collections[("Job", NS)].tombstones == {}


def test_a_burst_of_deleted_objects_leaves_no_grown_table_behind(
    parts: tuple[FakeKube, Counting, Clock, CachedKube],
) -> None:
    """A dict keeps the table it grew to after its entries are gone; the expiry that ends a burst's tombstones
    gives the collection a table of its size (the old one sat among the burst's freed objects, keeping pages)."""
    _, _, clock, cache = parts
    cache.get(path("Job", NS, "x"))
    cache.observe("Job", "ADDED", job("kept", 1))
    for i in range(1000):
        cache.observe("Job", "ADDED", job(f"run-{i}", 10 + i))
    for i in range(1000):
        cache.observe("Job", "DELETED", job(f"run-{i}", 2000 + i))
    collection = cache._collections[("Job", NS)]
    grown = sys.getsizeof(collection.objects)
    clock.now = 31.0
    cache.expire()
    assert sys.getsizeof(collection.objects) < grown / 10
    assert list(collection.objects) == ["kept"]


def test_every_read_gets_its_own_copy(parts: tuple[FakeKube, Counting, Clock, CachedKube]) -> None:
    """Objects are kept encoded (one allocation each, not a tree of hundreds that would outlive a burst's
    short-lived ones); a caller that changes what it read changes nothing for the next reader."""
    _, _, _, cache = parts
    cache.get(path("Job", NS, "x"))
    cache.observe("Job", "ADDED", job("a", 10, step="one"))
    read = cache.get(path("Job", NS, "a"))
    assert read is not None
    assert read == slim(job("a", 10, step="one"))
    read["metadata"]["labels"]["step"] = "changed"
    assert cache.get(path("Job", NS, "a"))["metadata"]["labels"]["step"] == "one"  # type: ignore[index]
    assert [o["metadata"]["name"] for o in cache.list(path("Job", NS), "step=one")] == ["a"]


def test_a_list_that_repeats_a_kept_revision_keeps_what_is_there(
    parts: tuple[FakeKube, Counting, Clock, CachedKube],
) -> None:
    """Each LIST (one per interval) returns every object again; those the cache has at that revision are not
    encoded again (a new copy of each, every 30 s, was most of the heap's churn at scale)."""
    _, _, clock, cache = parts
    cache.get(path("Job", NS, "x"))
    cache.observe("Job", "ADDED", job("a", 10))
    kept = cache._collections[("Job", NS)].objects["a"]
    cache._collections[("Job", NS)].relisted([job("a", 10)], 20, clock.now)
    assert cache._collections[("Job", NS)].objects["a"] is kept
    cache._collections[("Job", NS)].relisted([job("a", 15, step="two")], 20, clock.now)
    assert cache._collections[("Job", NS)].objects["a"] is not kept


def test_own_writes_are_seen_before_their_watch_event(parts: tuple[FakeKube, Counting, Clock, CachedKube]) -> None:
    _, server, _, cache = parts
    assert cache.get(path("Job", NS, "a")) is None
    cache.apply(job("a", 0))
    assert cache.get(path("Job", NS, "a")) is not None
    assert server.requests == ["list_versioned", "apply"]


def test_it_keeps_what_reconciles_read_and_not_the_bulk(parts: tuple[FakeKube, Counting, Clock, CachedKube]) -> None:
    _, _, _, cache = parts
    cache.get(path("Job", NS, "a"))  # listed (empty)
    event = job("a", 1 << 40)
    event["metadata"]["managedFields"] = [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}]
    event["spec"] = {"suspend": False, "completions": 2, "template": {"spec": {"containers": []}}}
    event["status"] = {"active": 1}
    cache.observe("Job", "MODIFIED", event)
    stored = cache.get(path("Job", NS, "a"))
    assert stored == {**event, "metadata": {k: v for k, v in event["metadata"].items() if k != "managedFields"},
                      "spec": {"suspend": False, "completions": 2}}  # fmt: skip
    assert "managedFields" in event["metadata"], "the event's object is unchanged"
    assert "template" in event["spec"]
    pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": NS, "resourceVersion": "1"}, "spec": {}, "status": {}}
    assert slim(pod) == {"kind": "Pod", "metadata": pod["metadata"], "status": {}}


def test_a_list_each_interval_drops_what_the_watch_missed_and_keeps_what_is_newer(
    parts: tuple[FakeKube, Counting, Clock, CachedKube],
) -> None:
    fake, server, clock, cache = parts
    fake.create(path("Job", NS), job("gone", 0))
    assert cache.get(path("Job", NS, "gone")) is not None
    fake.delete(path("Job", NS, "gone"))  # its DELETED event never came (a watch re-opened meanwhile)
    clock.now = 29.0
    assert cache.get(path("Job", NS, "gone")) is not None
    clock.now = 30.0
    assert cache.get(path("Job", NS, "gone")) is None
    cache.observe("Job", "ADDED", job("fresh", 1 << 40))  # newer than any list so far
    clock.now = 60.0
    assert cache.get(path("Job", NS, "fresh")) is not None
    assert server.requests.count("list_versioned") == 3


def test_simple_selectors_only() -> None:
    assert parse_selector("a=b,c==d") is None
    assert parse_selector("a=b, c=d") == {"a": "b", "c": "d"}
    assert parse_selector("a!=b") is None
    assert parse_selector("a") is None
    assert parse_selector(None) == {}

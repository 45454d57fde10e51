"""HA by default: derived peering priorities, kopf's pause rule read from the peering object, and the resync
thread that skips its passes while this replica is paused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from urllib3.exceptions import MaxRetryError

from kubetune.handlers import parse_args
from kubetune.handlers.peering import (
    TIEBREAK_RANGE,
    Membership,
    PeeringGate,
    active_in,
    derived_priority,
    own_identity,
    peering_urls,
)
from kubetune.handlers.resync import Resync
from kubetune.k8s.interface import KubeError, Obj

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def record(priority: int, seen: timedelta = timedelta(0), lifetime: int = 60) -> dict[str, Any]:
    """A keep-alive as kopf writes it, last seen `seen` before NOW."""
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - seen).isoformat()}


def test_the_older_replica_outranks_the_newer_and_explicit_priorities_outrank_both() -> None:
    older = derived_priority(NOW, TIEBREAK_RANGE - 1)
    newer = derived_priority(NOW + timedelta(milliseconds=1), 0)
    assert older > newer
    assert derived_priority(NOW, 1) != derived_priority(NOW, 2), "same millisecond, distinct priorities"
    assert max(older, newer) < 0 <= parse_args(["--priority", "0"]).priority
    assert abs(derived_priority(datetime(2100, 1, 1, tzinfo=UTC), 999)) < 2**53, "exact in JSON numbers"
    with pytest.raises(ValueError, match="tiebreak"):
        derived_priority(NOW, TIEBREAK_RANGE)


def test_membership_derives_a_priority_only_when_none_is_given() -> None:
    assert parse_args(["--peering", "kubetune"]).priority is None
    derived = Membership.derive({"POD_ID": "op-abc"}, ["ml"], None, NOW)
    assert (derived.identity, derived.namespaces) == ("op-abc", ("ml",))
    assert derived.priority < 0
    assert Membership.derive({}, [], 7, NOW).priority == 7
    assert own_identity({}, NOW) != own_identity({}, NOW + timedelta(seconds=1))


@pytest.mark.parametrize(
    ("peers", "active"),
    [
        ({"me": record(5)}, True),
        ({"me": record(5), "low": record(4)}, True),
        ({"me": record(5), "high": record(6)}, False),
        ({"me": record(5), "same": record(5)}, False),  # kopf pauses every operator of the same priority
        ({"me": record(5), "high": record(6, seen=timedelta(seconds=61))}, True),  # a dead peer blocks nothing
        ({"me": record(5), "high": record(6, lifetime=0)}, True),  # kopf's goodbye: lifetime 0
        ({}, False),  # kopf starts paused until its own keep-alive is recorded
        ({"me": record(5, seen=timedelta(seconds=90))}, False),
        ({"me": record(5), "odd": {"priority": "x", "lastseen": NOW.isoformat()}}, False),
        ({"me": record(5), "broken": {"lastseen": "yesterday"}}, True),
    ],
)
def test_kopfs_pause_rule(peers: dict[str, Any], active: bool) -> None:
    assert active_in(peers, "me", 5, NOW) is active


class Peerings:
    """The peering objects as an API server would return them (a KubeClient `get` is all the gate uses)."""

    def __init__(self, objects: dict[str, Obj | None], error: Exception | None = None) -> None:
        self.objects = objects
        self.error = error
        self.reads = 0

    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.objects.get(url)


def live(identity: str, priority: int) -> dict[str, Any]:
    return {identity: {"priority": priority, "lifetime": 60, "lastseen": datetime.now(UTC).isoformat()}}


def test_the_gate_is_open_only_where_every_watched_namespace_lets_this_replica_work() -> None:
    me = Membership("me", -10, ("a", "b"))
    url_a, url_b = peering_urls("kubetune", me.namespaces)
    assert url_a == "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/kubetune"
    assert peering_urls("kubetune", ()) == ["/apis/kopf.dev/v1/clusterkopfpeerings/kubetune"]
    alone = {"status": live("me", -10)}
    assert PeeringGate(Peerings({url_a: alone, url_b: alone}), me, "kubetune")()  # type: ignore[arg-type]
    outranked = {"status": {**live("me", -10), **live("debugger", 0)}}
    assert not PeeringGate(Peerings({url_a: alone, url_b: outranked}), me, "kubetune")()  # type: ignore[arg-type]
    assert not PeeringGate(Peerings({url_a: alone}), me, "kubetune")(), "a missing peering object pauses"  # type: ignore[arg-type]
    down = Peerings({}, KubeError(503, "Service Unavailable", "etcd is down"))
    assert not PeeringGate(down, me, "kubetune")()  # type: ignore[arg-type]


def test_the_gate_reads_the_peering_at_most_once_per_max_age() -> None:
    me = Membership("me", -10, ())
    (url,) = peering_urls("kubetune", ())
    peerings = Peerings({url: {"status": live("me", -10)}})
    gate = PeeringGate(peerings, me, "kubetune", max_age=60)  # type: ignore[arg-type]
    assert all(gate() for _ in range(20))
    assert peerings.reads == 1
    peerings.objects[url] = {"status": {**live("me", -10), **live("debugger", 0)}}
    assert gate(), "within max_age the last verdict stands"
    gate.max_age = 0
    assert not gate()
    assert peerings.reads == 2


def test_an_unreachable_api_server_pauses_and_is_asked_once_per_max_age() -> None:
    me = Membership("me", -10, ())
    down = Peerings({}, MaxRetryError(None, "/apis/kopf.dev", "connection refused"))  # type: ignore[arg-type]
    gate = PeeringGate(down, me, "kubetune", max_age=60)  # type: ignore[arg-type]
    assert not any(gate() for _ in range(20))
    assert down.reads == 1


def test_the_resync_skips_its_passes_while_paused_and_resumes_after() -> None:
    calls: list[str] = []
    active = [False]
    resync = Resync(60, {"FineTuneJob": lambda namespace, name: calls.append(name)}, gate=lambda: active[0])
    resync.track("FineTuneJob", "ns", "a", True)
    resync.run_once()
    assert calls == []
    active[0] = True
    resync.run_once()
    assert calls == ["a"]


def test_a_gate_that_fails_skips_the_pass_without_ending_the_thread() -> None:
    calls: list[str] = []

    def unreachable() -> bool:
        raise OSError("connection refused")

    resync = Resync(60, {"FineTuneJob": lambda namespace, name: calls.append(name)}, gate=unreachable)
    resync.track("FineTuneJob", "ns", "a", True)
    resync.run_once()
    assert calls == []

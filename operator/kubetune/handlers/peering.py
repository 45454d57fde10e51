"""HA with kopf peering that works without per-replica flags, and a view of kopf's pause for our own thread.

kopf pauses an operator while another live peer has a higher *or the same* priority. Replicas of one
Deployment share their arguments, so a fixed `--priority` would pause all of them. Without `--priority`,
each replica derives its own from its start time: the oldest live replica ranks highest, so a
replacement pod joins as standby instead of taking the work over from a healthy replica, and any
explicit `--priority N >= 0` (kopf's way to let a debugging operator pause the deployed ones) outranks
every derived priority, which are negative.

kopf does not expose its pause to handlers or threads, so `PeeringGate` applies kopf's rule to the
peering objects kopf writes: the resync thread and the work queue's workers, which run outside kopf, reconcile
only while this replica is the one kopf lets work.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from urllib3.exceptions import HTTPError

from kubetune.k8s.interface import KubeClient, KubeError

log = logging.getLogger(__name__)

PRIORITY_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
TIEBREAK_RANGE = 1000
"""Derived priorities are -(milliseconds since PRIORITY_EPOCH * 1000 + a random tiebreak): distinct even for
replicas started in the same millisecond (unless they also draw the same tiebreak), and below 2**53."""
MEMBERSHIP_KEY = "peering"
"""Where `kubetune operator` puts its `Membership` in kopf's memo."""
KOPF_DEFAULT_LIFETIME = 60
"""What kopf assumes for a peer that did not record its lifetime."""


def derived_priority(started: datetime, tiebreak: int) -> int:
    """Negative and strictly decreasing with the start time: the earlier replica outranks the later one."""
    if not 0 <= tiebreak < TIEBREAK_RANGE:
        raise ValueError(f"tiebreak must be in [0, {TIEBREAK_RANGE})")
    milliseconds = int((started - PRIORITY_EPOCH) / timedelta(milliseconds=1))
    return -(milliseconds * TIEBREAK_RANGE + tiebreak)


def own_identity(environ: Mapping[str, str], started: datetime) -> str:
    """kopf's convention (POD_ID when set), else host, process and start time: unique per replica."""
    pod = environ.get("POD_ID")
    if pod:
        return pod
    return f"{socket.gethostname()}/{os.getpid()}/{started:%Y%m%d%H%M%S}"


def peer_alive(record: Mapping[str, Any], now: datetime) -> bool:
    """kopf's liveness of a peer record: last seen plus its lifetime is still ahead."""
    try:
        lastseen = datetime.fromisoformat(str(record["lastseen"]))
        lifetime = int(record.get("lifetime", KOPF_DEFAULT_LIFETIME))
    except (KeyError, TypeError, ValueError):
        return False
    if lastseen.tzinfo is None:
        lastseen = lastseen.replace(tzinfo=UTC)
    return lastseen + timedelta(seconds=lifetime) > now


def active_in(status: Mapping[str, Any] | None, identity: str, priority: int, now: datetime) -> bool:
    """kopf's verdict for one peering object: this replica works once its own keep-alive is recorded and
    while no other live peer has a priority at least as high."""
    peers = dict(status or {})
    own = peers.pop(identity, None)
    if not isinstance(own, Mapping) or not peer_alive(own, now):
        return False
    for record in peers.values():
        if isinstance(record, Mapping) and peer_alive(record, now):
            try:
                other = int(record.get("priority", 0))
            except (TypeError, ValueError):
                return False  # a live peer of unknown rank: pausing is the side that never double-handles
            if other >= priority:
                return False
    return True


def peering_urls(name: str, namespaces: Sequence[str]) -> list[str]:
    """The peering objects kopf uses: one per watched namespace, or the cluster-wide one."""
    if not namespaces:
        return [f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"]
    return [f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}" for namespace in namespaces]


@dataclass(frozen=True)
class Membership:
    """Who this replica is among its peers; built by `kubetune operator` and carried to startup in kopf's memo."""

    identity: str
    priority: int
    namespaces: tuple[str, ...]
    """Watched namespaces; empty for a cluster-wide operator."""

    @classmethod
    def derive(
        cls, environ: Mapping[str, str], namespaces: Sequence[str], priority: int | None, started: datetime
    ) -> Membership:
        chosen = derived_priority(started, random.randrange(TIEBREAK_RANGE)) if priority is None else priority
        return cls(own_identity(environ, started), chosen, tuple(namespaces))


class PeeringGate:
    """Callable: is this replica the one kopf lets work right now? Reads the peering objects, at most once per
    `max_age` seconds (every worker asks before each reconcile; one read serves them all); a missing or unreadable
    one counts as paused (kopf pauses while its mandatory peering is missing), and an unreachable API server costs
    one read and one warning per `max_age` too, not one per queued key."""

    def __init__(self, kube: KubeClient, membership: Membership, name: str, max_age: float = 0.0) -> None:
        self.kube = kube
        self.membership = membership
        self.urls = peering_urls(name, membership.namespaces)
        self.max_age = max_age
        self.was_active: bool | None = None
        self._read_at = -float("inf")
        self._guard = threading.Lock()

    def __call__(self) -> bool:
        with self._guard:
            if self.was_active is not None and time.monotonic() - self._read_at < self.max_age:
                return self.was_active
            active = self._read()
            self._read_at = time.monotonic()
            if active != self.was_active:
                log.info("reconciling %s", "active: this replica leads its peers" if active else "paused, like kopf")
                self.was_active = active
            return active

    def _read(self) -> bool:
        now = datetime.now(UTC)
        try:
            return all(self._active_in(url, now) for url in self.urls)
        except (KubeError, HTTPError, OSError) as error:  # refused, or unreachable: a verdict too, kept for max_age
            log.warning("cannot read the peering state (%s): reconciles wait", error)
            return False

    def _active_in(self, url: str, now: datetime) -> bool:
        peering = self.kube.get(url)
        status = (peering or {}).get("status")
        return active_in(status, self.membership.identity, self.membership.priority, now)

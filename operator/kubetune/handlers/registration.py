"""kopf glue for a reconciled kind, written once: one watch-event handler per kind, which only enqueues.

Only `kopf.on.event` is used: kopf's change handlers (create/update/resume) keep their progress and the last
handled spec in annotations, which costs two patches of every object per change. The level-based reconcile needs
neither: it compares the spec's generation with `status.observedGeneration` itself, and the watch's initial
listing brings every object once when the operator starts. An event whose reconcile inputs
(`plan.reconcile_inputs`) did not change since the last one (the operator's own status write, the trainer's
progress) is not enqueued. Every event keeps the resync set current; a deletion drops local state.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import kopf

from kubetune.decisions.plan import reconcile_inputs, settled
from kubetune.handlers.kinds import Kind
from kubetune.handlers.runtime import runtime_of
from kubetune.handlers.workqueue import Key


class SeenInputs:
    """The last reconcile inputs seen per object (a short digest each), dropped when the object is deleted."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._digests: dict[Key, str] = {}

    def changed(self, key: Key, digest: str) -> bool:
        with self._guard:
            if self._digests.get(key) == digest:
                return False
            self._digests[key] = digest
            return True

    def forget(self, key: Key) -> None:
        with self._guard:
            self._digests.pop(key, None)

    def __len__(self) -> int:
        with self._guard:
            return len(self._digests)


def register_kind(registry: kopf.OperatorRegistry, kind: Kind[Any]) -> SeenInputs:
    """Returns the handler's memory of reconcile inputs (tests check that deletions empty it)."""
    resource = kind.resource
    gvr = (resource.group, resource.version, resource.plural)
    seen_inputs = SeenInputs()

    async def seen(event: Mapping[str, Any], namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
        runtime = runtime_of(memo)
        body = dict(event["object"])
        key = (resource.kind, namespace or "", name)
        runtime.observe(resource.kind, event.get("type"), body)
        if event.get("type") == "DELETED":
            seen_inputs.forget(key)
            kind.phases.set(key[1], name, None)
            if runtime.resync is not None:
                runtime.resync.track(*key, wanted=False)
            return
        if runtime.resync is not None:
            runtime.resync.track(*key, wanted=not settled(resource.kind, body))
        if seen_inputs.changed(key, reconcile_inputs(resource.kind, body)):
            runtime.enqueue(*key, first=not body.get("status"))  # new: its user sees nothing until it is reconciled

    kopf.on.event(*gvr, id=f"{resource.kind.lower()}_seen", registry=registry)(seen)
    return seen_inputs

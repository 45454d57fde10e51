"""kopf glue for a reconciled kind, written once: every trigger runs the same level-based reconcile.

Create, resume (operator start) and spec updates reconcile at once; every watch event keeps the
resync set current, and a deletion only drops local state (children go through garbage collection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kubetune.decisions.plan import settled
from kubetune.handlers.kinds import Kind
from kubetune.handlers.runtime import runtime_of


def register_kind(registry: kopf.OperatorRegistry, kind: Kind[Any]) -> None:
    resource = kind.resource
    gvr = (resource.group, resource.version, resource.plural)
    prefix = resource.kind.lower()

    def changed(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
        kind.reconcile(runtime_of(memo), namespace or "", name)

    def seen(event: Mapping[str, Any], body: Any, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
        runtime = runtime_of(memo)
        gone = event.get("type") == "DELETED"
        if runtime.resync is not None:
            wanted = not gone and not settled(resource.kind, body)
            runtime.resync.track(resource.kind, namespace or "", name, wanted)
        if gone:
            kind.phases.set(namespace or "", name, None)
            runtime.locks.forget(resource.kind, namespace or "", name)

    kopf.on.resume(*gvr, id=f"{prefix}_changed", registry=registry)(changed)
    kopf.on.create(*gvr, id=f"{prefix}_changed", registry=registry)(changed)
    kopf.on.update(*gvr, field="spec", id=f"{prefix}_changed", registry=registry)(changed)
    kopf.on.event(*gvr, id=f"{prefix}_seen", registry=registry)(seen)

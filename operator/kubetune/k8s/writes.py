"""Side effects: apply children, write status only when it changed, post Events for transitions."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from kubetune.api.v1alpha1.pod_contract import OPERATOR_FIELD_MANAGER, TRAINER_FIELD_MANAGER
from kubetune.k8s.interface import RESOURCES, KubeClient, KubeError, Obj, path

log = logging.getLogger(__name__)
APPLIED_MAX_AGE = 600.0
"""Seconds `AppliedOnce` trusts an apply: three writes per namespace every ten minutes at most."""


class ChildRejectedError(Exception):
    """The API server refused a rendered child as invalid (422) and re-creating it cannot help: the spec
    renders something the cluster cannot store (a webhook or a validation the CRD does not repeat). The
    reconcile reports it in status once, instead of retrying the same request forever."""

    def __init__(self, manifest: Obj, error: KubeError) -> None:
        meta = manifest["metadata"]
        super().__init__(f"the API server rejected the {manifest['kind']} {meta['name']} rendered from it: {error}")


def apply_all(kube: KubeClient, manifests: list[Obj], *, started: bool = True) -> dict[str, Obj]:
    """Applies in order; returns the stored objects by kind. Raises ChildRejectedError for a child the API
    server finds invalid (other than an existing Job's immutable template).

    A Job's pod template is immutable. Before the run started (spec edits are allowed until then, e.g.
    while queued) the Job is deleted and re-created by the next reconcile. After it started only
    `suspend` is carried over: the run keeps the template it started with (e.g. across an upgrade).
    """
    stored: dict[str, Obj] = {}
    for manifest in manifests:
        try:
            stored[manifest["kind"]] = kube.apply(manifest)
        except KubeError as error:
            if error.status != 422:
                raise
            meta = manifest["metadata"]
            url = path(manifest["kind"], meta["namespace"], meta["name"])
            if manifest["kind"] != "Job" or kube.get(url, metadata_only=True) is None:
                raise ChildRejectedError(manifest, error) from None
            if not started:
                log.info("Job %s/%s changed before it started; re-creating it", meta["namespace"], meta["name"])
                kube.delete(url)
                continue
            log.warning("Job %s/%s differs in immutable fields; only suspend is updated", *meta_key(meta))
            stored["Job"] = kube.merge_patch(url, {"spec": {"suspend": manifest["spec"]["suspend"]}})
    return stored


def meta_key(meta: Obj) -> tuple[str, str]:
    return str(meta["namespace"]), str(meta["name"])


def write_status(kube: KubeClient, stored: Obj, desired: dict[str, Any]) -> bool:
    """One server-side apply of the operator's status fields, skipped when nothing changed.

    Fields the operator does not send (progress, result) stay owned by the trainer's field manager.
    """
    current = stored.get("status") or {}
    if all(current.get(key) == value for key, value in desired.items()):
        return False
    meta = stored["metadata"]
    kind = stored["kind"]
    body = {
        "apiVersion": RESOURCES[kind].api_version,
        "kind": kind,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "status": desired,
    }
    kube.apply(body, subresource="status")
    return True


def write_trainer_status(kube: KubeClient, kind: str, namespace: str, name: str, trainer_fields: Obj) -> None:
    """Writes the trainer's status fields in its place, under its field manager: only for a result the trainer
    left in its termination message because its own write never landed (the trainer has exited by then).
    Every field the trainer owns is sent (its last progress with the result), as the trainer itself does."""
    body = {
        "apiVersion": RESOURCES[kind].api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "status": trainer_fields,
    }
    kube.apply(body, subresource="status", field_manager=TRAINER_FIELD_MANAGER)


def emit_event(kube: KubeClient, involved: Obj, *, event_type: str, reason: str, message: str, timestamp: str) -> None:
    """A core/v1 Event on the object; failures are logged, never raised (Events are best effort)."""
    meta = involved["metadata"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
        "source": {"component": OPERATOR_FIELD_MANAGER},
        "reportingComponent": OPERATOR_FIELD_MANAGER,
        "reportingInstance": socket.gethostname()[:128],
    }
    try:
        kube.create(path("Event", meta["namespace"]), event)
    except KubeError as error:
        log.warning("cannot post Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], error)


class AppliedOnce:
    """Manifests applied once per process, found again by namespace and digest: the namespace's trainer identity is
    applied by the first run there that needs it and not by the next ones (three writes less per run). A settings
    change renders other manifests, so it applies again; so does a restart (a fresh process, idempotent apply), and
    so does the first run after `max_age` seconds, which bounds how long runs would wait for a ServiceAccount that
    was deleted meanwhile (with its namespace, re-created under the same name, or by hand).

    One lock per key: the reconciles of a burst in a new namespace wait for the first apply instead of repeating it.
    """

    def __init__(self, max_age: float = APPLIED_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age, self.clock = max_age, clock
        self._applied: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def apply(self, kube: KubeClient, manifests: list[Obj]) -> None:
        if not manifests:
            return
        namespace = str(manifests[0]["metadata"]["namespace"])
        key = (namespace, hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest())
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            applied = self._applied.get(key)
            if applied is not None and self.clock() - applied < self.max_age:
                return
            apply_all(kube, manifests)
            self._applied[key] = self.clock()

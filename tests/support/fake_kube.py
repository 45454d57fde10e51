"""An in-memory API server for fast controller tests: the `KubeClient` verbs over a dict of objects.

It implements what the controllers rely on, no more: objects addressed by the same URLs as the real
client, server-side apply with field ownership per manager (a manager's applied fields are set, the
fields it stops sending are removed unless another manager owns them, force takes fields over),
status subresources, generation and resourceVersion, metadata-only reads, label selectors,
generateName, background deletion of dependents, and the Job's immutable pod template (422).
Nothing runs behind it: a test plays the Job controller, the kubelet and the trainer itself.
Integration tests run the same controllers against a real API server.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from kubetune.api.v1alpha1.pod_contract import OPERATOR_FIELD_MANAGER, TRAINER_FIELD_MANAGER
from kubetune.k8s.interface import RESOURCES, KubeError, Obj, path

Key = tuple[str, str, str]
"""(kind, namespace, name)"""
FieldPath = tuple[str, ...]
WITH_STATUS = frozenset({"FineTuneJob", "Adapter", "Job", "Pod"})
"""Kinds whose status is a subresource: an apply of the object ignores status and the other way round."""
IDENTITY = frozenset({("metadata", "name"), ("metadata", "namespace"), ("apiVersion",), ("kind",)})
JOB_CONTROLLER = "kube-controller-manager"
CREATOR = "kubectl-create"
_URL = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<ns>[^/]+)/(?P<rest>.+)$"
)
_KINDS = {(r.api_version, r.plural): r.kind for r in RESOURCES.values()}


def parse(url: str) -> tuple[str, str, str | None, str | None]:
    """kind, namespace, name, subresource of a URL made by `path`."""
    match = _URL.match(url)
    if match is None:
        raise KubeError(404, "NotFound", f"the fake serves no {url}")
    api_version = match["core"] or f"{match['group']}/{match['version']}"
    plural, *rest = match["rest"].split("/")
    kind = _KINDS[(api_version, plural)]
    return kind, match["ns"], rest[0] if rest else None, rest[1] if len(rest) > 1 else None


def leaves(value: Any, prefix: FieldPath = ()) -> dict[FieldPath, Any]:
    """Field paths of an applied configuration: maps are walked, lists and scalars are owned whole."""
    if isinstance(value, dict) and value:
        out: dict[FieldPath, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, (*prefix, key)))
        return out
    return {prefix: value}


def _get(obj: Obj, field: FieldPath) -> Any:
    node: Any = obj
    for key in field:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(obj: Obj, field: FieldPath, value: Any) -> None:
    node = obj
    for key in field[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[field[-1]] = copy.deepcopy(value)


def _remove(obj: Obj, field: FieldPath) -> None:
    parents = [obj]
    for key in field[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(field[-1], None)
    for depth in range(len(parents) - 1, 0, -1):  # prune maps the removal emptied
        if not parents[depth]:
            parents[depth - 1].pop(field[depth - 1], None)


def _merge_patch(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _selected(obj: Obj, selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    pairs = [term.split("=", 1) for term in (selector or "").split(",") if term]
    return all(labels.get(key) == value for key, value in pairs)


class FakeKube:
    """Satisfies `kubetune.k8s.interface.KubeClient`; extra keyword arguments let a test act as another
    field manager (the trainer, the Job controller)."""

    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}
        self.owners: dict[Key, dict[str, set[FieldPath]]] = {}
        self.writes: list[tuple[str, str, str]] = []
        """(verb, kind, name) of every change, so a test can assert that a reconcile changed nothing."""
        self._serial = itertools.count(1)

    # --- the KubeClient verbs ----------------------------------------------------------------------
    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        kind, namespace, name, _ = parse(url)
        stored = self.objects.get((kind, namespace, name or ""))
        if stored is None:
            return None
        if metadata_only:
            return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": stored["metadata"]}
        return copy.deepcopy(stored)

    def list(self, url: str, label_selector: str | None = None) -> list[Obj]:
        kind, namespace, _, _ = parse(url)
        found = [o for (k, ns, _), o in sorted(self.objects.items()) if (k, ns) == (kind, namespace)]
        return [copy.deepcopy(o) for o in found if _selected(o, label_selector)]

    def list_versioned(self, url: str, label_selector: str | None = None) -> tuple[list[Obj], str]:
        """`Kube.list_versioned`: the items and a revision newer than every change so far."""
        return self.list(url, label_selector), str(next(self._serial))

    def apply(
        self, manifest: Obj, *, subresource: str | None = None, field_manager: str = OPERATOR_FIELD_MANAGER
    ) -> Obj:
        kind, meta = manifest["kind"], manifest["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        if key not in self.objects:
            if subresource:
                raise KubeError(404, "NotFound", f"{kind} {meta['name']} not found")
            self.objects[key] = self._new(manifest)
            self.owners[key] = {}
        stored = self.objects[key]
        scope = self._scope(kind, subresource)
        applied = {f: v for f, v in leaves(manifest).items() if f not in IDENTITY and scope(f)}
        if kind == "Job" and not subresource and stored.get("spec"):
            template = _get(manifest, ("spec", "template"))
            if template is not None and template != _get(stored, ("spec", "template")):
                raise KubeError(422, "Invalid", "Job.batch is invalid: spec.template: field is immutable")
        before = copy.deepcopy(stored)
        owned = self.owners[key].setdefault(field_manager, set())
        others = {m: f for m, f in self.owners[key].items() if m != field_manager}
        for field in {f for f in owned if scope(f)} - applied.keys():
            if not any(field in theirs for theirs in others.values()):
                _remove(stored, field)
        for field, value in applied.items():
            for theirs in others.values():
                if field in theirs and _get(stored, field) != value:
                    theirs.discard(field)  # force: the applier takes the field over
            _set(stored, field, value)
        self.owners[key][field_manager] = {f for f in owned if not scope(f)} | applied.keys()
        return self._changed(key, before, "apply")

    def merge_patch(self, url: str, body: Obj, *, field_manager: str = OPERATOR_FIELD_MANAGER) -> Obj:
        kind, namespace, name, _ = parse(url)
        key = (kind, namespace, name or "")
        if key not in self.objects:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        before = copy.deepcopy(self.objects[key])
        _merge_patch(self.objects[key], body)
        self.owners[key].setdefault(field_manager, set()).update(leaves(body))
        return self._changed(key, before, "patch")

    def create(self, url: str, body: Obj) -> Obj:
        kind, namespace, _, _ = parse(url)
        meta = dict(body.get("metadata") or {})
        meta.setdefault("namespace", namespace)
        if "name" not in meta:
            meta["name"] = f"{meta.pop('generateName', kind.lower())}{next(self._serial):05d}"
        key = (kind, namespace, meta["name"])
        if key in self.objects:
            raise KubeError(409, "AlreadyExists", f"{kind} {meta['name']} already exists")
        manifest = {**body, "kind": kind, "apiVersion": RESOURCES[kind].api_version, "metadata": meta}
        if kind in WITH_STATUS:
            manifest.pop("status", None)  # status is written through its subresource only
        self.objects[key] = self._new(manifest)
        self.objects[key].update({k: copy.deepcopy(v) for k, v in manifest.items() if k != "metadata"})
        self.owners[key] = {CREATOR: set(leaves(manifest))}
        self.writes.append(("create", kind, meta["name"]))
        return copy.deepcopy(self.objects[key])

    def delete(self, url: str) -> None:
        kind, namespace, name, _ = parse(url)
        stored = self.objects.pop((kind, namespace, name or ""), None)
        if stored is None:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        self.writes.append(("delete", kind, name or ""))
        uid = stored["metadata"]["uid"]
        for key, obj in list(self.objects.items()):  # background propagation: dependents go too
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                self.delete(path(key[0], key[1], key[2]))

    # --- helpers for tests ---------------------------------------------------------------------------
    def stored(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((kind, namespace, name))

    def status_owners(self, kind: str, namespace: str, name: str) -> dict[str, set[str]]:
        """manager -> the top-level status fields it owns (managers owning none are left out)."""
        owners = self.owners.get((kind, namespace, name), {})
        found = {m: {f[1] for f in fields if f[:1] == ("status",) and len(f) > 1} for m, fields in owners.items()}
        return {manager: fields for manager, fields in found.items() if fields}

    def apply_status(self, kind: str, namespace: str, name: str, status: Obj, field_manager: str) -> Obj:
        """As another writer does it: the trainer, or the Job controller for a Job."""
        body = {"kind": kind, "metadata": {"name": name, "namespace": namespace}, "status": status}
        return self.apply(body, subresource="status", field_manager=field_manager)

    def trainer_reports(self, kind: str, namespace: str, name: str, status: Obj) -> Obj:
        return self.apply_status(kind, namespace, name, status, TRAINER_FIELD_MANAGER)

    def events(self, namespace: str) -> list[Obj]:
        """In the order they were posted."""
        return sorted(self.list(path("Event", namespace)), key=lambda e: int(e["metadata"]["resourceVersion"]))

    # --- internals ---------------------------------------------------------------------------------
    def _new(self, manifest: Obj) -> Obj:
        serial = next(self._serial)
        meta = manifest["metadata"]
        return {
            "apiVersion": manifest.get("apiVersion", RESOURCES[manifest["kind"]].api_version),
            "kind": manifest["kind"],
            "metadata": {
                **copy.deepcopy(meta),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": f"uid-{serial}",
                "creationTimestamp": "2026-11-29T11:00:00Z",
                "generation": 1,
                "resourceVersion": str(serial),
            },
        }

    @staticmethod
    def _scope(kind: str, subresource: str | None) -> Any:
        if subresource == "status":
            return lambda field: field[:1] == ("status",)
        if kind in WITH_STATUS:
            return lambda field: field[:1] != ("status",)
        return lambda field: True

    def _changed(self, key: Key, before: Obj, verb: str) -> Obj:
        stored = self.objects[key]
        if stored != before:
            meta = stored["metadata"]
            if stored.get("spec") != before.get("spec") and "spec" in before:
                meta["generation"] = int(meta["generation"]) + 1
            meta["resourceVersion"] = str(next(self._serial))
            self.writes.append((verb, key[0], key[2]))
        return copy.deepcopy(stored)

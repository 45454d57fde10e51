"""`kubetune lab run NAME --cluster`, the side-effect half: apply a lab's FineTuneJobs and Adapters, follow
them until they finish, and hand their run records to the lab's analysis.

It stands outside `kubetune.labs` so that the labs' logic never talks to the API server itself: the
runner gets this backend passed in. What the objects mean is `kubetune.labs.cluster` (pure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.config import ConfigException
from urllib3.exceptions import HTTPError

from kubetune.k8s.client import Kube
from kubetune.k8s.interface import KubeClient, KubeError, path
from kubetune.labs.cluster import (
    ADAPTER,
    FINETUNEJOB,
    adapter_record,
    in_namespace,
    job_record,
    observe,
    progress_line,
    waves,
)
from kubetune.labs.definition import LabError, name_of
from kubetune.labs.record import RunRecord

FIELD_MANAGER = "kubetune-lab"
UNREACHABLE = (KubeError, HTTPError)
"""What a read raises when the API server refuses or cannot be reached."""


def connect(kubeconfig: str | None) -> KubeClient:
    """The API server of `kubeconfig` (else in-cluster, KUBECONFIG or ~/.kube/config), or a LabError saying so."""
    try:
        return Kube.from_environment(kubeconfig)
    except ConfigException as error:
        raise LabError(f"no cluster to run on ({error}): pass --kubeconfig or set KUBECONFIG") from None


class ClusterLab:
    """Runs a lab's objects in `namespace` through the operator; one object of the lab already there is an
    error (a lab run starts from nothing, so its numbers are this run's)."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        *,
        timeout_seconds: float,
        poll_seconds: float = 2.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.say = say

    def train(self, documents: list[dict[str, Any]], *, isolate: bool = False) -> dict[str, RunRecord]:
        """FineTuneJobs wave by wave (a job starting from another's artifact waits for it); every job has its
        own pod, so `isolate` holds on a cluster anyway."""
        records: dict[str, RunRecord] = {}
        for wave in waves(in_namespace(documents, self.namespace)):
            finished = self._apply_and_wait(FINETUNEJOB, wave)
            records.update({name: job_record(obj) for name, obj in finished.items()})
        return records

    def merge(self, adapters: list[dict[str, Any]], sources: dict[str, RunRecord]) -> dict[str, RunRecord]:
        """Merge Adapters; the operator resolves their sources (the Adapters the lab's jobs published)."""
        finished = self._apply_and_wait(ADAPTER, in_namespace(adapters, self.namespace))
        return {name: adapter_record(obj) for name, obj in finished.items()}

    def _url(self, kind: str, name: str) -> str:
        return path(kind, self.namespace, name)

    def _apply_and_wait(self, kind: str, documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        names = [name_of(d) for d in documents]
        try:
            existing = [n for n in names if self.kube.get(self._url(kind, n)) is not None]
        except UNREACHABLE as error:
            raise LabError(f"cannot read {kind}s in namespace {self.namespace}: {error}") from None
        if existing:
            raise LabError(
                f"{kind} {', '.join(existing)} already in namespace {self.namespace}: a lab run starts from nothing; "
                "delete the lab's objects (kubectl delete -f with `kubetune lab manifests`) or use another --namespace"
            )
        for document in documents:
            try:
                self.kube.apply(document, field_manager=FIELD_MANAGER)
            except KubeError as error:
                raise LabError(f"{kind} {name_of(document)}: the API server refused it: {error}") from None
            self.say(f"kubetune lab: applied {kind} {self.namespace}/{name_of(document)}")
        return self._wait(kind, names)

    def _wait(self, kind: str, names: list[str]) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + self.timeout_seconds
        shown: dict[str, str] = {}
        pending = names
        while True:
            try:
                objects = {name: self.kube.get(self._url(kind, name)) for name in names}
            except UNREACHABLE as error:  # the jobs run on without us: keep following them until the deadline
                self.say(f"kubetune lab: reading {kind}s failed ({error}); retrying")
            else:
                for name, obj in objects.items():
                    line = progress_line(obj or {})
                    if shown.get(name) != line:
                        self.say(f"kubetune lab: {kind} {name}: {line}")
                        shown[name] = line
                observed = observe(kind, objects)
                if observed.failures:
                    raise LabError("; ".join(observed.failures))
                if not observed.pending:
                    return {name: obj for name, obj in objects.items() if obj is not None}
                pending = observed.pending
            if time.monotonic() > deadline:
                raise LabError(
                    f"{kind} {', '.join(pending)} not finished after {self.timeout_seconds:.0f}s "
                    f"(see `kubectl -n {self.namespace} describe {kind.lower()} NAME`); pass a longer --timeout"
                )
            time.sleep(self.poll_seconds)

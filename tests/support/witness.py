"""Remembers every training Job and Adapter uid ever seen per FineTuneJob while a scenario runs, so a child deleted and
created again between two final reads still shows up as a second uid."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kubetune.api.v1alpha1.pod_contract import COMPONENT_LABEL, JOB_LABEL, PREFLIGHT_COMPONENT

Lister = Callable[[str], list[dict[str, Any]]]
"""Lists the objects of a kind in the scenario's namespace."""


class Witness:
    """Polls in a background thread (every `interval` seconds) while used as a context manager."""

    def __init__(self, list_objects: Lister, interval: float = 0.2) -> None:
        self.list_objects = list_objects
        self.interval = interval
        self.jobs: dict[str, set[str]] = defaultdict(set)
        self.adapters: dict[str, set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Witness:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.look()

    def look(self) -> None:
        for job in self.list_objects("Job"):
            labels = job["metadata"].get("labels", {})
            if labels.get(COMPONENT_LABEL) != PREFLIGHT_COMPONENT:  # training Jobs: a preflight Job trains nothing
                self.jobs[labels.get(JOB_LABEL, "?")].add(job["metadata"]["uid"])
        for adapter in self.list_objects("Adapter"):
            source = adapter["spec"].get("source", {}).get("fineTuneJob", {}).get("name", "?")
            self.adapters[source].add(adapter["metadata"]["uid"])

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.look()

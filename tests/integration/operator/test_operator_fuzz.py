"""Fuzzed objects on the real API server never wedge the operator: FineTuneJobs and Adapters generated from the
CRDs' schemas are created (the API server rejects what breaks its schema or CEL rules; the rest is stored),
the operator gives every stored one a status for its generation without a traceback, and a valid
FineTuneJob created after them still runs."""

from __future__ import annotations

import itertools
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from kubetune.k8s.interface import KubeError
from kubetune_dev.controlplane.testing import wait_until
from support.structural_schema import crd_objects

pytestmark = [
    pytest.mark.integration,
    pytest.mark.tier_b,
    pytest.mark.filterwarnings("ignore:The recursion limit will not be reset"),  # cel-python, as in the unit test
    # the in-process operator's threads (kopf's jittered timers) draw from `random` while Hypothesis generates
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

EXAMPLES = {"FineTuneJob": 40, "Adapter": 30}
MAX_NODES = 2
"""Indexed Jobs of up to 512 pods are valid, but would flood a two-core control plane; the shape is what matters."""
ONLY_GENERATE = settings(
    deadline=None,
    database=None,
    phases=[Phase.generate],  # nothing fails inside (a rejection is an answer): nothing to shrink
    suppress_health_check=list(HealthCheck),
)
SEED = int(os.environ.get("KUBETUNE_FUZZ_SEED") or random.randrange(2**32))
"""New objects on every run; a failure names its seed, and KUBETUNE_FUZZ_SEED=N creates the same ones again."""


def bounded(document: dict[str, Any]) -> dict[str, Any]:
    resources = document["spec"].get("resources")
    if isinstance(resources, dict) and resources.get("nodes", 1) > MAX_NODES:
        resources["nodes"] = MAX_NODES
    return document


def has_status_for_its_generation(cluster: Any, kind: str, name: str) -> bool:
    stored = cluster.get(kind, name) or {}
    status = stored.get("status") or {}
    return bool(status.get("phase")) and status.get("observedGeneration") == stored["metadata"]["generation"]


def test_objects_the_api_server_accepts_never_wedge_the_operator(
    operator: Any, cluster: Any, namespace: str, ftj_factory: Any
) -> None:
    numbers = itertools.count()
    accepted: list[tuple[str, str]] = []
    rejected: list[str] = []
    objects = {
        "FineTuneJob": st.one_of(
            crd_objects("FineTuneJob", namespace, st.just(""), consistent_unions=True),
            crd_objects("FineTuneJob", namespace, st.just("")),
        ).map(bounded),
        "Adapter": st.one_of(
            crd_objects("Adapter", namespace, st.just(""), consistent_unions=True),
            crd_objects("Adapter", namespace, st.just("")),
        ),
    }

    def create(document: dict[str, Any]) -> None:
        kind = document["kind"]
        document["metadata"]["name"] = f"fuzz-{kind.lower()}-{next(numbers)}"
        try:
            cluster.kube.create(cluster.url(kind), document)
        except KubeError as error:
            if error.status != 422:
                raise
            rejected.append(str(error))
        else:
            accepted.append((kind, document["metadata"]["name"]))

    for kind, strategy in objects.items():
        seed(SEED)(settings(ONLY_GENERATE, max_examples=EXAMPLES[kind])(given(strategy)(create)))()
    stored = {kind: sum(1 for k, _ in accepted if k == kind) for kind in EXAMPLES}
    assert all(stored.values()), f"seed {SEED}: nothing stored of some kind: {stored}, {rejected[:3]}"
    for kind, name in accepted:
        wait_until(
            f"{kind} {name} (KUBETUNE_FUZZ_SEED={SEED}) to get a status",
            lambda k=kind, n=name: has_status_for_its_generation(cluster, k, n),
        )
    ftj_factory("after-fuzz", {"kwok.kubetune.io/keep-running": "true"})
    cluster.wait_phase("after-fuzz", "Running")

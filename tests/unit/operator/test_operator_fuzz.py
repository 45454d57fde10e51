"""Property-based: random valid and invalid objects through validation, render, status and one whole reconcile.

Objects come from the CRDs' own structural schemas (what the API server would store, CEL rules aside) and
from arbitrary JSON; observed Jobs and pods are shaped like the API's, with random values. Whatever comes
in, validation answers with a model or with problems (never an exception), a valid spec renders, status is
a valid status, and a reconcile against the in-memory API server ends with a written status.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kubetune.api.problems import validate
from kubetune.api.v1alpha1 import Adapter, FineTuneJob
from kubetune.api.v1alpha1.finetunejob import FineTuneJobStatus, TrainResult
from kubetune.api.v1alpha1.pod_contract import JOB_NAME_LABEL
from kubetune.controllers.adapter import reconcile_adapter
from kubetune.controllers.finetunejob import reconcile_finetunejob
from kubetune.decisions.observed import Observed
from kubetune.decisions.plan import plan, settled
from kubetune.decisions.status import compute_status, operator_fields
from kubetune.k8s.interface import path
from kubetune.render.adapter import published_adapter
from kubetune.render.bundle import bundle
from kubetune.render.names import job_name
from kubetune.settings import OperatorSettings
from support.fake_kube import FakeKube
from support.structural_schema import crd_objects, crd_schema, from_schema

pytestmark = [
    pytest.mark.unit,
    # cel-python's Environment sets sys.setrecursionlimit(2500) on first use; Hypothesis notes it, harmlessly
    pytest.mark.filterwarnings("ignore:The recursion limit will not be reset"),
]

NS = "ml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
FUZZ = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=15,
)


def junk(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Right kind and metadata, spec of arbitrary JSON under the real field names (or none of them)."""
    fields = sorted(crd_schema(kind)["properties"]["spec"]["properties"])
    spec = JSON | st.dictionaries(st.sampled_from(fields), JSON, max_size=6)
    return st.builds(
        lambda body: {"apiVersion": "kubetune.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": body},
        spec,
    )


FINETUNEJOBS = crd_objects("FineTuneJob", NS, st.just("run"), consistent_unions=True)
EXAMPLES = [
    {**doc, "metadata": {"name": "run", "namespace": NS}}
    for file in sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))
    for doc in yaml.safe_load_all(file.read_text())
    if doc and doc.get("kind") == "FineTuneJob"
]
LIKELY_VALID_FINETUNEJOBS = st.one_of(st.sampled_from(EXAMPLES), FINETUNEJOBS)
"""Tests that need a valid spec `assume` one: the CRD's CEL rules reject most drawn objects, so half are drawn
from the shipped examples (every one valid) to keep the share of discarded draws low."""
ADAPTERS = st.one_of(
    crd_objects("Adapter", NS, st.sampled_from(["merged", "legal"]), consistent_unions=True),
    crd_objects("Adapter", NS, st.sampled_from(["merged", "legal"])),
)
STORED_STATUS = from_schema(crd_schema("FineTuneJob")["properties"]["status"])
STORED_RESULTS = from_schema(crd_schema("FineTuneJob")["properties"]["status"]["properties"]["result"])

TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
)
REASONS = st.sampled_from(
    ["BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy", "Evicted", "OOMKilled", "Error", "Completed"]
) | st.text(max_size=20)
CONDITION = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Complete", "Failed", "Suspended", "SuccessCriteriaMet", "FailureTarget"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
    },
    optional={"reason": REASONS, "message": st.text(max_size=40), "lastTransitionTime": TIMES},
)
JOB_STATUS = st.fixed_dictionaries(
    {},
    optional={
        "active": st.integers(0, 4),
        "ready": st.integers(0, 4),
        "succeeded": st.integers(0, 4),
        "failed": st.integers(0, 10),
        "startTime": TIMES,
        "completionTime": TIMES,
        "conditions": st.lists(CONDITION, max_size=3),
    },
)
STATE = st.one_of(
    st.fixed_dictionaries({"running": st.fixed_dictionaries({}, optional={"startedAt": TIMES})}),
    st.fixed_dictionaries(
        {"waiting": st.fixed_dictionaries({}, optional={"reason": REASONS, "message": st.text(max_size=40)})}
    ),
    st.fixed_dictionaries(
        {
            "terminated": st.fixed_dictionaries(
                {"exitCode": st.integers(0, 255)},
                optional={"reason": REASONS, "message": st.text(max_size=80), "finishedAt": TIMES},
            )
        }
    ),
)
CONTAINER_STATUS = st.fixed_dictionaries(
    {"name": st.sampled_from(["trainer", "other"]), "state": STATE}, optional={"lastState": STATE}
)
POD_CONDITION = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["PodScheduled", "Ready", "DisruptionTarget"]),
        "status": st.sampled_from(["True", "False"]),
    },
    optional={
        "reason": st.sampled_from(["Unschedulable", "EvictionByEvictionAPI", "PreemptionByScheduler"]),
        "message": st.text(max_size=40),
    },
)
POD = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {"name": st.from_regex(r"run-train-[a-z0-9]{5}", fullmatch=True)},
            optional={"creationTimestamp": TIMES, "deletionTimestamp": TIMES},
        ),
        "status": st.fixed_dictionaries(
            {},
            optional={
                "phase": st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
                "reason": REASONS,
                "conditions": st.lists(POD_CONDITION, max_size=2),
                "containerStatuses": st.lists(CONTAINER_STATUS, max_size=2),
            },
        ),
    }
)
JOB = st.builds(
    lambda status, suspend: {"metadata": {"name": job_name("run")}, "spec": {"suspend": suspend}, "status": status},
    JOB_STATUS,
    st.booleans(),
)
OBSERVED = st.builds(
    Observed,
    job=st.none() | JOB,
    pods=st.lists(POD, max_size=3).map(tuple),
    missing_secrets=st.lists(st.sampled_from(["hf-token", "s3"]), max_size=1, unique=True).map(tuple),
    missing_pvcs=st.lists(st.sampled_from(["data"]), max_size=1).map(tuple),
)


@FUZZ
@given(st.one_of(FINETUNEJOBS, junk("FineTuneJob"), ADAPTERS, junk("Adapter")))
def test_validation_answers_with_a_model_or_problems_never_an_exception(document: dict[str, Any]) -> None:
    model = FineTuneJob if document["kind"] == "FineTuneJob" else Adapter
    found, problems = validate(model, document)
    assert (found is None) == bool(problems)
    for problem in problems:
        assert problem.message.strip(), problem
        assert problem.line("spec").startswith("spec")
    if found is not None:
        again, _ = validate(model, found.to_wire())
        assert again == found, "the wire form of a valid object is the same object"


@FUZZ
@given(LIKELY_VALID_FINETUNEJOBS)
def test_every_valid_spec_renders_children_the_api_server_can_name(document: dict[str, Any]) -> None:
    ftj, _ = validate(FineTuneJob, document)
    assume(ftj is not None)
    assert ftj is not None
    children = bundle(ftj, SETTINGS)
    assert children == bundle(ftj, SETTINGS), "render is deterministic"
    kinds = [child["kind"] for child in children]
    assert kinds.count("Job") == 1
    for child in children:
        assert child["metadata"]["namespace"] == NS
        assert 0 < len(child["metadata"]["name"]) <= (52 if child["kind"] == "Job" else 253)
        json.dumps(child)  # nothing but JSON goes to the API server


@FUZZ
@given(LIKELY_VALID_FINETUNEJOBS, STORED_STATUS, OBSERVED)
def test_status_is_a_valid_status_whatever_was_observed(
    document: dict[str, Any], stored: dict[str, Any], observed: Observed
) -> None:
    ftj, _ = validate(FineTuneJob, {**document, "metadata": {**document["metadata"], "generation": 2}})
    assume(ftj is not None)
    assert ftj is not None
    previous, _ = validate(FineTuneJobStatus, stored)
    ftj = ftj.model_copy(update={"status": previous})
    decided = plan(ftj, observed, "run")
    status = compute_status(ftj, observed, NOW, job_name("run"), decided.adapter_ref, conflict=decided.adapter_conflict)
    written = operator_fields(status)
    assert FineTuneJobStatus.model_validate(json.loads(json.dumps(written))).phase == status.phase
    types = [condition.type for condition in status.conditions]
    assert len(types) == len(set(types)), types
    assert {"Ready", "Reconciling", "Stalled"} <= set(types)
    assert status.observed_generation == 2
    settled("FineTuneJob", {"metadata": {"generation": 2}, "status": written})


@FUZZ
@given(LIKELY_VALID_FINETUNEJOBS, STORED_RESULTS)
def test_any_stored_result_publishes_a_valid_adapter(document: dict[str, Any], stored: dict[str, Any]) -> None:
    """`status.result` is written by the trainer (or recovered from its pod): whatever the API server stored
    there, the Adapter published from it is one the Adapter CRD accepts, so publishing cannot wedge the run."""
    ftj, _ = validate(FineTuneJob, {**document, "metadata": {**document["metadata"], "uid": "uid-1"}})
    assume(ftj is not None)
    assert ftj is not None
    result = TrainResult.model_validate(stored)
    adapter, problems = validate(Adapter, published_adapter(ftj, result))
    assert not problems, problems
    assert adapter is not None
    assert adapter.spec.artifact is not None
    assert adapter.spec.artifact.uri == result.artifact_uri


@FUZZ
@given(st.one_of(FINETUNEJOBS, junk("FineTuneJob")), st.lists(POD, max_size=2), st.none() | JOB_STATUS)
def test_a_reconcile_of_any_stored_finetunejob_ends_with_a_status(
    document: dict[str, Any], pods: list[dict[str, Any]], job_status: dict[str, Any] | None
) -> None:
    kube = FakeKube()
    kube.create(path("FineTuneJob", NS), {**document, "metadata": {"name": "run"}})
    assert reconcile_finetunejob(kube, NS, "run", SETTINGS, NOW) is not None
    if job_status is not None and kube.stored("Job", NS, job_name("run")) is not None:
        kube.apply_status("Job", NS, job_name("run"), job_status, "kube-controller-manager")
        for index, pod in enumerate(pods):
            name = f"run-train-{index}"
            labels = {JOB_NAME_LABEL: job_name("run")}
            kube.create(path("Pod", NS), {"metadata": {"name": name, "labels": labels}, "spec": {"containers": []}})
            kube.apply_status("Pod", NS, name, pod["status"], "kubelet")
        reconcile_finetunejob(kube, NS, "run", SETTINGS, NOW)
    stored = kube.stored("FineTuneJob", NS, "run") or {}
    assert FineTuneJobStatus.model_validate(stored["status"]).phase


@FUZZ
@given(ADAPTERS, ADAPTERS, st.one_of(ADAPTERS, junk("Adapter")))
def test_a_reconcile_of_any_stored_adapter_ends_with_a_status(
    first: dict[str, Any], second: dict[str, Any], document: dict[str, Any]
) -> None:
    kube = FakeKube()
    for source in (first, second):
        if kube.stored("Adapter", NS, source["metadata"]["name"]) is None:
            kube.create(path("Adapter", NS), source)
    kube.create(path("Adapter", NS), {**document, "metadata": {"name": "fuzzed"}})
    for name in ("legal", "merged", "fuzzed"):
        if kube.stored("Adapter", NS, name) is not None:
            assert reconcile_adapter(kube, NS, name, SETTINGS, NOW) in ("Pending", "Merging", "Ready", "Failed")

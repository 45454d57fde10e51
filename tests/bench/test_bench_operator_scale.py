"""The operator at scale, run by `make bench` only: FineTuneJobs created at 20/s and 50/s against a plain client
creating the same Jobs at the same rate, on the local control plane with kwok nodes.

The operator runs as a user runs it: `kubetune operator` as its own process, as the chart's ServiceAccount with
exactly the chart's RBAC, default settings (resync, backoffs, metrics on) except what kwok needs (pod annotations
copied from the FineTuneJob) and the chart's `check_secrets=false`, with the operator image's allocator settings
(`support.images.OPERATOR_ALLOCATOR_ENV`). Each FineTuneJob goes through its whole life:
created -> Job -> pod Running under kwok for a few seconds, during which the "trainer" (this test) writes
`status.result` -> Succeeded -> Adapter published and Ready. Then everything is deleted.

The preflight stays on, as users get it: the operator's answer to a create is the preflight Job, and the training
Job follows when kwok has run the preflight pod for RUN_FOR. Per row: latency from the create request to the first
Job's ADDED watch event (p50/p90/p99/max; the plain client's one Job), the time until all exist and the throughput
it gives against the plain client's; create -> training Job (p50/p99); the operator's API writes per lifecycle from
the apiserver's audit log (only the operator's ServiceAccount is counted), per run (its objects and the children named
after it; the goal is on the median run, the mean and the largest are printed: a run whose pod a reconcile sees
before kwok starts it writes one more status, Initializing); the operator's RSS before the round
(after a warm-up round: first reconciles import and compile what every later one reuses), at its peak, and after
everything was deleted. The plain client's row is the baseline of the same session.

KUBETUNE_BENCH_SCALE_COUNT sets N (default 300), KUBETUNE_BENCH_SCALE_RATES the rates (default 20,50);
KUBETUNE_BENCH_BEFORE=<checkout>/operator also runs that version of the operator in the same session and prints
after/before ratios (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.operator.conftest import finetunejob
from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import COMPONENT_LABEL, JOB_LABEL, TRAINER_COMPONENT, TRAINER_FIELD_MANAGER
from kubetune.k8s.client import Kube
from kubetune.k8s.interface import path
from kubetune.render.bundle import bundle
from kubetune.settings import OperatorSettings
from kubetune_dev.controlplane import LocalControlPlane, Tier
from kubetune_dev.controlplane.client import AdminClient, condition, object_path, wait_for
from kubetune_dev.controlplane.kwok import ANNOTATION_RUN_FOR, gpu_node
from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.operator_identity import grant_chart_identity
from support.images import OPERATOR_ALLOCATOR_ENV
from support.operator_process import OperatorProcess
from support.operator_scale import AuditLog, PeakRss, Watch, by_request, by_run, percentile

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
COUNT = int(os.environ.get("KUBETUNE_BENCH_SCALE_COUNT", "300"))
RATES = tuple(float(r) for r in os.environ.get("KUBETUNE_BENCH_SCALE_RATES", "20,50").split(","))
RUN_FOR = "5s"
NODES = 2 + COUNT // 100  # 110 pods each: every round's pods fit at once, Succeeded ones included
WARM_UP = 5
GOAL_P99_AT_20 = 1.0
GOAL_WRITES = 8.0
GOAL_RSS_GROWTH = 1.10
GOAL_THROUGHPUT = 0.5
BEFORE = os.environ.get("KUBETUNE_BENCH_BEFORE")
SETTLE_AFTER_DELETE = 2 * OperatorSettings().resync_seconds + 5
"""The operator gives free memory back after each resync pass with nothing to do (kubetune.handlers.memory); the
read cache forgets a deletion at the first pass one interval after it (kubetune.k8s.cache), so the second pass
after the last deletion is the first one that finds everything of the round gone."""
SETTINGS = {
    "KUBETUNE_POD_ANNOTATION_PREFIXES": "kwok.kubetune.io/",
    "KUBETUNE_CHECK_SECRETS": "false",
    "KUBETUNE_TRAINER_IMAGE": "kubetune/trainer:bench",
}


@dataclass
class Round:
    who: str
    rate: float
    latencies: list[float]
    achieved_rate: float
    all_exist: float
    writes: Counter[str] = field(default_factory=Counter)
    """Request -> count, all runs together."""
    per_run: list[int] = field(default_factory=list)
    """Each run's writes (its objects and the children named after it)."""
    shared_writes: int = 0
    """Writes no run's name covers: the namespace's trainer identity, applied once (in the warm-up round)."""
    writes_after_delete: int = 0
    lifecycle: float = 0.0
    to_training: list[float] = field(default_factory=list)
    """Create -> training Job: the preflight pod's run (kwok's RUN_FOR) and two reconciles in between."""
    rss: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.all_exist


@dataclass
class Variant:
    """An operator version with its own namespace, identity and process."""

    name: str
    namespace: str
    operator: OperatorProcess
    audit: AuditLog


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    running = LocalControlPlane(tmp_path_factory.mktemp("controlplane")).start(Tier.B)
    try:
        api = running.client
        for crd_file in sorted((REPO / "crds").glob("*.yaml")):
            crd = api.apply(yaml.safe_load(crd_file.read_text()))
            wait_for(
                f"{crd_file.name} Established", lambda crd=crd: _true(api.get(object_path(crd)), "Established"), 30
            )
        for index in range(2, NODES):
            api.create("/api/v1/nodes", gpu_node(index))
            wait_for(f"node {index} Ready", lambda i=index: _true(api.get(f"/api/v1/nodes/kwok-gpu-{i}"), "Ready"), 60)
        yield running
    finally:
        running.stop()


def _established(api: AdminClient, crd: dict[str, Any]) -> bool:
    return _true(api.get(object_path(crd)), "Established")


def _true(obj: dict[str, Any], kind: str) -> bool:
    found = condition(obj, kind)
    return bool(found and found["status"] == "True")


def _namespace(api: AdminClient, name: str) -> str:
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def body(name: str, namespace: str) -> dict[str, Any]:
    return finetunejob(name, namespace, {ANNOTATION_RUN_FOR: RUN_FOR}, resources={"gpus": 0})


def paced(count: int, rate: float, create: Any) -> tuple[dict[str, float], float]:
    """Calls create(i) at `rate` per second; returns {i's name: monotonic time of the call} and the achieved rate."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        name, at = create(i)
        sent[name] = at
    return sent, count / max(time.monotonic() - start, 1e-9)


def raw_client_round(kube: Kube, api: AdminClient, namespace: str, rate: float) -> Round:
    """The same Jobs the operator renders, created by a plain client (no owner, the namespace's default
    ServiceAccount: the run's own does not exist here)."""
    seen: dict[str, float] = {}

    def on_job(kind: str, obj: dict[str, Any], at: float) -> None:
        if kind == "ADDED":
            seen.setdefault(obj["metadata"]["name"], at)

    settings = OperatorSettings.from_env(SETTINGS)

    def create(i: int) -> tuple[str, float]:
        document = body(f"raw{int(rate)}-{i}", namespace)
        job = bundle(FineTuneJob.model_validate(document), settings)[-1]
        job["spec"]["template"]["spec"]["serviceAccountName"] = "default"
        at = time.monotonic()
        kube.create(path("Job", namespace), job)
        return job["metadata"]["name"], at

    with Watch(api, path("Job", namespace), on_job) as watch:
        sent, achieved = paced(COUNT, rate, create)

        def all_seen() -> bool:
            watch.check()
            return set(sent) <= set(seen)

        wait_until("every Job", all_seen, timeout=300, interval=0.5)
    latencies = [seen[name] - at for name, at in sent.items()]
    result = Round("plain client", rate, latencies, achieved, max(seen.values()) - min(sent.values()))
    delete_all(kube, namespace, deleted=("Job",), gone=("Job", "Pod"))
    return result


class Lifecycles:
    """Watch handlers of one operator round: when each run's first Job (the preflight Job) and its training Job
    appeared, the trainer's result written while its training pod runs (what a real trainer writes before it
    exits, as tests/integration do), which runs finished."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.jobs: dict[str, float] = {}
        self.training_jobs: dict[str, float] = {}
        self.succeeded: set[str] = set()
        self.ready: set[str] = set()
        self.reported: set[str] = set()
        self.results = ThreadPoolExecutor(4)

    def handlers(self) -> dict[str, Callable[[str, dict[str, Any], float], None]]:
        return {"Job": self.on_job, "Pod": self.on_pod, "FineTuneJob": self.on_ftj, "Adapter": self.on_adapter}

    def on_job(self, kind: str, obj: dict[str, Any], at: float) -> None:
        labels = obj["metadata"].get("labels", {})
        owner = labels.get(JOB_LABEL)
        if kind == "ADDED" and owner:
            self.jobs.setdefault(owner, at)
            if labels.get(COMPONENT_LABEL) == TRAINER_COMPONENT:
                self.training_jobs.setdefault(owner, at)

    def on_pod(self, kind: str, obj: dict[str, Any], at: float) -> None:
        labels = obj["metadata"].get("labels", {})
        owner = labels.get(JOB_LABEL) if labels.get(COMPONENT_LABEL) == TRAINER_COMPONENT else None
        if owner and obj.get("status", {}).get("phase") == "Running" and owner not in self.reported:
            self.reported.add(owner)
            self.results.submit(self.report_result, owner)

    def on_ftj(self, kind: str, obj: dict[str, Any], at: float) -> None:
        status = obj.get("status") or {}
        if status.get("phase") == "Succeeded" and status.get("adapterRef"):
            self.succeeded.add(obj["metadata"]["name"])

    def on_adapter(self, kind: str, obj: dict[str, Any], at: float) -> None:
        if (obj.get("status") or {}).get("phase") == "Ready":
            self.ready.add(obj["metadata"]["name"])

    def report_result(self, name: str) -> None:
        result = {"artifactUri": f"s3://adapters/{name}/", "sha256": "1" * 64, "sizeBytes": 1, "gatePassed": True}
        manifest = {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": self.namespace},
            "status": {"result": result},
        }
        query = {"fieldManager": TRAINER_FIELD_MANAGER, "force": "true"}
        url = path("FineTuneJob", self.namespace, name, "status")
        self.kube.request("PATCH", url, query=query, body=manifest, content_type="application/apply-patch+yaml")

    def done(self, runs: set[str], count: int) -> bool:
        return len(self.succeeded) == len(self.ready) == count and runs <= set(self.training_jobs)


def operator_round(kube: Kube, api: AdminClient, variant: Variant, rate: float, *, prefix: str, count: int) -> Round:
    namespace = variant.namespace
    seen = Lifecycles(kube, namespace)

    def create(i: int) -> tuple[str, float]:
        name = f"{prefix}-{i}"
        at = time.monotonic()
        kube.create(path("FineTuneJob", namespace), body(name, namespace))
        return name, at

    rss_before = variant.operator.settled_rss_mib(5)
    mark = variant.audit.mark()
    with PeakRss(variant.operator) as peak, contextlib.ExitStack() as stack:
        watches = [stack.enter_context(Watch(api, path(k, namespace), h)) for k, h in seen.handlers().items()]
        sent, achieved = paced(count, rate, create)

        def all_done() -> bool:
            for watch in watches:
                watch.check()
            return seen.done(set(sent), count)

        wait_until(f"{prefix}: every FineTuneJob Succeeded and its Adapter Ready", all_done, timeout=900, interval=1)
        lifecycle = time.monotonic() - min(sent.values())
        writes = variant.audit.quiet_writes(mark, quiet_seconds=5, timeout=120)
    seen.results.shutdown(wait=True)
    deleted = variant.audit.mark()
    delete_all(kube, namespace, deleted=("FineTuneJob", "Adapter"), gone=("FineTuneJob", "Adapter", "Job", "Pod"))
    rss_after = variant.operator.settled_rss_mib(SETTLE_AFTER_DELETE)
    latencies = [seen.jobs[name] - at for name, at in sent.items()]
    result = Round(variant.name, rate, latencies, achieved, max(seen.jobs[n] for n in sent) - min(sent.values()))
    result.writes, result.lifecycle = by_request(writes), lifecycle
    per_run, result.shared_writes = by_run(writes, sent)
    result.per_run = sorted(per_run.values())
    result.to_training = [seen.training_jobs[name] - at for name, at in sent.items()]
    result.writes_after_delete = sum(variant.audit.writes(deleted)[0].values())
    result.rss = (rss_before, peak.peak, rss_after)
    return result


def delete_all(kube: Kube, namespace: str, deleted: tuple[str, ...], gone: tuple[str, ...]) -> None:
    """`kubectl delete --all` of each kind in `deleted`, then wait until garbage collection removed `gone` too."""
    for kind in deleted:
        kube.request("DELETE", path(kind, namespace), query={"propagationPolicy": "Background"})
    for kind in gone:
        wait_until(f"every {kind} deleted", lambda kind=kind: not kube.list(path(kind, namespace)), 600, interval=1)


def start_variant(plane: LocalControlPlane, name: str, source: Path | None, workdir: Path) -> Variant:
    namespace = _namespace(plane.client, f"bench-{name}")
    identity = grant_chart_identity(plane, namespace, workdir / f"{name}.kubeconfig")
    args = ["--standalone", "-n", namespace]
    log = workdir / f"operator-{name}.log"
    environment = {**SETTINGS, **OPERATOR_ALLOCATOR_ENV}
    operator = OperatorProcess(identity.kubeconfig, log, args, environment, inherit_settings=False, source=source)
    operator.wait_ready()
    return Variant(name, namespace, operator, AuditLog(plane.audit_log, identity.username))


def row(result: Round, raw: Round) -> str:
    lat = result.latencies
    cells = [
        f"{result.who:<16}",
        f"{result.rate:>4.0f}/s {result.achieved_rate:>5.1f}/s",
        " ".join(f"{percentile(lat, q):>6.2f}" for q in (0.5, 0.9, 0.99)) + f" {max(lat):>6.2f}",
        f"{result.all_exist:>7.1f}s {result.throughput:>6.1f}/s {result.throughput / raw.throughput:>5.2f}x",
    ]
    if result.writes:
        per_job = sum(result.writes.values()) / len(lat)
        median = statistics.median(result.per_run)
        before, peak, after = result.rss
        train = " ".join(f"{percentile(result.to_training, q):>6.2f}" for q in (0.5, 0.99))
        cells += [
            train,
            f"{median:>4.0f} {per_job:>6.2f} {max(result.per_run):>3d} {result.writes_after_delete:>4d}",
            f"{before:>5.0f} {peak:>5.0f} {after:>5.0f}",
        ]
    return " | ".join(cells)


@pytest.mark.timeout(3600)
def test_operator_at_scale_against_plain_client(plane: LocalControlPlane, tmp_path: Path) -> None:
    kube = Kube.from_environment(str(plane.kubeconfig_path))
    api = plane.client
    variants = [start_variant(plane, "after", None, tmp_path)]
    if BEFORE:
        variants.insert(0, start_variant(plane, "before", Path(BEFORE), tmp_path))
    raw_namespace = _namespace(api, "bench-raw")
    rows: list[tuple[Round, list[Round]]] = []
    try:
        for variant in variants:
            operator_round(kube, api, variant, 5.0, prefix=f"warm-{variant.name}", count=WARM_UP)
        for rate in RATES:
            raw = raw_client_round(kube, api, raw_namespace, rate)
            measured = [
                operator_round(kube, api, v, rate, prefix=f"{v.name}{int(rate)}", count=COUNT) for v in variants
            ]
            rows.append((raw, measured))
    finally:
        for variant in variants:
            variant.operator.stop()
    print(f"\nBENCH operator at scale: N={COUNT} FineTuneJobs per row (LoRA SFT, no GPU, pods Running {RUN_FOR})")
    print("who              | rate achieved | latency p50 p90 p99 max (s) | all exist, Jobs/s, vs plain | "
          "-> training Job p50 p99 | writes/lifecycle median mean max, after delete | "
          "RSS MiB before peak after")  # fmt: skip
    for raw, measured in rows:
        print(row(raw, raw))
        for result in measured:
            print(row(result, raw))
    for _, measured in rows:
        for result in measured:
            per_job = {k: round(v / COUNT, 2) for k, v in sorted(result.writes.items())}
            print(f"writes per lifecycle, {result.who} at {result.rate:.0f}/s: {per_job}; runs by their writes: "
                  f"{dict(sorted(Counter(result.per_run).items()))}; shared: {result.shared_writes}")  # fmt: skip
    if BEFORE:
        for _, (before, after) in rows:
            p99 = percentile(after.latencies, 0.99) / percentile(before.latencies, 0.99)
            writes = sum(after.writes.values()) / sum(before.writes.values())
            print(f"after/before at {after.rate:.0f}/s: p99 {p99:.2f}x, throughput "
                  f"{after.throughput / before.throughput:.2f}x, writes {writes:.2f}x")  # fmt: skip
    goals = check_goals(rows)
    print("goals: " + "; ".join(goals) if goals else "goals: all met")
    assert not goals


def check_goals(rows: list[tuple[Round, list[Round]]]) -> list[str]:
    """The goals of docs/benchmarks.md for the code under test (the last operator of each row); missed ones."""
    missed = []
    for raw, measured in rows:
        result = measured[-1]
        p99 = percentile(result.latencies, 0.99)
        if result.rate == 20.0 and p99 > GOAL_P99_AT_20:
            missed.append(f"p99 {p99:.2f}s > {GOAL_P99_AT_20}s at 20/s")
        median = statistics.median(result.per_run)
        if median > GOAL_WRITES:
            missed.append(f"median {median:.0f} writes per lifecycle > {GOAL_WRITES} at {result.rate:.0f}/s")
        before, _, after = result.rss
        if after > before * GOAL_RSS_GROWTH:
            missed.append(f"RSS {after:.0f} MiB after deletion > {GOAL_RSS_GROWTH:.2f} x {before:.0f} MiB")
        ratio = result.throughput / raw.throughput
        if ratio < GOAL_THROUGHPUT:
            missed.append(f"throughput {ratio:.2f} of the plain client's < {GOAL_THROUGHPUT} at {result.rate:.0f}/s")
    return missed

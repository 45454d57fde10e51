"""The operator in-process (kopf's KopfRunner, --standalone, one namespace) against the real control plane, with the
chart's trainer policy installed, as the chart ships it (one trainer identity per namespace).

Environment for the operator is set here, before `kubetune.handlers` is imported, because kopf reads
the resync interval when handlers are declared. kwok drives the pods: annotations with the prefix
kwok.kubetune.io/ on a FineTuneJob are copied to its pods (KUBETUNE_POD_ANNOTATION_PREFIXES), so a
test decides whether the fake trainer runs, for how long, and with which exit code.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.testing import Kubectl, install_crds, wait_until
from kubetune_dev.operator_identity import install_trainer_policy


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


METRICS_PORT = _free_port()
for _key, _value in {
    "KUBETUNE_METRICS_PORT": str(METRICS_PORT),
    "KUBETUNE_RESYNC_SECONDS": "2",
    "KUBETUNE_HANDLER_BACKOFF": "1",
    "KUBETUNE_WATCH_SERVER_TIMEOUT": "10",
    "KUBETUNE_WATCH_CLIENT_TIMEOUT": "15",
    "KUBETUNE_POD_ANNOTATION_PREFIXES": "kwok.kubetune.io/",
    "KUBETUNE_TRAINER_IMAGE": "kubetune/trainer:test",
}.items():
    os.environ.setdefault(_key, _value)
METRICS_PORT = int(os.environ["KUBETUNE_METRICS_PORT"])

import kopf  # noqa: E402  (after the environment above)
from kopf.testing import KopfRunner  # noqa: E402

from kubetune.k8s.client import Kube  # noqa: E402
from support.operator_objects import finetunejob  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = Path(os.environ.get("KUBETUNE_TEST_CRD_DIR") or REPO / "crds")


@pytest.fixture(scope="session")
def installed_crds(control_plane: LocalControlPlane, kubectl: Kubectl) -> list[str]:
    """The CRDs and the chart's trainer policy (which needs the CRDs' schemas to check its expressions)."""
    installed = install_crds(kubectl, sorted(CRD_DIR.glob("*.yaml")))
    install_trainer_policy(control_plane)
    return installed


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Kube:
    """The operator's own dict client, as admin: tests patch and apply with it."""
    return Kube.from_environment(str(kubeconfig))


class Operator:
    """Start/stop the operator for one namespace; restartable inside a test.

    KopfRunner's output is only readable after it stopped (it blocks until then), so it is checked in `stop`.
    """

    def __init__(self, namespace: str, kubeconfig: Path) -> None:
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.runner: KopfRunner | None = None
        self.previous_kubeconfig: str | None = None

    def start(self) -> None:
        self.previous_kubeconfig = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(self.kubeconfig)  # kopf's login reads it when the operator starts
        args = ["run", "--standalone", "--namespace", self.namespace, "-m", "kubetune.handlers"]
        self.runner = KopfRunner(args, timeout=60, settings=kopf.OperatorSettings())
        self.runner.__enter__()  # kopf lists before it watches: objects created right after are not missed

    def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is None:
            return
        runner.__exit__(None, None, None)
        if self.previous_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = self.previous_kubeconfig
        assert runner.exception is None, runner.exception
        assert runner.exit_code == 0, runner.output
        assert "Traceback" not in runner.output, runner.output


@pytest.fixture
def lifecycle_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Normal Events per phase, opt-in for users (`lifecycleEvents`): request it before `operator`, which reads the
    environment when it starts. Every other test runs the shipped default, Warning Events only."""
    monkeypatch.setenv("KUBETUNE_LIFECYCLE_EVENTS", "true")


@pytest.fixture
def operator(installed_crds: list[str], namespace: str, kubeconfig: Path, kube: Kube) -> Iterator[Operator]:
    running = Operator(namespace, kubeconfig)
    running.start()
    try:
        yield running
    finally:
        if running.runner is None:  # a test stopped it: bring it back so deletions are finalized
            running.start()
        delete_all(kube, namespace)
        running.stop()


def delete_all(kube: Kube, namespace: str) -> None:
    """Delete kubetune objects while the operator still runs (an in-flight reconcile may publish an
    Adapter once more as its run is deleted: `Retain` keeps it by design), so delete until none is left."""
    from kubetune.k8s.interface import KubeError, path

    def remaining() -> bool:
        left = [(kind, item) for kind in ("FineTuneJob", "Adapter") for item in kube.list(path(kind, namespace))]
        for kind, item in left:
            try:
                kube.request("DELETE", path(kind, namespace, item["metadata"]["name"]))
            except KubeError as error:
                if error.status != 404:
                    raise
        return not left

    wait_until("kubetune objects to be deleted", remaining, timeout=60, interval=1)


@pytest.fixture
def ftj_factory(kube: Kube, namespace: str) -> Callable[..., dict[str, Any]]:
    def create(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        return kube.create(
            f"/apis/kubetune.io/v1alpha1/namespaces/{namespace}/finetunejobs",
            finetunejob(name, namespace, annotations, **spec),
        )

    return create


class Cluster:
    """Reads and waits used by the scenarios; every wait names what it waited for."""

    def __init__(self, kube: Kube, namespace: str, plane: LocalControlPlane, tmp: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.plane = plane
        self.tmp = tmp

    def url(self, kind: str, name: str | None = None, sub: str | None = None) -> str:
        from kubetune.k8s.interface import path

        return path(kind, self.namespace, name, sub)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(self.url(kind, name))

    def list(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        return self.kube.list(self.url(kind), label_selector=selector)

    def status(self, name: str) -> dict[str, Any]:
        found = self.get("FineTuneJob", name) or {}
        return dict(found.get("status") or {})

    def wait_phase(self, name: str, phase: str, timeout: float = 60, kind: str = "FineTuneJob") -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = (self.get(kind, name) or {}).get("status") or {}
            return status if status.get("phase") == phase else None

        try:
            return wait_until(f"{kind} {name} phase {phase}", reached, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\nlast status: {(self.get(kind, name) or {}).get('status')}") from None

    def pods(self, job_name: str) -> list[dict[str, Any]]:
        return self.list("Pod", f"batch.kubernetes.io/job-name={job_name}")

    def token_client(self, service_account: str, pod: dict[str, Any] | None = None) -> Kube:
        """A client that authenticates as the ServiceAccount with a TokenRequest token (no Secret); bound to `pod`
        (its name and uid in the token's claims) as the kubelet mints a pod's token, when one is given."""
        from kubetune_dev.controlplane.pki import write_token_kubeconfig

        spec: dict[str, Any] = {"expirationSeconds": 600}
        if pod is not None:
            meta = pod["metadata"]
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
        minted = self.kube.create(
            self.url("ServiceAccount", service_account, "token"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        config = write_token_kubeconfig(
            self.tmp / f"{service_account}-{pod['metadata']['name'] if pod else 'unbound'}.kubeconfig",
            self.plane.api_url,
            self.plane.pki.ca_cert,
            minted["status"]["token"],
        )
        return Kube.from_environment(str(config))

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture
def cluster(kube: Kube, namespace: str, control_plane: LocalControlPlane, tmp_path: Path) -> Cluster:
    return Cluster(kube, namespace, control_plane, tmp_path)


@pytest.fixture
def make_operator(installed_crds: list[str]) -> type[Operator]:
    """For tests that run the operator under another identity (its own kubeconfig)."""
    return Operator


@pytest.fixture
def ftj_body() -> Callable[..., dict[str, Any]]:
    return finetunejob

"""HA through the chart, with its default values: `helm install --wait`, two operator pods really running
(`kubetune operator` with the chart's arguments, on the local node, in-cluster credentials from their
ServiceAccount token), one of them active; a FineTuneJob gets its Job; the active pod is SIGKILLed (a crash:
it leaves its peering record behind) and the other takes over, handling the run created meanwhile; then the
new active pod is deleted (graceful: kopf removes its record on exit) and the replacement pod takes over.

Only scheduling differs from the defaults: a nodeSelector and toleration put the operator pods on the
(tainted) local node, which runs pods as local processes; kwok nodes would only pretend to run them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from kubetune.k8s.client import Kube
from kubetune.k8s.interface import path
from kubetune_dev.chart import CHART, helm
from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.local_node.agent import LocalNode
from kubetune_dev.local_node.images import KNOWN_IMAGES
from kubetune_dev.local_node.node import LOCAL_NODE_LABEL
from kubetune_dev.local_node.pods import NodeRuntime, sandbox_dir
from support.operator_objects import finetunejob

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

NODE = "kubetune-local-chart"
TAINT = {"key": LOCAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
ON_THE_LOCAL_NODE = [
    "--set-string",
    f"nodeSelector.{LOCAL_NODE_LABEL.replace('.', chr(92) + '.')}=true",
    "--set-json",
    f'tolerations=[{{"key": "{LOCAL_NODE_LABEL}", "operator": "Exists", "effect": "NoSchedule"}}]',
]
CRASH_TAKEOVER_BOUND = 75
"""kopf's peer lifetime (60 s) after the last keep-alive, plus time to notice and resume."""
GRACEFUL_TAKEOVER_BOUND = 20
PEERING = "/apis/kopf.dev/v1/clusterkopfpeerings/kubetune"


@pytest.fixture(scope="module")
def local_node(control_plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    api = kube_config.new_client_from_config(str(control_plane.kubeconfig_path))  # type: ignore[no-untyped-call]
    host, port = control_plane.api_url.removeprefix("https://").rsplit(":", 1)
    runtime = NodeRuntime(
        api_host=host,
        api_port=int(port),
        bin_dir=Path(sys.executable).parent,
        root=tmp_path_factory.mktemp("local-node"),
        images=KNOWN_IMAGES,
    )
    node = LocalNode(api, NODE, runtime, max_pods=6, taints=[TAINT])
    node.start()
    yield node
    node.stop()
    client.CoreV1Api(api).delete_node(NODE)


class Replicas:
    """The release's operator pods, and what each one's log says about its peering state."""

    def __init__(self, kube: Kube, node: LocalNode, namespace: str, release: str) -> None:
        self.kube = kube
        self.node = node
        self.namespace = namespace
        self.selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"

    def running(self) -> list[dict[str, Any]]:
        pods = self.kube.list(path("Pod", self.namespace), label_selector=self.selector)
        live = [pod for pod in pods if "deletionTimestamp" not in pod["metadata"]]
        return [pod for pod in live if pod["status"].get("phase") == "Running"]

    def log(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        folder = sandbox_dir(self.node.runtime.root, self.namespace, meta["name"], meta["uid"])
        log = folder / "container.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def active(self, pod: dict[str, Any]) -> bool:
        text = self.log(pod)
        return text.rfind("Resuming operations") > text.rfind("Pausing operations")

    def named(self, name: str) -> dict[str, Any] | None:
        return next((pod for pod in self.running() if pod["metadata"]["name"] == name), None)

    def peers(self) -> dict[str, Any]:
        """The ClusterKopfPeering's records: the chart sets kopf's identity (POD_ID) to the pod's name."""
        peering = self.kube.get(PEERING) or {}
        return dict(peering.get("status") or {})

    def newcomer(self, *known: str) -> dict[str, Any] | None:
        """A running replica not among `known` that has joined the peering (its keep-alive is recorded)."""
        pods = [pod for pod in self.running() if pod["metadata"]["name"] not in known]
        peers = self.peers()
        return next((pod for pod in pods if pod["metadata"]["name"] in peers), None)

    def the_active_one(self) -> dict[str, Any] | None:
        """The active replica once the election has settled, else None: every running replica has recorded its
        keep-alive, and the only one whose log says active is the one kopf's rule elects (the highest priority).
        Replicas that start together can each resume for a moment before the other's keep-alive lands; one log
        saying active is not enough."""
        pods = self.running()
        peers = self.peers()
        names = [pod["metadata"]["name"] for pod in pods]
        if len(pods) < 2 or not all(name in peers for name in names):
            return None
        leader = max(names, key=lambda name: int(peers[name]["priority"]))
        active = [pod for pod in pods if self.active(pod)]
        return active[0] if [pod["metadata"]["name"] for pod in active] == [leader] else None


def job_for(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(path("Job", namespace, f"{name}-train"))


def test_default_install_elects_one_replica_and_fails_over(
    control_plane: LocalControlPlane, local_node: LocalNode, namespace: str
) -> None:
    kube = Kube.from_environment(str(control_plane.kubeconfig_path))
    release = f"ha{namespace[-6:]}"
    binary, kubeconfig = control_plane.binaries.helm, control_plane.kubeconfig_path
    started = time.monotonic()
    install = helm(binary, kubeconfig, "install", release, str(CHART), "-n", namespace, *ON_THE_LOCAL_NODE, "--wait")
    assert install.returncode == 0, install.stderr
    installed = time.monotonic() - started
    try:
        replicas = Replicas(kube, local_node, namespace, release)
        assert all(pod["spec"]["nodeName"] == NODE for pod in replicas.running())
        first = wait_until("exactly one of the two replicas to be active", replicas.the_active_one, timeout=60)
        kube.create(path("FineTuneJob", namespace), finetunejob("before", namespace))
        assert wait_until("the Job of a FineTuneJob created after install", lambda: job_for(kube, namespace, "before"))
        assert f"[{namespace}/before]" in replicas.log(first)
        (standby,) = [pod for pod in replicas.running() if pod["metadata"]["name"] != first["metadata"]["name"]]
        assert f"[{namespace}/before]" not in replicas.log(standby)

        crashed = time.monotonic()
        assert local_node.kill(namespace, first["metadata"]["name"])  # SIGKILL: no goodbye in the peering
        kube.create(path("FineTuneJob", namespace), finetunejob("in-the-gap", namespace))  # nobody active now
        second = wait_until(
            "the standby to take over from the crashed replica",
            lambda: replicas.the_active_one() if replicas.active(standby) else None,
            timeout=CRASH_TAKEOVER_BOUND,
        )
        crash_takeover = time.monotonic() - crashed
        assert second["metadata"]["name"] == standby["metadata"]["name"]
        assert wait_until("the Job of the run created in the gap", lambda: job_for(kube, namespace, "in-the-gap"))
        crash_to_job = time.monotonic() - crashed

        known = (first["metadata"]["name"], second["metadata"]["name"])
        replacement = wait_until(
            "the Deployment's replacement pod to join as standby", lambda: replicas.newcomer(*known), timeout=60
        )
        assert not replicas.active(replacement), "a replacement must not take the work from a healthy replica"
        peers = replicas.peers()
        assert peers[replacement["metadata"]["name"]]["priority"] < peers[second["metadata"]["name"]]["priority"]

        deleted = time.monotonic()
        kube.request("DELETE", path("Pod", namespace, second["metadata"]["name"]))
        wait_until(
            "the replacement to take over after a graceful deletion",
            lambda: replicas.active(replacement),
            timeout=GRACEFUL_TAKEOVER_BOUND,
        )
        graceful_takeover = time.monotonic() - deleted
        kube.create(path("FineTuneJob", namespace), finetunejob("after-delete", namespace))
        assert wait_until("the Job after the deletion", lambda: job_for(kube, namespace, "after-delete"), timeout=30)
        print(
            f"\nchart HA: install --wait {installed:.1f}s; takeover after SIGKILL {crash_takeover:.1f}s "
            f"(Job after {crash_to_job:.1f}s); after pod deletion {graceful_takeover:.1f}s"
        )
    finally:  # cluster-wide RBAC and peering go with the release; the FineTuneJobs with the namespace
        helm(binary, kubeconfig, "uninstall", release, "-n", namespace, "--wait", "--timeout=60s")

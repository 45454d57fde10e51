"""HA: two operator processes with kopf peering, one active; when it stops, the other takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetune_dev.controlplane.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "scope": "Namespaced",
        "group": "kopf.dev",
        "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                },
            }
        ],
    },
}


def active(log: Path) -> bool:
    """kopf starts paused under peering; the last of its resume/pause messages tells the current state."""
    text = log.read_text()
    return text.rfind("Resuming operations") > text.rfind("Pausing operations")


def start(namespace: str, kubeconfig: Path, priority: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBETUNE_METRICS_PORT": "0", "KUBETUNE_RESYNC_SECONDS": "2"}
    code = "import sys; from kubetune.handlers import run_operator; sys.exit(run_operator(sys.argv[1:]))"
    args = ["--peering", "kubetune", "--priority", str(priority), "-n", namespace, "-v"]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def test_two_replicas_one_active_then_failover(
    installed_crds: Any, cluster: Any, kubeconfig: Path, ftj_body: Any, kubectl: Any
) -> None:
    import json

    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(PEERING_CRD))
    kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=30s")
    ns = cluster.namespace
    cluster.kube.create(
        f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "kubetune"}},
    )
    high_log, low_log = cluster.tmp / "high.log", cluster.tmp / "low.log"
    high = start(ns, kubeconfig, 20, high_log)
    low: subprocess.Popen[bytes] | None = None
    try:
        wait_until("the high-priority replica to be active", lambda: active(high_log), timeout=60)
        low = start(ns, kubeconfig, 10, low_log)  # starts paused and sees the higher peer on its first read
        wait_until("the standby to join the peering", lambda: "Keep-alive" in low_log.read_text(), timeout=60)
        cluster.kube.create(
            cluster.url("FineTuneJob"), ftj_body("first", ns, {"kwok.kubetune.io/keep-running": "true"})
        )
        cluster.wait_phase("first", "Running")
        assert f"[{ns}/first]" in high_log.read_text()
        assert f"[{ns}/first]" not in low_log.read_text()  # the standby handled nothing
        assert not active(low_log)
        high.send_signal(signal.SIGTERM)
        high.wait(timeout=60)
        wait_until("the standby to take over", lambda: active(low_log), timeout=90)
        cluster.kube.create(
            cluster.url("FineTuneJob"), ftj_body("second", ns, {"kwok.kubetune.io/keep-running": "true"})
        )
        cluster.wait_phase("second", "Running")
        assert f"[{ns}/second]" in low_log.read_text()
        for name in ("first", "second"):
            cluster.kube.request("DELETE", cluster.url("FineTuneJob", name))
    finally:
        for process in (high, low):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert "Traceback" not in low_log.read_text(), low_log.read_text()[-3000:]

"""The node loop: keep the node Ready, start pods bound to it, report exits, honour deletions.

Pods are found by polling (`spec.nodeName=<node>`, once a second): simpler and more robust than
a watch for a development node that runs a handful of pods. Each pass also refreshes the pods'
/etc/hosts with the headless-Service names of the pods bound here (see `hosts`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune_dev.local_node import hosts, node, pods, process

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class FrozenPod:
    """A pod whose process group is stopped. `thaw()` works after the pod was deleted too; signals sent meanwhile
    (a deletion's SIGTERM) stay pending until then and are the first thing its processes handle."""

    group: int

    def thaw(self) -> None:
        os.killpg(self.group, signal.SIGCONT)

    def terminated(self) -> bool:
        """Whether the node sent it SIGTERM (stopping it for a deletion) while it was frozen."""
        return process.signal_pending(self.group, signal.SIGTERM)


class LocalNode:
    """A node whose pods are local processes; run it in a thread with `start()` / `stop()`."""

    def __init__(
        self,
        api: client.ApiClient,
        name: str,
        runtime: pods.NodeRuntime,
        *,
        max_pods: int = 4,
        poll_seconds: float = 1.0,
        gpus: int = 0,
        taints: Sequence[Mapping[str, str]] = (),
    ) -> None:
        """`gpus`: fake `nvidia.com/gpu` capacity, so that GPU pods (multi-node runs need one GPU per node)
        schedule here; they run on the CPU like every pod of this node. `taints`: only pods that tolerate
        them run here (on a control plane that other tests' pods share)."""
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.name = name
        self.runtime = runtime
        self.max_pods = max_pods
        self.poll_seconds = poll_seconds
        self.gpus = gpus
        self.taints = taints
        self.running: dict[str, pods.RunningPod] = {}
        self.finished: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created_mount_points: list[Path] = []

    def start(self) -> None:
        node.register(self.core, self.name, self.max_pods, self.gpus, self.taints)
        self._thread = threading.Thread(target=self._loop, name=f"local-node-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        for running in list(self.running.values()):
            pods.stop(running)
        process.remove_mount_points(self._created_mount_points)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    node.heartbeat(self.core, self.leases, self.name, self.max_pods, self.gpus)
                    last_beat = time.monotonic()
                self._sync()
            except Exception:  # a development node keeps going; the error is in the log
                log.exception("local node %s: sync failed", self.name)
            self._stop.wait(self.poll_seconds)

    def kill(self, namespace: str, name: str) -> bool:
        """SIGKILLs every process of a running pod (a crash, or the OOM killer, as a test provokes it).

        The signal goes to the pod's `unshare`, whose `--kill-child` takes down the pod's PID namespace."""
        for running in list(self.running.values()):
            if (running.namespace, running.name) == (namespace, name) and running.process.poll() is None:
                running.process.send_signal(signal.SIGKILL)
                return True
        return False

    def freeze(self, namespace: str, name: str) -> FrozenPod | None:
        """SIGSTOPs the pod's process group: its trainer halts mid-step, as on an overloaded node, so a test can act
        at an exact step however fast training runs. None: not running."""
        for running in list(self.running.values()):
            if (running.namespace, running.name) == (namespace, name) and running.process.poll() is None:
                os.killpg(running.process.pid, signal.SIGSTOP)
                return FrozenPod(running.process.pid)
        return None

    def _sync(self) -> None:
        listed: list[Any] = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}").items
        present = {pod.metadata.uid for pod in listed}
        names = self._names(listed)
        for pod in listed:
            uid = pod.metadata.uid
            if pod.metadata.deletion_timestamp is not None:
                self._delete(pod)
            elif uid not in self.running and uid not in self.finished and pod.status.phase == "Pending":
                self._start(pod, names(hosts.pod_dns(pod)))
        for running in self.running.values():
            running.write_hosts(names(running.dns))
        for uid, running in list(self.running.items()):
            if uid not in present:
                pods.stop(running)
                del self.running[uid]
            elif running.process.poll() is not None:
                self._report_exit(running)
                del self.running[uid]

    def _report_exit(self, running: pods.RunningPod) -> None:
        code = running.process.wait()
        exit_code = code if code >= 0 else 128 - code
        log.info("pod %s/%s exited with %s", running.namespace, running.name, exit_code)
        running.release()
        pods.report_finished(self.core, running, exit_code)
        self.finished.add(running.uid)

    def _names(self, listed: list[Any]) -> Callable[[hosts.PodDns], str]:
        """The hosts file of one pod: every live pod here that a headless Service publishes."""
        live = [
            hosts.pod_dns(pod)
            for pod in listed
            if pod.metadata.deletion_timestamp is None and pod.status.phase in ("Pending", "Running")
        ]
        namespaces = sorted({peer.namespace for peer in live if peer.subdomain})
        services = [svc for ns in namespaces for svc in self.core.list_namespaced_service(ns).items]
        headless = hosts.headless_selectors(services)
        return lambda own: hosts.hosts_file(own, live, headless)

    def _start(self, pod: Any, hosts_file: str) -> None:
        try:
            running = pods.start_pod(self.core, pod, self.runtime, hosts_file)
        except (ApiException, OSError, ValueError) as error:
            log.warning("pod %s/%s cannot start: %s", pod.metadata.namespace, pod.metadata.name, error)
            self._fail_to_start(pod, str(error))
            return
        log.info("pod %s/%s started (pid %s)", running.namespace, running.name, running.process.pid)
        self._created_mount_points.extend(running.created_mount_points)
        self.running[pod.metadata.uid] = running

    def _fail_to_start(self, pod: Any, message: str) -> None:
        status = {"phase": "Failed", "reason": "LocalNodeStartError", "message": message[: pods.MESSAGE_LIMIT]}
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
        self.finished.add(pod.metadata.uid)

    def _delete(self, pod: Any) -> None:
        """Like a kubelet: stop the containers, report the terminal phase (the Job controller counts it), remove."""
        running = self.running.pop(pod.metadata.uid, None)
        if running is not None:
            pods.stop(running, grace_seconds=float(pod.metadata.deletion_grace_period_seconds or 0) or 1.0)
            with contextlib.suppress(ApiException):
                self._report_exit(running)
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                pod.metadata.name,
                pod.metadata.namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid)),
            )

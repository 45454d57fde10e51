"""Pod lifecycle on the local node: environment, start, status reports, stop."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.api.v1alpha1.pod_contract import TERMINATION_LOG_ENV
from kubetune_dev.local_node import process, volumes
from kubetune_dev.local_node.expansion import expand
from kubetune_dev.local_node.hosts import PodDns, pod_dns
from kubetune_dev.local_node.images import ImageProfile, container_command, profile_of
from kubetune_dev.local_node.network import PodNetwork

MESSAGE_LIMIT = 4096
HOSTS_FILE = "etc-hosts"


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    container: str
    process: subprocess.Popen[bytes]
    sandbox: Path
    started_at: str
    dns: PodDns
    created_mount_points: list[Path] = field(default_factory=list)
    network: PodNetwork | None = None

    def release(self) -> None:
        """Frees what outlives the process: its own network namespace, if it had one (idempotent)."""
        network, self.network = self.network, None
        if network is not None:
            network.close()

    @property
    def hosts_path(self) -> Path:
        return self.sandbox / HOSTS_FILE

    def write_hosts(self, content: str) -> None:
        """Rewrites the pod's /etc/hosts in place (same inode, so the bind mount shows the change)."""
        if self.hosts_path.read_text() != content:
            self.hosts_path.write_text(content)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeRuntime:
    """What every pod on this node shares: the API server address and the toolchain to run with.

    `image_env` stands in for the image's `ENV` (pods run from the project's virtualenv, not an image):
    e.g. the trainer image's TORCH_EXTENSIONS_DIR with prebuilt DeepSpeed ops, without which every
    DeepSpeed pod compiles them again (minutes on two cores). `images` stands in for what else the node
    would get from an image: its entrypoint, and whether its pods get a network of their own (`images`).
    """

    api_host: str
    api_port: int
    bin_dir: Path
    root: Path
    image_env: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, ImageProfile] = field(default_factory=dict)


def container_env(
    core: client.CoreV1Api, pod: Any, container: Any, runtime: NodeRuntime, sandbox: Path
) -> dict[str, str]:
    namespace = pod.metadata.namespace
    env = {
        **runtime.image_env,
        "PATH": f"{runtime.bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(sandbox / "home"),
        "HOSTNAME": pod_dns(pod).hostname,
        "KUBERNETES_SERVICE_HOST": runtime.api_host,
        "KUBERNETES_SERVICE_PORT": str(runtime.api_port),
        TERMINATION_LOG_ENV: str(sandbox / "termination-log"),
    }
    (sandbox / "home").mkdir(parents=True, exist_ok=True)
    for source in container.env_from or []:
        if source.config_map_ref:
            config = _optional(source.config_map_ref, lambda ref: core.read_namespaced_config_map(ref.name, namespace))
            env.update({f"{source.prefix or ''}{k}": v for k, v in config.items()})
        if source.secret_ref:
            data = _optional(source.secret_ref, lambda ref: core.read_namespaced_secret(ref.name, namespace))
            env.update({f"{source.prefix or ''}{k}": base64.b64decode(v).decode() for k, v in data.items()})
    for var in container.env or []:
        value = _env_value(core, pod, var)
        if value is not None:
            env[var.name] = expand(value, env) if var.value_from is None else value
    return env


def _optional(ref: Any, read: Callable[[Any], Any]) -> dict[str, str]:
    """The data of an envFrom source; an `optional` one that does not exist contributes nothing (as in a kubelet)."""
    try:
        return dict(read(ref).data or {})
    except ApiException as error:
        if error.status == 404 and ref.optional:
            return {}
        raise


def _env_value(core: client.CoreV1Api, pod: Any, var: Any) -> str | None:
    if var.value_from is None:
        return str(var.value or "")
    source = var.value_from
    if source.secret_key_ref:
        data = core.read_namespaced_secret(source.secret_key_ref.name, pod.metadata.namespace).data or {}
        raw = data.get(source.secret_key_ref.key)
        return base64.b64decode(raw).decode() if raw is not None else None
    if source.config_map_key_ref:
        config = core.read_namespaced_config_map(source.config_map_key_ref.name, pod.metadata.namespace).data or {}
        value = config.get(source.config_map_key_ref.key)
        return None if value is None else str(value)
    if source.field_ref:
        return _field(pod, source.field_ref.field_path)
    return None


def _field(pod: Any, path: str) -> str:
    if path == "metadata.name":
        return str(pod.metadata.name)
    if path == "metadata.namespace":
        return str(pod.metadata.namespace)
    if path == "metadata.uid":
        return str(pod.metadata.uid)
    if path in ("status.podIP", "status.hostIP"):
        return "127.0.0.1"
    if path == "spec.nodeName":
        return str(pod.spec.node_name)
    if path.startswith("metadata.annotations['") or path.startswith("metadata.labels['"):
        key = path.split("['", 1)[1].rstrip("']")
        source = pod.metadata.annotations if path.startswith("metadata.annotations") else pod.metadata.labels
        return str((source or {}).get(key, ""))
    return ""


def visible_host_paths_kept(mounts: list[volumes.Mount], runtime: NodeRuntime, sandbox: Path) -> list[volumes.Mount]:
    """Drops mounts that would hide the toolchain the pod runs with or its sandbox, where its termination log
    is written (e.g. an emptyDir at /tmp when the checkout, its virtualenv or the node's root live under
    /tmp): such a pod shares that host directory instead."""
    needed = [runtime.bin_dir, sandbox, *(Path(p) for p in sys.path if p)]
    return [m for m in mounts if not any(path.is_relative_to(m.target) for path in needed)]


def sandbox_dir(root: Path, namespace: str, name: str, uid: str) -> Path:
    """Where a pod's files live on the host: `container.log`, its emptyDirs under `volumes/`; kept after it ends."""
    return root / "pods" / namespace / f"{name}-{uid[:8]}"


def start_pod(core: client.CoreV1Api, pod: Any, runtime: NodeRuntime, hosts: str) -> RunningPod:
    """Starts the container in its own mount, UTS and PID namespaces, with `hosts` as its /etc/hosts."""
    if len(pod.spec.containers) != 1 or pod.spec.init_containers:
        raise ValueError("the local node runs pods with exactly one container and no init containers")
    container = pod.spec.containers[0]
    sandbox = sandbox_dir(runtime.root, pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
    sandbox.mkdir(parents=True, exist_ok=True)
    host_volumes = volumes.materialize(core, pod, sandbox, runtime.root / "claims")
    (sandbox / HOSTS_FILE).write_text(hosts)
    mounts = visible_host_paths_kept(volumes.mounts_for(container, host_volumes), runtime, sandbox)
    mounts.append(volumes.Mount(sandbox / HOSTS_FILE, "/etc/hosts"))
    created = process.ensure_mount_points(mounts)
    env = container_env(core, pod, container, runtime, sandbox)
    argv = container_command(container.image, container.command, container.args, runtime.images)
    command = [expand(part, env) for part in argv]
    dns = pod_dns(pod)
    profile = profile_of(container.image, runtime.images)
    network = PodNetwork(runtime.api_host, runtime.api_port) if profile and profile.own_network else None
    try:
        proc = process.start(
            command,
            env=env,
            mounts=mounts,
            workdir=container.working_dir,
            log_path=sandbox / "container.log",
            hostname=dns.hostname,
            network=network,
        )
    except OSError:
        if network is not None:
            network.close()
        raise
    started = _now()
    meta = pod.metadata
    running = RunningPod(
        meta.namespace, meta.name, meta.uid, container.name, proc, sandbox, started, dns, created, network
    )
    report_running(core, pod, container.name, started)
    return running


def report_running(core: client.CoreV1Api, pod: Any, container: str, started: str) -> None:
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": started}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    status = {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": started,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": container,
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": pod.spec.containers[0].image,
                "imageID": "",
                "state": {"running": {"startedAt": started}},
            }
        ],
    }
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})


def termination_message(running: RunningPod, exit_code: int) -> str:
    path = running.sandbox / "termination-log"
    message = path.read_text(errors="replace") if path.exists() else ""
    if not message and exit_code != 0:
        log = (running.sandbox / "container.log").read_text(errors="replace")
        message = log[-MESSAGE_LIMIT:]
    return message[-MESSAGE_LIMIT:].strip()


def report_finished(core: client.CoreV1Api, running: RunningPod, exit_code: int) -> None:
    finished = _now()
    # a SIGKILL (137) is not necessarily the OOM killer, and this node cannot tell: like a kubelet
    # without an OOM event, it reports Error with the exit code
    reason = "Completed" if exit_code == 0 else "Error"
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
        ],
        "containerStatuses": [
            {
                "name": running.container,
                "ready": False,
                "started": False,
                "restartCount": 0,
                "image": "local",
                "imageID": "",
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": reason,
                        "message": termination_message(running, exit_code),
                        "startedAt": running.started_at,
                        "finishedAt": finished,
                    }
                },
            }
        ],
    }
    core.patch_namespaced_pod_status(running.name, running.namespace, {"status": status})


def stop(running: RunningPod, grace_seconds: float = 10.0) -> None:
    if running.process.poll() is None:
        os.killpg(running.process.pid, signal.SIGTERM)
        try:
            running.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
    running.release()

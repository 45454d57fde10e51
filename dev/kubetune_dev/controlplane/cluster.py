"""``LocalControlPlane``: start, wait for and stop one real control plane.

Readiness is checked in dependency order (etcd, apiserver, controller-manager, scheduler, the ``default``
ServiceAccount, kwok, fake GPU nodes Ready, and with ``kueue=True`` the Kueue manager and its ClusterQueue
Active) so a failure names the first broken piece and carries its log.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from kubetune_dev.controlplane import components as comp
from kubetune_dev.controlplane import kueue as kueue_parts
from kubetune_dev.controlplane.client import AdminClient, ApiError, condition, object_path, probe, wait_for
from kubetune_dev.controlplane.components import Layout, Ports, Tier
from kubetune_dev.controlplane.kwok import gpu_nodes, write_kwok_config
from kubetune_dev.controlplane.paths import Binaries, KueueFiles, find_binaries, find_kueue
from kubetune_dev.controlplane.pki import Pki, generate_pki, write_kubeconfig
from kubetune_dev.controlplane.ports import free_ports
from kubetune_dev.controlplane.processes import Process, is_our_process, rss_mib, spawn, tail, terminate

STATE_FILE = "state.json"
_DEFAULT_SA = "/api/v1/namespaces/default/serviceaccounts/default"
# Contended 2-core runners have needed 31-35 s for the apiserver alone (kubernetes PR #137743).
DEFAULT_TIMEOUT = float(os.environ.get("KUBETUNE_CP_TIMEOUT", "90"))


class ControlPlaneError(RuntimeError):
    """Startup failed; the message carries the failing component's log tail."""


class LocalControlPlane:
    def __init__(self, workdir: Path | None = None, binaries: Binaries | None = None, *, detach: bool = False) -> None:
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kubetune-cp-"))
        self._binaries = binaries
        self.detach = detach
        self.tier: Tier | None = None
        self.processes: list[Process] = []
        # Seconds from start() until each step was ready: the warm-start numbers in docs/development.md.
        self.timings: dict[str, float] = {}
        # Filled by callers right before stop(), so the RSS after a workload can still be reported.
        self.final_rss: dict[str, float | None] = {}
        self._layout: Layout | None = None
        self.kueue: kueue_parts.KueueLayout | None = None
        self._client: AdminClient | None = None
        self._state: dict[str, Any] | None = None

    # -- what callers use ---------------------------------------------------------------------------
    @property
    def layout(self) -> Layout:
        if self._layout is None:
            raise ControlPlaneError("control plane not started")
        return self._layout

    @property
    def kubeconfig_path(self) -> Path:
        return self.layout.kubeconfig

    @property
    def api_url(self) -> str:
        return self.layout.api_url

    @property
    def pki(self) -> Pki:
        return self.layout.pki

    @property
    def audit_log(self) -> Path:
        return self.layout.audit_log

    @property
    def binaries(self) -> Binaries:
        return self.layout.binaries

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            self._client = AdminClient(self.api_url, self.pki)
        return self._client

    def start(
        self, tier: Tier | str = Tier.A, timeout: float = DEFAULT_TIMEOUT, *, kueue: bool = False
    ) -> LocalControlPlane:
        """``kueue`` adds the Kueue manager (Tier B only: it admits Jobs, which need controllers and nodes)."""
        self.tier = Tier(tier)
        if kueue and self.tier is not Tier.B:
            raise ControlPlaneError("Kueue needs Tier B: it admits Jobs, whose pods need the controllers and kwok")
        begin = time.monotonic()
        binaries = self._binaries or find_binaries()
        kueue_files = find_kueue() if kueue else None  # fail on a missing build before anything starts
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = generate_pki(self.workdir / "pki")
        layout = Layout(self.workdir, binaries, pki, Ports.from_list(free_ports(6)))
        self._layout = layout
        write_kubeconfig(layout.kubeconfig, layout.api_url, pki)
        layout.audit_policy.write_text(comp.AUDIT_POLICY)
        if self.tier is Tier.B:
            write_kwok_config(layout.kwok_config, binaries.kwok_stages)
        self.timings["pki"] = time.monotonic() - begin
        try:
            for component in comp.components(layout, self.tier):
                self._start_component(component, layout, timeout)
                self.timings[component.name] = time.monotonic() - begin
                if component.name == "kube-controller-manager":
                    # Proves the controllers run: pods are rejected until this ServiceAccount exists.
                    self._wait_api("ServiceAccount default/default", _DEFAULT_SA, timeout)
                    self.timings["default-serviceaccount"] = time.monotonic() - begin
            if self.tier is Tier.B:
                self._create_gpu_nodes(timeout)
                self.timings["gpu-nodes-ready"] = time.monotonic() - begin
            if kueue_files is not None:
                self._start_kueue(layout, kueue_files, timeout, begin)
        except BaseException:
            self.stop(remove_workdir=False)
            raise
        self._write_state()
        return self

    def logs(self, lines: int = 40) -> dict[str, str]:
        """The tail of every component's log, for failing tests and startup errors."""
        return {p.name: tail(p.log, lines) for p in self.processes}

    def rss_mib(self) -> dict[str, float | None]:
        return {p.name: rss_mib(p.pid) for p in self.processes if p.alive()}

    def alive(self) -> dict[str, bool]:
        return {p.name: p.alive() for p in self.processes}

    def stop(self, *, remove_workdir: bool | None = None) -> None:
        """Stop only the PIDs this object recorded, in reverse start order."""
        terminate(list(reversed(self.processes)), log=lambda m: print(m, file=sys.stderr))
        self.processes = []
        state = self.workdir / STATE_FILE
        state.unlink(missing_ok=True)
        if remove_workdir if remove_workdir is not None else self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalControlPlane:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state file, for `python -m kubetune_dev.controlplane down/status` from another process -------------
    def _write_state(self) -> None:
        state: dict[str, Any] = {
            "tier": str(self.tier),
            "kueue": self.kueue is not None,
            "kubeconfig": str(self.kubeconfig_path),
            "api_url": self.api_url,
            "started_at": time.time(),
            "processes": [
                {"name": p.name, "pid": p.pid, "executable": p.executable, "log": str(p.log)} for p in self.processes
            ],
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def attach(cls, workdir: Path) -> LocalControlPlane | None:
        """Rebuild a handle from the state file a detached ``start`` left, or None if there is none."""
        path = workdir / STATE_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        plane = cls(workdir)
        plane._owns_workdir = False
        plane.tier = Tier(state["tier"])
        plane.processes = [
            Process(name=p["name"], pid=p["pid"], executable=p["executable"], log=Path(p["log"]))
            for p in state["processes"]
            if is_our_process(p["pid"], p["executable"])
        ]
        plane._state = state
        return plane

    @property
    def state(self) -> dict[str, Any]:
        """What the state file recorded (tier, kubeconfig, PIDs); empty for a plane started in-process."""
        return self._state or {}

    # -- internals ----------------------------------------------------------------------------------
    def _start_component(self, component: comp.Component, layout: Layout, timeout: float) -> None:
        log = layout.logs_dir / f"{component.name}.log"
        proc = spawn(component.name, component.argv, log, cwd=self.workdir, env=component.env, detach=self.detach)
        self.processes.append(proc)
        deadline = time.monotonic() + timeout
        while not probe(component.health_url, layout.pki.ca_cert):
            if not proc.alive():
                raise ControlPlaneError(
                    f"{component.name} exited before it became ready; command: {' '.join(component.argv)}\n"
                    f"--- {log} ---\n{tail(log, 60)}"
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{component.name} not ready at {component.health_url} after {timeout:.0f}s\n"
                    f"--- {log} ---\n{tail(log, 60)}"
                )
            time.sleep(0.1)

    def _wait_api(self, what: str, path: str, timeout: float) -> dict[str, Any]:
        try:
            return wait_for(what, lambda: self.client.get_or_none(path), timeout)
        except TimeoutError as err:
            raise ControlPlaneError(f"{err}\n" + self._format_logs()) from err

    def _create_gpu_nodes(self, timeout: float) -> None:
        for node in gpu_nodes():
            try:
                self.client.create("/api/v1/nodes", node)
            except ApiError as err:
                if err.status != 409:
                    raise
        for node in gpu_nodes():
            self._wait_condition(f"/api/v1/nodes/{node['metadata']['name']}", "Ready", timeout)

    def _start_kueue(self, layout: Layout, files: KueueFiles, timeout: float, begin: float) -> None:
        """CRDs, the certificate Secret and webhook configurations first (the manager's certificate bootstrap
        waits for them), then the manager, then the queues, which go through its webhooks."""
        pki = kueue_parts.generate_pki(layout.pki.directory / "kueue")
        setup = kueue_parts.KueueLayout(layout.workdir / "kueue", files, pki, layout.kubeconfig, *free_ports(3))
        kueue_parts.write_files(setup)
        installed = kueue_parts.crds(setup)
        for crd in installed:
            self.client.apply(crd)
        for crd in installed:
            self._wait_condition(object_path(crd), "Established", timeout)
        self.client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kueue_parts.NAMESPACE}})
        for obj in (kueue_parts.certificate_secret(pki), *kueue_parts.webhook_configurations(setup)):
            self.client.apply(obj)
        self.kueue = setup
        self._start_component(kueue_parts.component(setup), layout, timeout)
        self.timings["kueue"] = time.monotonic() - begin
        for obj in (kueue_parts.resource_flavor(), kueue_parts.cluster_queue()):
            self._apply_through_webhooks(obj, timeout)
        self._wait_condition(object_path(kueue_parts.cluster_queue()), "Active", timeout)
        self.timings["kueue-clusterqueue-active"] = time.monotonic() - begin

    def _apply_through_webhooks(self, obj: dict[str, Any], timeout: float) -> None:
        """The apiserver may still see the webhook as unreachable for a moment after readyz; nothing else is
        retried, so a wrong certificate or URL fails with the apiserver's own message."""

        def applied() -> dict[str, Any] | None:
            try:
                return self.client.apply(obj)
            except ApiError as err:
                if err.status == 500 and "failed calling webhook" in err.body and "connection refused" in err.body:
                    return None
                raise

        try:
            wait_for(f"{obj['kind']} {obj['metadata']['name']} accepted by Kueue's webhooks", applied, timeout)
        except TimeoutError as err:
            raise ControlPlaneError(f"{err}\n" + self._format_logs()) from err

    def _wait_condition(self, path: str, kind: str, timeout: float) -> None:
        def true() -> bool:
            found = condition(self.client.get_or_none(path), kind)
            return bool(found and found.get("status") == "True")

        try:
            wait_for(f"{path} {kind}", true, timeout)
        except TimeoutError as err:
            raise ControlPlaneError(f"{err}\n" + self._format_logs()) from err

    def _format_logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name} ---\n{text}" for name, text in self.logs(lines).items())

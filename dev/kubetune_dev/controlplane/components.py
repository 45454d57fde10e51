"""Command lines of the control-plane components and how to tell each one is ready.

Flags follow kwok's binary runtime and controller-runtime's envtest (see
/work/shared/design/CONTROL-PLANE-NOTES.md section 4); every server binds 127.0.0.1 only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from kubetune_dev.controlplane.paths import Binaries
from kubetune_dev.controlplane.pki import Pki

SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"  # kwok's fake pod IPs; must not overlap SERVICE_CIDR


class Tier(StrEnum):
    """A: etcd + kube-apiserver (CRDs, admission, RBAC, TokenRequest). B: + controller-manager, scheduler
    and kwok, for anything that needs controllers, scheduling or pods that run."""

    A = "A"
    B = "B"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        return cls(*ports)


@dataclass(frozen=True)
class Layout:
    """Everything the command lines refer to, so building them is a pure function of this value."""

    workdir: Path
    binaries: Binaries
    pki: Pki
    ports: Ports

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.workdir / "audit-policy.yaml"

    @property
    def kwok_config(self) -> Path:
        return self.workdir / "kwok.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    # Health endpoint polled until it answers 200; https ones are verified against the cluster CA.
    health_url: str
    env: dict[str, str] = field(default_factory=dict)


# Metadata for ServiceAccount requests only: that is what the operator's RBAC tests scan for 403s, and
# logging every request of the controllers would make the file grow by megabytes per test session.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
"""


def etcd(layout: Layout) -> Component:
    p = layout.ports
    return Component(
        name="etcd",
        argv=[
            str(layout.binaries.etcd),
            "--name=node0",
            f"--data-dir={layout.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-cluster=node0=http://127.0.0.1:{p.etcd_peer}",
            "--auto-compaction-retention=1",
            "--quota-backend-bytes=8589934592",
            # Test data is disposable; fsync dominates etcd latency on shared CI disks.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        health_url=f"http://127.0.0.1:{p.etcd_client}/health",
    )


def kube_apiserver(layout: Layout, tier: Tier) -> Component:
    pki = layout.pki
    argv = [
        str(layout.binaries.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{layout.ports.etcd_client}",
        "--etcd-prefix=/registry",
        "--bind-address=127.0.0.1",
        # Without it the apiserver picks the default-route interface, and fails on hosts without one.
        "--advertise-address=127.0.0.1",
        # A loopback address is invalid in the `kubernetes` Endpoints, so do not reconcile them.
        "--endpoint-reconciler-type=none",
        f"--secure-port={layout.ports.apiserver}",
        f"--cert-dir={layout.workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        "--v=1",
    ]
    if tier is Tier.A:
        # No controller-manager creates the `default` ServiceAccount, so the ServiceAccount admission plugin
        # would reject every pod (envtest disables it for the same reason).
        argv.append("--disable-admission-plugins=ServiceAccount")
    return Component(name="kube-apiserver", argv=argv, health_url=f"{layout.api_url}/readyz")


def _served_by_us(layout: Layout, port: int) -> list[str]:
    # Reusing the apiserver serving cert (SAN 127.0.0.1) keeps these components from writing self-signed
    # certs to their default --cert-dir, /var/run/kubernetes, and lets the probe verify them.
    kc = str(layout.kubeconfig)
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={layout.pki.serving_cert}",
        f"--tls-private-key-file={layout.pki.serving_key}",
        # Saves the lease acquisition, and a restarted component never waits out an old lease.
        "--leader-elect=false",
        "--v=1",
    ]


def kube_controller_manager(layout: Layout) -> Component:
    pki = layout.pki
    port = layout.ports.controller_manager
    return Component(
        name="kube-controller-manager",
        argv=[
            str(layout.binaries.kube_controller_manager),
            *_served_by_us(layout, port),
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ],
        health_url=f"https://127.0.0.1:{port}/healthz",
    )


def kube_scheduler(layout: Layout) -> Component:
    port = layout.ports.scheduler
    return Component(
        name="kube-scheduler",
        argv=[str(layout.binaries.kube_scheduler), *_served_by_us(layout, port)],
        health_url=f"https://127.0.0.1:{port}/readyz",
    )


def kwok(layout: Layout) -> Component:
    return Component(
        name="kwok",
        argv=[
            str(layout.binaries.kwok),
            f"--kubeconfig={layout.kubeconfig}",
            f"--config={layout.kwok_config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--manage-nodes-with-label-selector=",
            "--manage-single-node=",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.99.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{layout.ports.kwok}",
        ],
        health_url=f"http://127.0.0.1:{layout.ports.kwok}/healthz",
        # kwok otherwise reads and writes ~/.kwok; keep it inside this control plane's directory.
        env={"KWOK_WORKDIR": str(layout.workdir / "kwok-home")},
    )


def components(layout: Layout, tier: Tier) -> list[Component]:
    """In start order; each must be ready before the next starts (stop runs in reverse)."""
    parts = [etcd(layout), kube_apiserver(layout, tier)]
    if tier is Tier.B:
        parts += [kube_controller_manager(layout), kube_scheduler(layout), kwok(layout)]
    return parts

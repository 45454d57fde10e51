"""Fixtures for tests against the real local control plane (kubetune_dev.controlplane).

One control plane per test session: Tier B (controller-manager, scheduler, kwok fake GPU nodes) when any
selected test is marked ``tier_b`` or KUBETUNE_TIER=B, otherwise Tier A (etcd + kube-apiserver), which
starts about three times faster. Kueue runs too when any selected test is marked ``kueue`` (those are
marked ``tier_b`` as well). Each test gets its own namespace. When a test that used the control plane
fails, the tail of every component log is attached to its report.

Fixtures: ``control_plane`` (LocalControlPlane), ``kubeconfig`` (Path), ``api`` (AdminClient),
``kubectl`` (Kubectl: ``kubectl("get", "pods", "-n", ns, input=None, check=True)``), ``namespace`` (str),
Helpers (``Kubectl``, ``wait_until``, ``with_namespace``) live in kubetune_dev.controlplane.testing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kubetune_dev.controlplane import LocalControlPlane, Tier
from kubetune_dev.controlplane.client import AdminClient
from kubetune_dev.controlplane.testing import Kubectl

T = TypeVar("T")
_PLANE_KEY = pytest.StashKey[LocalControlPlane]()
_TIER_KEY = pytest.StashKey[Tier]()
_KUEUE_KEY = pytest.StashKey[bool]()


def pytest_collection_finish(session: pytest.Session) -> None:
    # After deselection (-m, -k), so `-m "not tier_b"` really gets the cheaper Tier A.
    config, items = session.config, session.items
    config.stash[_KUEUE_KEY] = any(i.get_closest_marker("kueue") for i in items)
    wanted = os.environ.get("KUBETUNE_TIER")
    if wanted:
        config.stash[_TIER_KEY] = Tier(wanted.upper())
    else:
        config.stash[_TIER_KEY] = Tier.B if any(i.get_closest_marker("tier_b") for i in items) else Tier.A


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    plane = item.config.stash.get(_PLANE_KEY, None)
    if report.failed and plane is not None and "control_plane" in getattr(item, "fixturenames", ()):
        for name, text in plane.logs(lines=40).items():
            report.sections.append((f"control plane: {name} (last 40 lines)", text))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    plane = config.stash.get(_PLANE_KEY, None)
    if plane is None:
        return
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in plane.timings.items())
    rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in plane.final_rss.items() if v is not None)
    terminalreporter.write_line(f"control plane tier {plane.tier}: ready after {steps}")
    terminalreporter.write_line(f"control plane RSS at session end: {rss}")


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Generator[LocalControlPlane, None, None]:
    tier = request.config.stash.get(_TIER_KEY, Tier.B)
    # Under pytest's basetemp, so the logs of the last runs stay around for a post-mortem.
    plane = LocalControlPlane(tmp_path_factory.mktemp("controlplane"))
    plane.start(tier, kueue=request.config.stash.get(_KUEUE_KEY, False))
    request.config.stash[_PLANE_KEY] = plane
    yield plane
    plane.final_rss = plane.rss_mib()
    plane.stop(remove_workdir=False)


@pytest.fixture(scope="session")
def kubeconfig(control_plane: LocalControlPlane) -> Path:
    return control_plane.kubeconfig_path


@pytest.fixture(scope="session")
def api(control_plane: LocalControlPlane) -> AdminClient:
    return control_plane.client


@pytest.fixture(scope="session")
def kubectl(control_plane: LocalControlPlane) -> Kubectl:
    return Kubectl(control_plane.binaries.kubectl, control_plane.kubeconfig_path)


@pytest.fixture
def namespace(control_plane: LocalControlPlane, api: AdminClient) -> Generator[str, None, None]:
    """A fresh namespace, deleted afterwards without waiting: the namespace controller holds every deletion
    for a fixed 5 s grace period (namespaceDeletionGracePeriod), which would add 5 s to each test.
    test_namespace_deletion_finishes proves deletion completes; on Tier A it would stay Terminating."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    api.delete(f"/api/v1/namespaces/{name}")

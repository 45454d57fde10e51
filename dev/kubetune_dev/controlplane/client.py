"""A minimal admin REST client over urllib.

Readiness probes and bootstrap (nodes, waiting for the default ServiceAccount) must work before anything
else is known to, so they use the standard library only: no kubernetes client, no kubectl subprocess per poll.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from kubetune_dev.controlplane.pki import Pki

T = TypeVar("T")
FIELD_MANAGER = "kubetune-dev"


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def probe(url: str, ca_cert: Path | None, timeout: float = 2.0) -> bool:
    """True when a health endpoint answers 200; https endpoints are verified against the cluster CA."""
    context = ssl.create_default_context(cafile=str(ca_cert)) if url.startswith("https") and ca_cert else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class AdminClient:
    """Authenticates with the admin client certificate (system:masters)."""

    def __init__(self, api_url: str, pki: Pki) -> None:
        self.api_url = api_url
        self._context = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self._context) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, err.read().decode(errors="replace")) from err
        result: dict[str, Any] = json.loads(payload) if payload else {}
        return result

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply (JSON is YAML), so installing twice or over an older version just converges."""
        path = f"{object_path(obj)}?fieldManager={FIELD_MANAGER}&force=true"
        return self.request("PATCH", path, obj, content_type="application/apply-patch+yaml")

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 10) -> Iterator[dict[str, Any]]:
        """Watch events (`{"type": ..., "object": ...}`) of a collection from `resource_version` on, with bookmarks,
        until the server ends the watch after `timeout_seconds`; the caller resumes from the last version seen."""
        query = f"watch=1&allowWatchBookmarks=true&resourceVersion={resource_version}&timeoutSeconds={timeout_seconds}"
        req = urllib.request.Request(f"{self.api_url}{path}?{query}")
        req.add_header("Accept", "application/json")
        with urllib.request.urlopen(req, timeout=timeout_seconds + 30, context=self._context) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def delete(self, path: str) -> dict[str, Any] | None:
        try:
            return self.request("DELETE", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise


def object_path(obj: dict[str, Any]) -> str:
    """REST path of a manifest. The plural is the lower-case kind plus s (es after an s, ies for a final y), which
    holds for every kind the dev cluster installs (Namespace, Secret, CRDs, webhook configurations, Kueue's queues,
    admission policies)."""
    api_version, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    lower = kind.lower()
    plural = lower[:-1] + "ies" if lower.endswith("y") else lower + ("es" if lower.endswith("s") else "s")
    return f"{root}{namespace}/{plural}/{meta['name']}"


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The status condition of the given type, or None."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            found: dict[str, Any] = cond
            return found
    return None

"""The operator's server-side apply on the real API server, with strings that JSON-as-YAML cannot carry: found by
fuzzing (an emoji in an Adapter's spec made every status write of it fail with "invalid Unicode character
escape code"), and strings that YAML would read as other types if they were not quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.k8s.client import Kube
from kubetune.k8s.interface import path

pytestmark = pytest.mark.integration

AWKWARD = {
    "emoji": "trained on 🦙 data",
    "astral": "math \U0001d518 and \U0010fffd",
    "separators": "line\u2028paragraph\u2029next\u0085nbsp\u00a0end",
    "controls": "tab\there\x07bell\x1bescape\x7fdel",
    "float-like": "1e3",
    "bool-like": "yes",
    "null-like": "~",
    "int-like": "0x1F",
    "empty": "",
    "quotes": 'she said "ok" and left a \\ backslash',
    "yaml-ish": "key: value\n- item\n# not a comment",
}


def test_apply_carries_any_string_the_api_server_stores(kubeconfig: Path, namespace: str) -> None:
    kube = Kube.from_environment(str(kubeconfig))
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "awkward", "namespace": namespace, "annotations": {"kubetune.io/note": AWKWARD["emoji"]}},
        "data": AWKWARD,
    }
    stored = kube.apply(manifest)
    assert stored["data"] == AWKWARD
    assert stored["metadata"]["annotations"]["kubetune.io/note"] == AWKWARD["emoji"]
    again = kube.apply(manifest)
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"], "a no-op apply"
    assert kube.get(path("ConfigMap", namespace, "awkward"))["data"] == AWKWARD  # type: ignore[index]

"""Materialize a pod's volumes as host directories and list where each must be mounted."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


def _write_items(folder: Path, data: dict[str, str | bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in data.items():
        (folder / key).write_bytes(value if isinstance(value, bytes) else value.encode())


def _configmap_data(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str | bytes]:
    cm = core.read_namespaced_config_map(name, namespace)
    return dict(cm.data or {})


def _secret_data(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str | bytes]:
    secret = core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _service_account_token(core: client.CoreV1Api, pod: Any, source: Any) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[source.audience] if source.audience else [],
            expiration_seconds=source.expiration_seconds or 3600,
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
            ),
        )
    )
    response = core.create_namespaced_service_account_token(
        pod.spec.service_account_name or "default", pod.metadata.namespace, request
    )
    return str(response.status.token)  # type: ignore[union-attr]


def _projected(core: client.CoreV1Api, pod: Any, volume: Any, folder: Path) -> None:
    namespace = pod.metadata.namespace
    folder.mkdir(parents=True, exist_ok=True)
    for source in volume.projected.sources:
        if source.service_account_token:
            token = _service_account_token(core, pod, source.service_account_token)
            (folder / source.service_account_token.path).write_text(token)
        elif source.config_map:
            data = _configmap_data(core, namespace, source.config_map.name)
            _write_items(folder, _select(data, source.config_map.items))
        elif source.secret:
            data = _secret_data(core, namespace, source.secret.name)
            _write_items(folder, _select(data, source.secret.items))
        elif source.downward_api:
            _downward_api(pod, source.downward_api.items, folder)


def _field(pod: Any, path: str) -> str:
    """A downward-API fieldRef of pod metadata: name, namespace, uid, or one annotation or label."""
    meta = pod.metadata
    for prefix, values in (("metadata.annotations", meta.annotations), ("metadata.labels", meta.labels)):
        if path.startswith(f"{prefix}["):
            return str((values or {}).get(path[len(prefix) + 2 : -2], ""))
    return str(getattr(meta, path.removeprefix("metadata."), ""))


def _downward_api(pod: Any, items: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for item in items or []:
        if item.field_ref:
            (folder / item.path).write_text(_field(pod, item.field_ref.field_path))


def _select(data: dict[str, str | bytes], items: Any) -> dict[str, str | bytes]:
    if not items:
        return data
    return {item.path: data[item.key] for item in items if item.key in data}


def materialize(core: client.CoreV1Api, pod: Any, sandbox: Path, claims_root: Path) -> dict[str, Path]:
    """Volume name -> host directory holding its content (PVCs persist across pods)."""
    namespace = pod.metadata.namespace
    out: dict[str, Path] = {}
    for volume in pod.spec.volumes or []:
        folder = sandbox / "volumes" / volume.name
        if volume.config_map:
            _write_items(
                folder, _select(_configmap_data(core, namespace, volume.config_map.name), volume.config_map.items)
            )
        elif volume.secret:
            _write_items(folder, _select(_secret_data(core, namespace, volume.secret.secret_name), volume.secret.items))
        elif volume.projected:
            _projected(core, pod, volume, folder)
        elif volume.downward_api:
            _downward_api(pod, volume.downward_api.items, folder)
        elif volume.persistent_volume_claim:
            folder = claims_root / namespace / volume.persistent_volume_claim.claim_name
        folder.mkdir(parents=True, exist_ok=True)
        out[volume.name] = folder
    return out


def mounts_for(container: Any, volumes: dict[str, Path]) -> list[Mount]:
    mounts = []
    for mount in container.volume_mounts or []:
        source = volumes[mount.name]
        if mount.sub_path:
            source = source / mount.sub_path
        mounts.append(Mount(source, mount.mount_path, bool(mount.read_only)))
    return mounts

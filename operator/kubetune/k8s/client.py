"""A small dict-in, dict-out client over the official kubernetes ApiClient.

The pure layers read and write plain API dicts, so this client speaks JSON paths rather than the
generated typed models, and one `apply` covers every kind with server-side apply under the
operator's field manager.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kubetune.api.apply_yaml import apply_body
from kubetune.api.v1alpha1.pod_contract import OPERATOR_FIELD_MANAGER
from kubetune.k8s.interface import KubeError, Obj, path

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
Items = list[Obj]


class Kube:
    """Thread-safe (urllib3 pools); one per operator process. Satisfies `KubeClient`, plus `request` for
    anything else (the liveness probe, tests)."""

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        self.api = api_client

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, pool_size: int | None = None) -> Kube:
        """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config).
        `pool_size` keeps that many connections open (one per concurrent request; the default is 5 per CPU)."""
        configuration = k8s_client.Configuration()
        if pool_size is not None:
            configuration.connection_pool_maxsize = pool_size
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        return cls(k8s_client.ApiClient(configuration))

    def request(
        self,
        method: str,
        url: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Obj | str | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Obj:
        headers = {"Content-Type": content_type, "Accept": accept}
        method, full_url, header_params, payload, _ = self.api.param_serialize(
            method,
            url,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(method, full_url, header_params, payload)
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            raise KubeError(error.status or 0, str(error.reason), str(error.body)[:500]) from None
        text = response.data.decode() if response.data else ""
        if not 200 <= response.status <= 299:
            message = text
            with contextlib.suppress(ValueError):
                message = json.loads(text).get("message", text)
            raise KubeError(response.status, str(response.reason), str(message)[:500])
        return json.loads(text) if text else {}

    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        try:
            return self.request("GET", url, accept=METADATA_ONLY if metadata_only else "application/json")
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list(self, url: str, label_selector: str | None = None) -> list[Obj]:
        return self.list_versioned(url, label_selector)[0]

    def list_versioned(self, url: str, label_selector: str | None = None) -> tuple[Items, str]:
        """The items and the list's resourceVersion (what a watch from it would start after)."""
        query = {"labelSelector": label_selector} if label_selector else None
        listed = self.request("GET", url, query=query)
        items = [dict(item) for item in listed.get("items") or []]
        return items, str((listed.get("metadata") or {}).get("resourceVersion") or "0")

    def apply(
        self, manifest: Obj, *, subresource: str | None = None, field_manager: str = OPERATOR_FIELD_MANAGER
    ) -> Obj:
        """Server-side apply with the operator's field manager; force takes fields back from kubectl edits."""
        meta = manifest["metadata"]
        url = path(manifest["kind"], meta["namespace"], meta["name"], subresource)
        query = {"fieldManager": field_manager, "force": "true"}
        return self.request("PATCH", url, query=query, body=apply_body(manifest), content_type=APPLY)

    def merge_patch(self, url: str, body: Obj) -> Obj:
        query = {"fieldManager": OPERATOR_FIELD_MANAGER}
        return self.request("PATCH", url, query=query, body=body, content_type=MERGE)

    def create(self, url: str, body: Obj) -> Obj:
        return self.request("POST", url, body=body)

    def delete(self, url: str) -> None:
        self.request("DELETE", url, query={"propagationPolicy": "Background"})

"""Resource identities: the one place that spells kubetune's API group, version, plurals and kinds.

The CRDs, the operator's URLs, handler registrations and RBAC rules, and the trainer's status writes
all read them from here, so a new version or plural is a change in one file.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "kubetune.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class ResourceId:
    """Where a kind lives in the API: `/api/v1` for the core group (empty), `/apis/GROUP/VERSION` otherwise."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


FINETUNEJOB = ResourceId(GROUP, VERSION, "finetunejobs", "FineTuneJob")
ADAPTER = ResourceId(GROUP, VERSION, "adapters", "Adapter")
KUBETUNE_RESOURCES: dict[str, ResourceId] = {r.kind: r for r in (FINETUNEJOB, ADAPTER)}
"""kind -> identity of kubetune's own resources."""

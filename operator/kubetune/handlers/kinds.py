"""The kinds the operator reconciles: for each, its resource, its controller and what its outcome records.

Adding a kind is one `Kind` here and one controller; `registration.register_kind` gives it the same
handlers, work queue, metrics, retries and resync as the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from kubetune import metrics
from kubetune.api.resources import ADAPTER, FINETUNEJOB, ResourceId
from kubetune.controllers.adapter import reconcile_adapter
from kubetune.controllers.finetunejob import Outcome, reconcile_finetunejob
from kubetune.handlers.runtime import Runtime, metered
from kubetune.k8s.interface import KubeClient
from kubetune.k8s.writes import AppliedOnce
from kubetune.settings import OperatorSettings

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Controller(Protocol[T_co]):
    """One reconcile of one object (kubetune.controllers)."""

    def __call__(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        settings: OperatorSettings,
        now: datetime,
        *,
        applied: AppliedOnce | None = None,
    ) -> T_co: ...


@dataclass(frozen=True)
class Kind(Generic[T]):
    resource: ResourceId
    controller: Controller[T]
    record: Callable[[str, str, T], None]
    """Metrics of one reconcile's result (namespace, name, result)."""
    phases: metrics.PhaseIndex
    """The phase gauge, from which a deleted object is dropped."""

    def reconcile(self, runtime: Runtime, namespace: str, name: str) -> None:
        kind = self.resource.kind

        def sync() -> T:
            return self.controller(
                runtime.kube, namespace, name, runtime.settings, datetime.now(UTC), applied=runtime.applied
            )

        self.record(namespace, name, metered(kind, sync))


def record_finetunejob(namespace: str, name: str, outcome: Outcome | None) -> None:
    if outcome is not None:
        metrics.record_finetunejob(**asdict(outcome))


def record_adapter(namespace: str, name: str, phase: str | None) -> None:
    metrics.ADAPTER_PHASES.set(namespace, name, phase)


KINDS: tuple[Kind[Any], ...] = (
    Kind(FINETUNEJOB, reconcile_finetunejob, record_finetunejob, metrics.FINETUNEJOB_PHASES),
    Kind(ADAPTER, reconcile_adapter, record_adapter, metrics.ADAPTER_PHASES),
)

"""Ready, Reconciling and Stalled: the conditions GitOps tools read, by one rule for both kinds.

kstatus (sigs.k8s.io/cli-utils: what Flux, kpt and the cli-utils applier wait on) reads a custom
resource as InProgress while `status.observedGeneration` lags `metadata.generation`, then Failed when
`Stalled` is True, InProgress when `Reconciling` is True, Current when `Ready` is True and InProgress
when it is False. The Argo CD health Lua in charts/kubetune/files/argocd reads the same conditions.
So at most one of Stalled and Reconciling holds:

- Stalled: a terminal failure, or a wait that only a change by the user ends (a bad image, an
  Adapter name taken by another run, an adapter its evaluation gate rejected).
- Reconciling: work that finishes by itself (pending, queued, initializing, running, merging).
- neither: settled. Ready is True for a run that succeeded, one suspended on purpose (spec.suspend is
  the desired state, reached) and a published Adapter.

Ready is also True while a run is Running (healthy), as before; Reconciling keeps kstatus at InProgress.
"""

from __future__ import annotations

from kubetune.api.v1alpha1.common import Condition
from kubetune.decisions.conditions import Conditions, Verdict

IN_PROGRESS = frozenset({"Pending", "Queued", "Initializing", "Running", "Merging"})
READY = frozenset({"Running", "Succeeded", "Suspended", "Ready"})
GATE_FAILED = "GateFailed"
STALLED_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "CreateContainerConfigError",
        "AdapterConflict",
        GATE_FAILED,
        "AdapterGateFailed",
        "AdapterNotUsable",
        "SourceGateFailed",
    }
)


def is_stalled(found: Verdict) -> bool:
    return found.phase == "Failed" or found.reason in STALLED_REASONS


def health_conditions(book: Conditions, found: Verdict) -> list[Condition]:
    stalled = is_stalled(found)
    ready = not stalled and found.phase in READY
    return [
        book.make("Ready", "True" if ready else "False", found.reason, found.message),
        book.flag("Reconciling", not stalled and found.phase in IN_PROGRESS, found),
        book.flag("Stalled", stalled, found),
    ]

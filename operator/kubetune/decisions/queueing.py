"""What Kueue says about a queued run, from the Workload it made for the run's Job.

Kueue creates one Workload per Job it manages (labelled with the Job's UID, owned by the Job, so it goes
with the Job). Its conditions say whether quota is reserved, why not yet, and whether the run was evicted to
make room for a higher-priority one; the FineTuneJob's status repeats Kueue's own words. A position in the
queue is served only by Kueue's visibility API (an aggregated API server), not in the Workload.
"""

from __future__ import annotations

from kubetune.decisions.conditions import Verdict
from kubetune.decisions.observed import Obj

WORKLOAD_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
"""The label Kueue puts on the Workload of a Job (pkg/controller/constants), so the operator can select it."""


def _condition(workload: Obj, kind: str) -> Obj | None:
    for condition in workload.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _is_true(condition: Obj | None) -> bool:
    return bool(condition and condition.get("status") == "True")


def queued(queue_name: str, workload: Obj | None) -> Verdict:
    """The Queued verdict of a run whose Job is suspended by (or for) Kueue."""
    waiting = f"waiting for Kueue LocalQueue {queue_name} to admit the workload"
    if workload is None:
        return Verdict("Queued", "WaitingForAdmission", waiting)
    if _is_true(_condition(workload, "Admitted")):
        return Verdict("Queued", "Admitted", f"admitted by Kueue from LocalQueue {queue_name}; the Job starts next")
    quota = _condition(workload, "QuotaReserved")
    why = f": {quota['message']}" if quota and quota.get("status") == "False" and quota.get("message") else ""
    evicted = _condition(workload, "Evicted")
    if _is_true(evicted) and evicted is not None and evicted.get("reason") == "Preempted":
        return Verdict(
            "Queued",
            "Preempted",
            f"preempted by Kueue ({evicted.get('message') or 'a higher-priority workload needed the quota'}); "
            f"back in LocalQueue {queue_name}, it starts again when admitted{why}",
        )
    return Verdict("Queued", "WaitingForAdmission", waiting + why)

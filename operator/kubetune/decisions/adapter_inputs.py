"""The Adapters a FineTuneJob reads (reward model, cost models, refusal judges, constitution writer): whether
each one can be used yet, and the artifact URIs the trainer gets for them.

A run waits (Pending, with the field that names the Adapter) until every one is Ready, passed its gate and was
trained for its role; only then are its preflight and training Jobs created, with the URIs in trainer.json.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubetune.api.v1alpha1.finetunejob import AdapterInput, FineTuneJobSpec, input_adapters
from kubetune.decisions.conditions import Verdict
from kubetune.decisions.observed import Obj, adapter_artifact_uri, gate_failure

SCORING_OBJECTIVE = "reward"


def _trained_for(adapter: Obj) -> str | None:
    objective = adapter.get("spec", {}).get("source", {}).get("objective")
    return str(objective) if objective else None


def _unusable(wanted: AdapterInput, adapter: Obj) -> Verdict | None:
    """Why an existing Adapter cannot serve its role yet, or None when it can."""
    name, field, role = wanted.name, wanted.field, wanted.role
    objective = _trained_for(adapter)  # merged Adapters record none: the trainer finds out on loading
    if objective is not None and (objective == SCORING_OBJECTIVE) != wanted.scores:
        need = "one trained with objective reward" if wanted.scores else "a language model (any objective but reward)"
        return Verdict(
            "Pending",
            "AdapterNotUsable",
            f"{role} Adapter {name} ({field}) was trained with objective {objective}, but a {role} needs {need}: "
            "point the reference at such an Adapter",
        )
    rejected = gate_failure(adapter)
    if rejected is not None:
        return Verdict(
            "Pending",
            "AdapterGateFailed",
            f"{role} Adapter {name} failed its evaluation gate ({rejected}): point {field} at a validated Adapter, "
            "or retrain it",
        )
    if adapter_artifact_uri(adapter) is None:
        return Verdict(
            "Pending", "AdapterNotReady", f"{role} Adapter {name} ({field}) is not Ready yet: waiting for it"
        )
    return None


def unresolved_adapter(spec: FineTuneJobSpec, found: Mapping[str, Obj | None]) -> Verdict | None:
    """The first Adapter reference (in spec order) that cannot be used yet, as a Pending verdict."""
    for wanted in input_adapters(spec):
        adapter = found.get(wanted.name)
        if adapter is None:
            train = "train it with objective reward" if wanted.scores else "train it"
            return Verdict(
                "Pending",
                "AdapterNotFound",
                f"{wanted.role} Adapter {wanted.name} ({wanted.field}) not found: {train} or fix the reference; the "
                "run starts as soon as it is Ready",
            )
        verdict = _unusable(wanted, adapter)
        if verdict is not None:
            return verdict
    return None


def adapter_uris(spec: FineTuneJobSpec, found: Mapping[str, Obj | None]) -> dict[str, str]:
    """Name -> artifact URI of every referenced Adapter that is usable (all of them once the run may start)."""
    uris: dict[str, str] = {}
    for wanted in input_adapters(spec):
        adapter = found.get(wanted.name)
        uri = adapter_artifact_uri(adapter) if adapter is not None and _unusable(wanted, adapter) is None else None
        if uri is not None:
            uris[wanted.name] = uri
    return uris

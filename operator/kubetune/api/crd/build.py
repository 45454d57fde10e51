"""The two CustomResourceDefinitions, built from the models (pure: no files, no cluster)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kubetune.api.base import CelRule
from kubetune.api.crd.structural import structural_schema
from kubetune.api.problems import UNIONS
from kubetune.api.resources import ADAPTER, API_VERSION, FINETUNEJOB, ResourceId
from kubetune.api.v1alpha1 import Adapter, FineTuneJob
from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec

CATEGORY = "kubetune"
MUTABLE_AFTER_START = frozenset({"suspend"})


def spec_immutable_once_started() -> CelRule:
    """Everything in spec but `suspend` is frozen once the operator has started the run.

    Written as a root-level transition rule so it can see `status.startTime` next to `spec`;
    fields are compared one by one because CEL has no "all keys but one".
    """
    clauses = []
    for field in FineTuneJobSpec.model_fields.values():
        name = field.alias
        if name in MUTABLE_AFTER_START:
            continue
        clauses.append(
            f"(has(self.spec.{name}) == has(oldSelf.spec.{name}) && "
            f"(!has(self.spec.{name}) || self.spec.{name} == oldSelf.spec.{name}))"
        )
    started = "has(oldSelf.status) && has(oldSelf.status.startTime)"
    return CelRule(
        f"!({started}) || ({' && '.join(clauses)})",
        "spec is immutable once the job has started (only spec.suspend may change): "
        "create a new FineTuneJob, or delete and re-create this one",
        reason="FieldValueForbidden",
        transition=True,
    )


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def _crd(
    model: type[BaseModel],
    resource: ResourceId,
    short_names: list[str],
    columns: list[dict[str, Any]],
    root_rules: list[CelRule],
) -> dict[str, Any]:
    schema = structural_schema(model, UNIONS)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "description": API_VERSION}
    props["kind"] = {"type": "string", "description": resource.kind}
    props["metadata"] = {"type": "object"}
    schema["required"] = ["spec"]
    schema.pop("default", None)
    if root_rules:
        schema["x-kubernetes-validations"] = [r.as_crd() for r in root_rules]
    kind = resource.kind
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "labels": {"app.kubernetes.io/part-of": "kubetune"}},
        "spec": {
            "group": resource.group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": resource.plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": resource.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [*columns, _column("Age", ".metadata.creationTimestamp", "date")],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def finetunejob_crd() -> dict[str, Any]:
    return _crd(
        FineTuneJob,
        FINETUNEJOB,
        ["ftj", "ftjs"],
        [
            _column("Phase", ".status.phase"),
            _column("Reason", ".status.reason"),
            _column("Method", ".spec.method.type"),
            _column("Objective", ".spec.objective.type"),
            _column("Progress", ".status.progress.summary"),
            _column("Loss", ".status.progress.lossRounded", "number"),
            _column("Adapter", ".status.adapterRef.name"),
        ],
        [spec_immutable_once_started()],
    )


def adapter_crd() -> dict[str, Any]:
    return _crd(
        Adapter,
        ADAPTER,
        ["adp"],
        [
            _column("Phase", ".status.phase"),
            _column("Base Model", ".spec.baseModel.uri"),
            _column("Method", ".spec.method.type"),
            _column("Rank", ".spec.method.rank", "integer"),
            _column("Validated", '.status.conditions[?(@.type=="Validated")].status'),
        ],
        [],
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, in install order."""
    return {f"{FINETUNEJOB.crd_name}.yaml": finetunejob_crd(), f"{ADAPTER.crd_name}.yaml": adapter_crd()}

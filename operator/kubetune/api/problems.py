"""Turn validation failures into one actionable line per problem.

Users see the same wording from `kubetune validate` as from `kubectl apply` against the API
server: pydantic's built-in errors are phrased like the API server's schema errors, and
cross-field rules carry the CEL rule's own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from kubetune.api.unions import TaggedUnion
from kubetune.api.v1alpha1.methods import METHOD_UNION
from kubetune.api.v1alpha1.objectives import OBJECTIVE_UNION

M = TypeVar("M", bound=BaseModel)

UNIONS: tuple[TaggedUnion, ...] = (METHOD_UNION, OBJECTIVE_UNION)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where, and what to do about it."""

    path: str
    message: str

    def line(self, source: str) -> str:
        return f"{source}: {self.path}: {self.message}" if self.path else f"{source}: {self.message}"


def validate(model: type[M], document: dict[str, Any]) -> tuple[M | None, list[Problem]]:
    """Validates `document`; returns the model or the problems, never raises for bad input."""
    try:
        return model.model_validate(document), []
    except ValidationError as error:
        kind = model.__name__.lower()
        return None, [_problem(kind, detail) for detail in error.errors(include_url=False)]


def _problem(kind: str, detail: ErrorDetails) -> Problem:
    loc = list(detail["loc"])
    union_problem = _union_block_problem(detail, loc)
    if union_problem is not None:
        return union_problem
    path = _path(loc)
    error = detail["type"]
    ctx = detail.get("ctx", {})
    if error == "missing":
        message = f"Required value: add {path or 'the field'}"
    elif error == "extra_forbidden":
        message = f'unknown field "{path}": remove it or check the spelling (kubectl explain {_explain(kind, loc)})'
    elif error in ("literal_error", "union_tag_invalid"):
        expected = ctx.get("expected_tags") or ctx.get("expected", "")
        choices = ", ".join(f'"{c.strip()}"' for c in str(expected).replace("'", "").replace(" or ", ", ").split(","))
        value = detail["input"] if error == "literal_error" else ctx.get("tag")
        message = f'Unsupported value: "{value}": supported values: {choices}'
        if error == "union_tag_invalid":
            path = f"{path}.type"
    elif error == "value_error":
        message = str(ctx.get("error", detail["msg"]))
    elif error.startswith(("greater_than", "less_than", "too_short", "too_long", "string_pattern")):
        message = f"Invalid value: {_short(detail['input'])}: {path} {_bound(detail)}"
    else:
        message = f"Invalid value: {_short(detail['input'])}: {detail['msg']}"
    return Problem(path, message)


def _union_block_problem(detail: ErrorDetails, loc: list[Any]) -> Problem | None:
    """Missing or misplaced blocks inside a method/objective get the same message as the CEL rule."""
    for union in UNIONS:
        for i in range(len(loc) - 2):
            if loc[i] == union.field and loc[i + 1] in union.tags and i + 3 == len(loc):
                prop = str(loc[i + 2])
                path = _path(loc[: i + 1])
                if detail["type"] == "missing" and prop in union.blocks():
                    return Problem(path, union.required_message(prop))
                if detail["type"] == "extra_forbidden" and prop in union.blocks():
                    return Problem(path, union.forbidden_message(prop))
    return None


def _bound(detail: ErrorDetails) -> str:
    ctx = detail.get("ctx", {})
    kind = detail["type"]
    words = {
        "greater_than": f"should be greater than {ctx.get('gt')}",
        "greater_than_equal": f"should be greater than or equal to {ctx.get('ge')}",
        "less_than": f"should be less than {ctx.get('lt')}",
        "less_than_equal": f"should be less than or equal to {ctx.get('le')}",
        "too_short": f"should have at least {ctx.get('min_length')} items",
        "too_long": f"should have at most {ctx.get('max_length')} items",
        "string_too_long": f"may not be longer than {ctx.get('max_length')}",
        "string_too_short": f"should be at least {ctx.get('min_length')} chars long",
        "string_pattern_mismatch": f"should match '{ctx.get('pattern')}'",
    }
    return words.get(kind, detail["msg"])


def _path(loc: list[Any]) -> str:
    """`('spec', 'method', 'lora', 'lora', 'rank')` -> `spec.method.lora.rank` (union tags dropped)."""
    parts: list[str] = []
    skip_next_tag = False
    for item in loc:
        if skip_next_tag:
            skip_next_tag = False
            continue
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            continue
        parts.append(str(item))
        skip_next_tag = any(item == u.field for u in UNIONS)
    return ".".join(parts)


def _explain(kind: str, loc: list[Any]) -> str:
    """`kubectl explain` path of the object holding the unknown field: no list indices, no union tags
    (`('spec', 'method', 'lora', 'lora', 'rnak')` -> `finetunejob.spec.method.lora`)."""
    parent = _path([x for x in loc[:-1] if not isinstance(x, int)])
    return f"{kind}.{parent}" if parent else kind


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."

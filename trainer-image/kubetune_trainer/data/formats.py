"""Dataset formats: detect which one a dataset is in and rewrite it to the columns TRL 1.16 expects.

Input formats are those of `spec.dataset.format`; each normalises to one TRL layout:

| format     | input columns                               | output columns (TRL)                   |
|------------|---------------------------------------------|----------------------------------------|
| text       | text                                        | text (SFT, language modelling)         |
| alpaca     | instruction, output[, input] or prompt, completion | prompt, completion (SFT, completion-only loss) |
| sharegpt   | conversations (or messages) of {from, value} | messages of {role, content} (SFT)     |
| messages   | messages of {role, content}                 | messages (SFT; chat template applied by the trainer) |
| preference | [prompt,] chosen, rejected                  | [prompt,] chosen, rejected (DPO/IPO/ORPO/reward) |
| kto        | prompt, completion, label                   | prompt, completion, label: bool (KTO)  |
| prompt     | prompt (+ any extra columns)                | prompt + extras, passed to reward functions (GRPO/RLOO) |

A `license` column is carried through so prep can apply the allow-list. Anything that does not fit
raises `DataFormatError` with the columns found and the columns wanted, so the fix is obvious. Which
formats an objective trains on is one of its facts (`ObjectiveFacts.data_formats` in the API).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from kubetune.api.v1alpha1.data import DataFormat, DatasetFormat
from kubetune.api.v1alpha1.objectives import OBJECTIVE_FACTS
from kubetune_trainer.errors import DataFormatError

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "ALPACA_PROMPT_TEMPLATE",
    "FORMATS",
    "LICENSE_COLUMN",
    "Format",
    "FormatSetting",
    "Normalized",
    "check_objective_format",
    "detect_format",
    "normalize",
    "row_sequences",
    "row_text",
]

Format = DataFormat
FormatSetting = DatasetFormat
FORMATS: tuple[Format, ...] = get_args(DataFormat)
LICENSE_COLUMN = "license"

ALPACA_PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
"""The Alpaca layout, minus its preamble, so the prompt marks where the completion (the loss) starts."""

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_SHAREGPT_ROLES: Mapping[str, str] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}
_TRUE = frozenset({"true", "1", "yes", "desirable"})
_FALSE = frozenset({"false", "0", "no", "undesirable"})
_EXPECTED = (
    "text (text), alpaca (instruction, output[, input] or prompt, completion), sharegpt (conversations of "
    "{from, value}), messages (messages of {role, content}), preference ([prompt,] chosen, rejected), "
    "kto (prompt, completion, label), prompt (prompt)"
)


@dataclass(frozen=True)
class Normalized:
    """A dataset rewritten to its TRL layout, and the input format it was read as."""

    dataset: Dataset
    format: Format


def detect_format(dataset: Dataset) -> Format:
    """Guess the format from the column names (and, for chat data, the keys of the first turn)."""
    columns = set(dataset.column_names)
    if {"chosen", "rejected"} <= columns:
        return "preference"
    if {"prompt", "completion", "label"} <= columns:
        return "kto"
    for chat_column in ("messages", "conversations"):
        if chat_column in columns:
            return _chat_flavour(dataset, chat_column)
    if {"instruction", "output"} <= columns or {"prompt", "completion"} <= columns:
        return "alpaca"
    if "text" in columns:
        return "text"
    if "prompt" in columns:
        return "prompt"
    raise DataFormatError(
        f"cannot detect the dataset format from columns {sorted(columns)}; expected one of {_EXPECTED}, "
        "or set dataset.format"
    )


def _chat_flavour(dataset: Dataset, column: str) -> Literal["messages", "sharegpt"]:
    head = dataset.select(range(min(100, len(dataset))))[column]  # the first turns decide
    for turns in head:
        for turn in turns or []:
            keys = {k for k, v in turn.items() if v is not None} if isinstance(turn, Mapping) else set()
            if {"role", "content"} <= keys:
                return "messages"
            if {"from", "value"} <= keys:
                return "sharegpt"
    raise DataFormatError(
        f"column {column!r} must hold lists of {{role, content}} (messages) or {{from, value}} (sharegpt) turns"
    )


def normalize(dataset: Dataset, fmt: FormatSetting = "auto") -> Normalized:
    """Rewrite `dataset` into the TRL layout of `fmt` (detected when `auto`); keeps a `license` column."""
    if fmt == "auto":
        fmt = detect_format(dataset)
    elif fmt not in FORMATS:
        raise DataFormatError(f"unknown dataset format {fmt!r}; use auto or one of {', '.join(FORMATS)}")
    rewrite = _REWRITERS[fmt]
    return Normalized(dataset=rewrite(dataset), format=fmt)


def check_objective_format(fmt: Format, objective: str) -> None:
    """Fail fast when the data cannot train the objective (e.g. DPO on plain text)."""
    facts = OBJECTIVE_FACTS.get(objective)
    if facts is None:
        raise DataFormatError(f"unknown objective {objective!r}; known: {', '.join(sorted(OBJECTIVE_FACTS))}")
    allowed = facts.data_formats
    if fmt not in allowed:
        raise DataFormatError(
            f"objective {objective!r} needs a dataset in format {' or '.join(sorted(allowed))}, "
            f"but the dataset is {fmt!r}"
        )


def row_sequences(row: Mapping[str, Any]) -> list[str]:
    """The strings the model sees for one normalised row (one per sequence; the longest limits length)."""
    if "messages" in row:
        return [_render_value(row["messages"])]
    prompt = row.get("prompt")
    if "chosen" in row:
        return [_join(prompt, row["chosen"]), _join(prompt, row["rejected"])]
    if "completion" in row:
        return [_join(prompt, row["completion"])]
    if "text" in row:
        return [_render_value(row["text"])]
    return [_render_value(prompt)]


def row_text(row: Mapping[str, Any]) -> str:
    """All the text of one normalised row, each field once: the key for dedup and the empty check."""
    parts = [
        _render_value(row[c]) for c in ("text", "messages", "prompt", "completion", "chosen", "rejected") if c in row
    ]
    return "\n".join(p for p in parts if p)


def _join(prompt: Any, completion: Any) -> str:
    """Prompt then completion as the model sees them: strings concatenate (as TRL does), turns stack."""
    if isinstance(prompt, list) or isinstance(completion, list):
        return "\n".join(p for p in (_render_value(prompt), _render_value(completion)) if p)
    return _render_value(prompt) + _render_value(completion)


def _render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "\n".join(f"{turn.get('role', '')}: {turn.get('content') or ''}" for turn in value)
    return str(value)


# --- rewriters -------------------------------------------------------------------------------------


def _require(dataset: Dataset, fmt: str, *alternatives: Iterable[str]) -> tuple[str, ...]:
    columns = set(dataset.column_names)
    for wanted in alternatives:
        needed = tuple(wanted)
        if set(needed) <= columns:
            return needed
    options = " or ".join(", ".join(a) for a in alternatives)
    raise DataFormatError(f"format {fmt!r} needs columns {options}; the dataset has {sorted(columns)}")


def _rewrite(
    dataset: Dataset,
    fmt: str,
    build: Callable[[Mapping[str, list[Any]], int, int], dict[str, list[Any]]],
    keep: Iterable[str] = (),
) -> Dataset:
    """Map `build` over batches, dropping every column it does not produce (except `keep` + license)."""

    def run(batch: Mapping[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        return build(batch, indices[0] if indices else 0, len(indices))

    produced_or_kept = {*keep, LICENSE_COLUMN, *_OUTPUT_COLUMNS[fmt]}
    remove = [c for c in dataset.column_names if c not in produced_or_kept]
    return dataset.map(run, batched=True, with_indices=True, remove_columns=remove, desc=f"normalize {fmt}")


def _text(dataset: Dataset) -> Dataset:
    _require(dataset, "text", ["text"])

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        return {"text": [_as_str(v, "text", start + i) for i, v in enumerate(batch["text"])]}

    return _rewrite(dataset, "text", build)


def _alpaca(dataset: Dataset) -> Dataset:
    columns = _require(dataset, "alpaca", ["instruction", "output"], ["prompt", "completion"])

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        if columns == ("prompt", "completion"):
            prompts = [_as_str(v, "prompt", start + i) for i, v in enumerate(batch["prompt"])]
            completions = [_as_str(v, "completion", start + i) for i, v in enumerate(batch["completion"])]
            return {"prompt": prompts, "completion": completions}
        inputs = batch.get("input") or [None] * count
        prompts = []
        for i, (instruction, extra) in enumerate(zip(batch["instruction"], inputs, strict=True)):
            instruction_text = _as_str(instruction, "instruction", start + i)
            input_text = _as_str(extra, "input", start + i).strip()
            template = ALPACA_PROMPT_WITH_INPUT_TEMPLATE if input_text else ALPACA_PROMPT_TEMPLATE
            prompts.append(template.format(instruction=instruction_text.strip(), input=input_text))
        completions = [_as_str(v, "output", start + i) for i, v in enumerate(batch["output"])]
        return {"prompt": prompts, "completion": completions}

    return _rewrite(dataset, "alpaca", build)


def _messages(dataset: Dataset) -> Dataset:
    column = _require(dataset, "messages", ["messages"], ["conversations"])[0]

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        return {"messages": [_turns(v, column, start + i) for i, v in enumerate(batch[column])]}

    return _rewrite(dataset, "messages", build)


def _sharegpt(dataset: Dataset) -> Dataset:
    column = _require(dataset, "sharegpt", ["conversations"], ["messages"])[0]

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        return {"messages": [_sharegpt_turns(v, column, start + i) for i, v in enumerate(batch[column])]}

    return _rewrite(dataset, "sharegpt", build)


def _preference(dataset: Dataset) -> Dataset:
    _require(dataset, "preference", ["chosen", "rejected"])
    has_prompt = "prompt" in dataset.column_names

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        out = {
            name: [_text_or_turns(v, name, start + i) for i, v in enumerate(batch[name])]
            for name in ("chosen", "rejected")
        }
        if has_prompt:
            out["prompt"] = [_text_or_turns(v, "prompt", start + i) for i, v in enumerate(batch["prompt"])]
        return out

    return _rewrite(dataset, "preference", build)


def _kto(dataset: Dataset) -> Dataset:
    _require(dataset, "kto", ["prompt", "completion", "label"])

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        return {
            "prompt": [_text_or_turns(v, "prompt", start + i) for i, v in enumerate(batch["prompt"])],
            "completion": [_text_or_turns(v, "completion", start + i) for i, v in enumerate(batch["completion"])],
            "label": [_as_label(v, start + i) for i, v in enumerate(batch["label"])],
        }

    return _rewrite(dataset, "kto", build)


def _prompt(dataset: Dataset) -> Dataset:
    _require(dataset, "prompt", ["prompt"])

    def build(batch: Mapping[str, list[Any]], start: int, count: int) -> dict[str, list[Any]]:
        return {"prompt": [_text_or_turns(v, "prompt", start + i) for i, v in enumerate(batch["prompt"])]}

    # extra columns (reference answers, keywords) are what reward functions receive as kwargs
    return _rewrite(dataset, "prompt", build, keep=dataset.column_names)


_OUTPUT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "text": ("text",),
    "alpaca": ("prompt", "completion"),
    "sharegpt": ("messages",),
    "messages": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "prompt": ("prompt",),
}
_REWRITERS: Mapping[Format, Callable[[Dataset], Dataset]] = {
    "text": _text,
    "alpaca": _alpaca,
    "sharegpt": _sharegpt,
    "messages": _messages,
    "preference": _preference,
    "kto": _kto,
    "prompt": _prompt,
}


# --- value checks ----------------------------------------------------------------------------------


def _as_str(value: Any, column: str, row: int) -> str:
    if value is None:
        return ""  # an empty row is prep's business (removed with reason "empty"), not a format error
    if not isinstance(value, str):
        raise DataFormatError(f"row {row}: column {column!r} must be a string, got {type(value).__name__}")
    return value


def _as_label(value: Any, row: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise DataFormatError(f"row {row}: kto label must be true/false (or 1/0), got {value!r}")


def _turns(value: Any, column: str, row: int) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataFormatError(f"row {row}: column {column!r} must be a list of {{role, content}} turns")
    turns = []
    for turn in value:
        if not isinstance(turn, Mapping) or "role" not in turn:
            raise DataFormatError(f"row {row}: every turn in {column!r} needs role and content, got {turn!r}")
        role = turn["role"]
        if role not in _ROLES:
            raise DataFormatError(f"row {row}: unknown role {role!r}; use one of {', '.join(sorted(_ROLES))}")
        turns.append({"role": role, "content": _as_str(turn.get("content"), f"{column}.content", row)})
    return turns


def _sharegpt_turns(value: Any, column: str, row: int) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataFormatError(f"row {row}: column {column!r} must be a list of {{from, value}} turns")
    turns = []
    for turn in value:
        if not isinstance(turn, Mapping) or "from" not in turn:
            raise DataFormatError(f"row {row}: every turn in {column!r} needs from and value, got {turn!r}")
        speaker = str(turn["from"]).lower()
        if speaker not in _SHAREGPT_ROLES:
            raise DataFormatError(
                f"row {row}: unknown sharegpt speaker {turn['from']!r}; use one of {', '.join(sorted(_SHAREGPT_ROLES))}"
            )
        content = _as_str(turn.get("value"), f"{column}.value", row)
        turns.append({"role": _SHAREGPT_ROLES[speaker], "content": content})
    return turns


def _text_or_turns(value: Any, column: str, row: int) -> Any:
    """Preference, KTO and prompt columns may be plain strings or conversations (TRL takes both)."""
    if isinstance(value, list):
        return _turns(value, column, row)
    return _as_str(value, column, row)

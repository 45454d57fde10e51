"""Format detection for every format, normalisation to TRL columns, and clear errors for bad data."""

from __future__ import annotations

from typing import Any

import pytest
from datasets import Dataset

from kubetune_trainer.data.formats import (
    ALPACA_PROMPT_TEMPLATE,
    check_objective_format,
    detect_format,
    normalize,
    row_sequences,
    row_text,
)
from kubetune_trainer.errors import ConfigError, DataFormatError

pytestmark = pytest.mark.unit

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
SHAREGPT = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "text": [{"text": "plain text", "meta": 1}],
    "alpaca": [
        {"instruction": "Add", "input": "2+2", "output": "4"},
        {"instruction": "Greet", "input": "", "output": "Hi"},
    ],
    "sharegpt": [{"conversations": SHAREGPT, "id": "a"}],
    "messages": [{"messages": CHAT}],
    "preference": [{"prompt": "Q?", "chosen": "good", "rejected": "bad"}],
    "kto": [{"prompt": "Q?", "completion": "A", "label": True}],
    "prompt": [{"prompt": "Solve 2+2", "answer": "4"}],
}


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_detects_every_format(fmt: str) -> None:
    assert detect_format(Dataset.from_list(SAMPLES[fmt])) == fmt
    assert normalize(Dataset.from_list(SAMPLES[fmt])).format == fmt


@pytest.mark.parametrize(
    ("fmt", "columns"),
    [
        ("text", ["text"]),
        ("alpaca", ["prompt", "completion"]),
        ("sharegpt", ["messages"]),
        ("messages", ["messages"]),
        ("preference", ["prompt", "chosen", "rejected"]),
        ("kto", ["prompt", "completion", "label"]),
        ("prompt", ["prompt", "answer"]),
    ],
)
def test_normalized_columns_match_trl(fmt: str, columns: list[str]) -> None:
    out = normalize(Dataset.from_list(SAMPLES[fmt]), fmt)  # type: ignore[arg-type]
    assert sorted(out.dataset.column_names) == sorted(columns)


def test_alpaca_becomes_prompt_completion() -> None:
    rows = normalize(Dataset.from_list(SAMPLES["alpaca"])).dataset.to_list()
    assert rows[0] == {
        "prompt": "### Instruction:\nAdd\n\n### Input:\n2+2\n\n### Response:\n",
        "completion": "4",
    }
    assert rows[1]["prompt"] == ALPACA_PROMPT_TEMPLATE.format(instruction="Greet")
    # prompt/completion data is already in the alpaca output layout and passes through unchanged
    ready = Dataset.from_list([{"prompt": "P", "completion": "C"}])
    assert normalize(ready).dataset.to_list() == [{"prompt": "P", "completion": "C"}]


def test_sharegpt_speakers_become_roles() -> None:
    data = [{"conversations": [{"from": "system", "value": "be nice"}, *SHAREGPT]}]
    out = normalize(Dataset.from_list(data)).dataset
    assert out.to_list() == [{"messages": [{"role": "system", "content": "be nice"}, *CHAT]}]
    # sharegpt turns in a column called messages are recognised by their keys
    assert detect_format(Dataset.from_list([{"messages": SHAREGPT}])) == "sharegpt"


def test_messages_keep_role_content_and_license() -> None:
    data = [{"messages": CHAT, "license": "mit", "source": "x"}]
    out = normalize(Dataset.from_list(data)).dataset
    assert out.to_list() == [{"messages": CHAT, "license": "mit"}]


def test_kto_labels_become_bools() -> None:
    data = [{"prompt": "p", "completion": "c", "label": v} for v in (1, 0)]
    assert normalize(Dataset.from_list(data)).dataset["label"] == [True, False]
    strings = [{"prompt": "p", "completion": "c", "label": v} for v in ("true", "False", "desirable")]
    assert normalize(Dataset.from_list(strings)).dataset["label"] == [True, False, True]
    bad = [{"prompt": "p", "completion": "c", "label": v} for v in ("yes", "maybe")]
    with pytest.raises(DataFormatError, match=r"row 1: kto label must be true/false \(or 1/0\), got 'maybe'"):
        normalize(Dataset.from_list(bad))


def test_conversational_preference_is_kept() -> None:
    data = [{"prompt": [CHAT[0]], "chosen": [CHAT[1]], "rejected": [{"role": "assistant", "content": "go away"}]}]
    out = normalize(Dataset.from_list(data)).dataset.to_list()[0]
    assert out["chosen"] == [CHAT[1]]
    assert row_sequences(out) == ["user: hi\nassistant: hello", "user: hi\nassistant: go away"]


def test_implicit_prompt_preference() -> None:
    out = normalize(Dataset.from_list([{"chosen": "a", "rejected": "b"}])).dataset
    assert out.column_names == ["chosen", "rejected"]


@pytest.mark.parametrize(
    ("fmt", "rows", "message"),
    [
        (
            "preference",
            [{"text": "x"}],
            r"format 'preference' needs columns chosen, rejected; the dataset has \['text'\]",
        ),
        ("kto", [{"prompt": "p", "completion": "c"}], r"format 'kto' needs columns prompt, completion, label"),
        ("alpaca", [{"instruction": "i"}], r"needs columns instruction, output or prompt, completion"),
        ("messages", [{"text": "x"}], r"needs columns messages or conversations"),
        ("text", [{"prompt": "x"}], r"format 'text' needs columns text"),
        ("prompt", [{"text": "x"}], r"format 'prompt' needs columns prompt"),
    ],
)
def test_wrong_format_names_the_missing_columns(fmt: str, rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(DataFormatError, match=message) as caught:
        normalize(Dataset.from_list(rows), fmt)  # type: ignore[arg-type]
    assert isinstance(caught.value, ConfigError)


def test_undetectable_format() -> None:
    with pytest.raises(DataFormatError, match=r"cannot detect the dataset format from columns \['a', 'b'\]"):
        normalize(Dataset.from_list([{"a": 1, "b": 2}]))


def test_unknown_format_name() -> None:
    with pytest.raises(DataFormatError, match="unknown dataset format 'csv'"):
        normalize(Dataset.from_list([{"text": "x"}]), "csv")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"messages": [{"role": "wizard", "content": "x"}]}], r"row 0: unknown role 'wizard'"),
        ([{"messages": [{"content": "x"}]}], r"column 'messages' must hold lists of \{role, content\}"),
        ([{"conversations": [{"from": "alien", "value": "x"}]}], r"row 0: unknown sharegpt speaker 'alien'"),
    ],
)
def test_bad_rows(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        normalize(Dataset.from_list(rows))


def test_text_must_be_strings() -> None:
    with pytest.raises(DataFormatError, match=r"row 0: column 'text' must be a string, got int"):
        normalize(Dataset.from_dict({"text": [5]}), "text")


def test_null_values_become_empty_strings_for_prep() -> None:
    out = normalize(Dataset.from_list([{"text": "a"}, {"text": None}])).dataset
    assert out["text"] == ["a", ""]


def test_objective_compatibility() -> None:
    check_objective_format("preference", "dpo")
    check_objective_format("messages", "sft")
    check_objective_format("prompt", "rlhf")
    with pytest.raises(
        DataFormatError, match="objective 'dpo' needs a dataset in format preference, but the dataset is 'text'"
    ):
        check_objective_format("text", "dpo")
    with pytest.raises(DataFormatError, match="unknown objective 'ppo'"):
        check_objective_format("text", "ppo")


def test_row_text_and_sequences() -> None:
    row = {"prompt": "P ", "completion": "C", "license": "mit"}
    assert row_sequences(row) == ["P C"]
    assert row_text(row) == "P \nC"
    assert row_sequences({"prompt": "P", "chosen": "a", "rejected": "bb"}) == ["Pa", "Pbb"]
    assert row_sequences({"text": "t"}) == ["t"]
    assert row_sequences({"prompt": "only"}) == ["only"]

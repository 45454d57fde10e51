"""Data prep: planted duplicates, PII, licenses and lengths are removed (and counted), the rest kept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from kubetune_trainer.data import prep as prep_module
from kubetune_trainer.data.dedup import ExactDeduplicator, NearDeduplicator, normalize_text
from kubetune_trainer.data.formats import normalize
from kubetune_trainer.data.licenses import LicensePolicy
from kubetune_trainer.data.prep import PrepReport, prepare, prepare_from_spec
from kubetune_trainer.errors import ConfigError, EmptyDataError, LicenseError

pytestmark = pytest.mark.unit

TOPICS = ["contract law", "tax filings", "river ecology", "compiler design", "baking bread", "orbital mechanics"]
PARAGRAPH = (
    "The court held that the agreement between the parties was enforceable because both sides had "
    "exchanged consideration, the terms were sufficiently certain, and neither party had been misled "
    "about the nature of the obligations they were accepting at the time of signing."
)


def _distinct(n: int) -> list[str]:
    return [
        f"Note {i} about {TOPICS[i % len(TOPICS)]}: item {i * 7919 % 1000} differs from the others." for i in range(n)
    ]


def _text_ds(texts: list[str], **extra: list[Any]) -> Dataset:
    return Dataset.from_dict({"text": texts, **extra})


# --- dedup -----------------------------------------------------------------------------------------


def test_exact_duplicates_removed_after_normalisation() -> None:
    base = _distinct(10)
    planted = [base[0], "  " + base[1].upper() + "  ", base[2].replace(" ", "\n  ")]
    result = prepare(_text_ds(base + planted), dedup="exact")
    assert result.dataset["text"] == base
    assert result.report.removed["duplicate"] == 3
    assert result.report.rows_in == 13
    assert result.report.rows_out == 10


def test_near_duplicates_removed_only_in_near_mode() -> None:
    near = PARAGRAPH.replace("enforceable", "binding")
    near2 = PARAGRAPH.replace("at the time of signing", "when signing")
    texts = [PARAGRAPH, *_distinct(8), near, near2, PARAGRAPH]
    exact = prepare(_text_ds(texts), dedup="exact")
    assert exact.report.removed["duplicate"] == 1
    assert near in exact.dataset["text"]

    fuzzy = prepare(_text_ds(texts), dedup="near", near_threshold=0.8)
    assert fuzzy.dataset["text"] == [PARAGRAPH, *_distinct(8)]
    assert fuzzy.report.removed["near_duplicate"] == 2
    assert fuzzy.report.removed["duplicate"] == 1

    assert prepare(_text_ds(texts), dedup="none").report.rows_out == len(texts)


def test_near_deduplicator_keeps_different_texts_with_shared_boilerplate() -> None:
    dedup = NearDeduplicator(threshold=0.85)
    texts = [f"Q: what is {t}? A: {t} is a field of study with its own long history." for t in TOPICS]
    assert [dedup.check(t) for t in texts] == [None] * len(TOPICS)
    assert dedup.check(texts[0]) == "duplicate"
    assert dedup.check(texts[0].replace("long history", "long histories")) == "near_duplicate"
    with pytest.raises(ValueError, match="threshold"):
        NearDeduplicator(threshold=0)


def test_exact_deduplicator_and_normalisation() -> None:
    assert normalize_text("  Hello\tWORLD\n") == "hello world"
    assert normalize_text("ﬁne") == "fine"  # NFKC folds ligatures
    dedup = ExactDeduplicator()
    assert dedup.check("a b") is None
    assert dedup.check("A  B") == "duplicate"


def test_dedup_keys_use_every_field_of_a_row() -> None:
    rows = [
        {"prompt": "Q", "chosen": "good", "rejected": "bad"},
        {"prompt": "Q", "chosen": "good", "rejected": "worse"},
        {"prompt": "Q", "chosen": "good", "rejected": "bad"},
    ]
    result = prepare(normalize(Dataset.from_list(rows)).dataset, dedup="exact")
    assert result.dataset["rejected"] == ["bad", "worse"]


# --- PII -------------------------------------------------------------------------------------------

CLEAN = [
    "The parties met on Tuesday to discuss the lease.",
    "Order 4111111111111112 was cancelled (not a card: fails Luhn).",
    "Version 2.4.1 of the library fixed the bug.",
]
DIRTY = [
    "Contact jane@example.org for the draft.",
    "Her phone is (212) 555-0198.",
    "Card 4111 1111 1111 1111 was charged.",
    "Wire to DE89 3704 0044 0532 0130 00 today.",
    "SSN 123-45-6789 appears in the form.",
    "Logged in from 203.0.113.45 and 2001:db8::8a2e:370:7334.",
    "Use key AKIAIOSFODNN7EXAMPLE for the bucket.",
]


def test_pii_redacted_and_normal_text_untouched() -> None:
    result = prepare(_text_ds(CLEAN + DIRTY), pii_enabled=True, pii_action="redact")
    out = result.dataset["text"]
    assert out[: len(CLEAN)] == CLEAN
    assert out[len(CLEAN) :] == [
        "Contact [EMAIL] for the draft.",
        "Her phone is [PHONE].",
        "Card [CREDIT_CARD] was charged.",
        "Wire to [IBAN] today.",
        "SSN [SSN] appears in the form.",
        "Logged in from [IP_ADDRESS] and [IP_ADDRESS].",
        "Use key [SECRET] for the bucket.",
    ]
    assert result.report.pii_found == {
        "secret_aws_access_key": 1,
        "credit_card": 1,
        "email": 1,
        "iban": 1,
        "ipv4": 1,
        "ipv6": 1,
        "phone": 1,
        "ssn": 1,
    }
    assert result.report.removed["pii"] == 0


def test_pii_drop_mode_removes_rows() -> None:
    result = prepare(_text_ds(CLEAN + DIRTY), pii_enabled=True, pii_action="drop")
    assert result.dataset["text"] == CLEAN
    assert result.report.removed["pii"] == len(DIRTY)
    assert sum(result.report.pii_found.values()) == 8


def test_pii_disabled_leaves_everything() -> None:
    result = prepare(_text_ds(DIRTY), pii_enabled=False)
    assert result.dataset["text"] == DIRTY
    assert result.report.pii_found == {}


def test_pii_in_chat_and_preference_rows() -> None:
    chat = [{"messages": [{"role": "user", "content": "I am bob@corp.com"}, {"role": "assistant", "content": "Hi"}]}]
    out = prepare(normalize(Dataset.from_list(chat)).dataset, pii_enabled=True).dataset
    assert out["messages"] == [[{"role": "user", "content": "I am [EMAIL]"}, {"role": "assistant", "content": "Hi"}]]
    pref = [{"prompt": "Card?", "chosen": "No card numbers.", "rejected": "Sure: 4111 1111 1111 1111"}]
    out = prepare(normalize(Dataset.from_list(pref)).dataset, pii_enabled=True).dataset
    assert out["rejected"] == ["Sure: [CREDIT_CARD]"]


def test_redaction_can_reveal_duplicates() -> None:
    rows = ["Ping alice@example.com about the report.", "Ping bob@example.com about the report."]
    result = prepare(_text_ds(rows), pii_enabled=True, dedup="exact")
    assert result.dataset["text"] == ["Ping [EMAIL] about the report."]
    assert result.report.removed["duplicate"] == 1


# --- licenses --------------------------------------------------------------------------------------


def test_row_licenses_outside_the_allow_list_are_removed() -> None:
    texts = _distinct(5)
    licenses = ["MIT", "Apache License 2.0", "proprietary", None, "cc-by-nc-4.0"]
    result = prepare(_text_ds(texts, license=licenses), allowed_licenses=["mit", "apache-2.0"])
    assert result.dataset["text"] == [texts[0], texts[1], texts[3]]
    assert result.report.removed["license"] == 2
    assert result.report.rows_without_license == 1
    assert result.report.license_refused == {"CC-BY-NC-4.0": 1, "proprietary": 1}
    assert result.report.license_allowed == {"Apache-2.0": 1, "MIT": 1}
    assert "license" not in result.dataset.column_names
    kept = prepare(_text_ds(texts, license=licenses), allowed_licenses=["mit"], keep_license_column=True)
    assert kept.dataset["license"] == ["MIT", None]


def test_declared_license_applies_to_rows_without_one() -> None:
    texts = _distinct(3)
    result = prepare(_text_ds(texts, license=[None, "gpl-3.0", ""]), allowed_licenses=["mit"], declared_license="MIT")
    assert result.dataset["text"] == [texts[0], texts[2]]
    assert result.report.rows_without_license == 0


def test_declared_license_not_allowed_refuses_the_dataset() -> None:
    with pytest.raises(LicenseError, match=r"dataset license 'cc-by-nc-4.0' is not in prep.licenses.allow \(MIT\)"):
        prepare(_text_ds(_distinct(2)), allowed_licenses=["mit"], declared_license="cc-by-nc-4.0")
    with pytest.raises(LicenseError, match="allow is empty"):
        LicensePolicy([])


def test_licenses_compare_as_spdx_ids() -> None:
    policy = LicensePolicy(["CC-BY-4.0"])
    assert policy.decide("cc-by-4.0").decision == "allowed"
    assert policy.decide("Creative Commons Attribution 4.0 International").decision == "allowed"
    assert policy.decide("mit").decision == "refused"
    assert policy.decide(None).decision == "unknown"


# --- length and empty rows -------------------------------------------------------------------------


def test_too_long_rows_removed_by_token_count() -> None:
    words = [" ".join(["w"] * n) for n in (3, 10, 11, 50)]
    result = prepare(
        _text_ds(words), max_seq_length=10, lengths=lambda texts: [len(t.split()) for t in texts], dedup="none"
    )
    assert [len(t.split()) for t in result.dataset["text"]] == [3, 10]
    assert result.report.removed["too_long"] == 2
    assert result.report.settings["length_unit"] == "tokens"


def test_length_in_characters_without_a_tokenizer() -> None:
    result = prepare(_text_ds(["abcd", "abcdefgh"]), max_seq_length=5)
    assert result.dataset["text"] == ["abcd"]
    assert result.report.settings["length_unit"] == "characters"


def test_preference_length_uses_the_longer_pair() -> None:
    rows = [
        {"prompt": "aa", "chosen": "bb", "rejected": "cc"},
        {"prompt": "aa", "chosen": "bb", "rejected": "c" * 10},
    ]
    result = prepare(normalize(Dataset.from_list(rows)).dataset, max_seq_length=6)
    assert result.dataset["rejected"] == ["cc"]


def test_empty_rows_removed() -> None:
    texts = ["real text", "", "   \n", "more text"]
    result = prepare(_text_ds(texts))
    assert result.dataset["text"] == ["real text", "more text"]
    assert result.report.removed["empty"] == 2
    rows = [{"instruction": "Say hi", "output": ""}, {"instruction": "Say bye", "output": "bye"}]
    assert prepare(normalize(Dataset.from_list(rows)).dataset).dataset["completion"] == ["bye"]


# --- empty result, report ---------------------------------------------------------------------------


def test_everything_removed_is_a_config_error_with_counts() -> None:
    rows = ["same", "same", ""]
    with pytest.raises(EmptyDataError) as caught:
        prepare(_text_ds(rows), max_seq_length=2)
    message = caught.value.message
    assert isinstance(caught.value, ConfigError)
    assert message.startswith("no rows left after dataset.prep (3 in, removed empty=1 duplicate=1 too_long=1)")
    assert "\n" not in message


def test_empty_input_is_a_config_error() -> None:
    with pytest.raises(EmptyDataError, match="the dataset has no rows"):
        prepare(Dataset.from_dict({"text": []}))


def test_report_round_trips_as_json(tmp_path: Path) -> None:
    result = prepare(_text_ds([*CLEAN, CLEAN[0], DIRTY[0]]), pii_enabled=True, dedup="near")
    report = result.report
    assert isinstance(report, PrepReport)
    path = tmp_path / "prep-report.json"
    report.save(path)
    data = json.loads(path.read_text())
    assert data["rows_in"] == 5
    assert data["rows_out"] == 4
    assert data["removed"]["duplicate"] == 1
    assert data["pii_found"] == {"email": 1}
    assert data["settings"]["dedup"] == "near"
    assert set(data["removed"]) == {"license", "empty", "pii", "duplicate", "near_duplicate", "too_long"}
    assert report.summary() == "prep: 5 in, 4 out; removed duplicate=1; pii email=1"


def test_progress_is_logged_with_rows_per_second(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prep_module, "CHUNK_ROWS", 2)
    monkeypatch.setattr(prep_module, "LOG_INTERVAL_SECONDS", 0.0)
    with caplog.at_level("INFO", logger="kubetune_trainer.data.prep"):
        prepare(_text_ds([*_distinct(5), _distinct(5)[0]]))
    assert re.search(r"prep: 2/6 rows \(33%\), \d+ rows/s on 1 worker\(s\), removed none", caplog.text)
    assert re.search(r"prep: 4/6 rows \(66%\), \d+ rows/s on 1 worker\(s\), removed none", caplog.text)
    assert re.search(r"prep: 6 in, 5 out; removed duplicate=1 \(\d+ rows/s on 1 worker\(s\)\)", caplog.text)


def test_features_survive_prep() -> None:
    rows = [{"prompt": "p", "completion": "c", "label": True}, {"prompt": "q", "completion": "d", "label": False}]
    ds = normalize(Dataset.from_list(rows)).dataset
    out = prepare(ds).dataset
    assert out.features == ds.features
    assert out["label"] == [True, False]


def test_prepare_from_the_api_model() -> None:
    from kubetune.api.v1alpha1.data import DatasetPrep

    spec = DatasetPrep.model_validate(
        {
            "dedup": "exact",
            "piiFilter": {"enabled": True, "action": "drop"},
            "licenses": {"allow": ["mit"]},
            "maxSeqLength": 16,
        }
    )
    texts = ["short ok", "short ok", "mail a@b.com", "w " * 20, "gpl row"]
    result = prepare_from_spec(_text_ds(texts, license=["mit", "mit", "mit", "mit", "gpl-3.0"]), spec)
    assert result.report.license_refused == {"GPL-3.0": 1}
    assert result.dataset["text"] == ["short ok"]
    assert result.report.removed == {
        "license": 1,
        "empty": 0,
        "pii": 1,
        "duplicate": 1,
        "near_duplicate": 0,
        "too_long": 1,
    }

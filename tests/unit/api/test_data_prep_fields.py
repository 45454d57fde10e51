"""`spec.dataset.prep`: licenses are SPDX expressions or names, the NER option names a spaCy pipeline,
`workers` is bounded; the generated CRD schema carries the same limits as the models."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from kubetune.api.crd.build import finetunejob_crd
from kubetune.api.problems import validate
from kubetune.api.v1alpha1 import FineTuneJob
from unit.api.test_problems import FTJ

pytestmark = pytest.mark.unit


def _with_prep(prep: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(FTJ)
    document["spec"]["dataset"]["prep"] = prep
    return document


def test_licenses_ner_and_workers_are_accepted() -> None:
    prep = {
        "licenses": {"allow": ["Apache License 2.0", "MIT OR Apache-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"]},
        "piiFilter": {"enabled": True, "ner": True, "nerModel": "en_core_web_lg"},
        "workers": 8,
    }
    ftj, problems = validate(FineTuneJob, _with_prep(prep))
    assert problems == []
    assert ftj is not None
    assert ftj.spec.dataset.prep.licenses is not None
    assert ftj.spec.dataset.prep.licenses.allow[0] == "Apache License 2.0"
    assert ftj.spec.dataset.prep.pii_filter.ner is True
    assert ftj.spec.dataset.prep.workers == 8


@pytest.mark.parametrize(
    ("prep", "path"),
    [
        ({"licenses": {"allow": ["MIT\nApache-2.0"]}}, "licenses.allow[0]"),
        ({"licenses": {"allow": ["x" * 257]}}, "licenses.allow[0]"),
        ({"piiFilter": {"enabled": True, "ner": True, "nerModel": "en core"}}, "piiFilter.nerModel"),
        ({"workers": 257}, "workers"),
        ({"workers": -1}, "workers"),
    ],
)
def test_bad_prep_fields_are_refused(prep: dict[str, Any], path: str) -> None:
    _, problems = validate(FineTuneJob, _with_prep(prep))
    assert [p.path for p in problems] == [f"spec.dataset.prep.{path}"]


def test_crd_schema_has_the_same_limits() -> None:
    schema = finetunejob_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    prep = schema["properties"]["spec"]["properties"]["dataset"]["properties"]["prep"]["properties"]
    allow = prep["licenses"]["properties"]["allow"]["items"]
    assert allow["maxLength"] == 256
    assert re.fullmatch(allow["pattern"], "MIT OR Apache-2.0")
    assert not re.fullmatch(allow["pattern"], "MIT\nApache-2.0")
    assert (prep["workers"]["minimum"], prep["workers"]["maximum"]) == (0, 256)
    assert prep["piiFilter"]["properties"]["ner"]["default"] is False


def test_the_example_in_docs_data_prep_validates() -> None:
    from pathlib import Path

    import yaml

    from kubetune.api.v1alpha1.data import DatasetSpec

    text = (Path(__file__).resolve().parents[3] / "docs" / "data-prep.md").read_text()
    block = yaml.safe_load(text.split("```yaml")[1].split("```")[0])
    prep = DatasetSpec.model_validate(block["dataset"]).prep
    assert prep.pii_filter.ner
    assert prep.licenses is not None
    assert prep.licenses.allow == ["Apache-2.0", "MIT", "CC-BY-4.0"]

"""Licenses as SPDX expressions: names and ids are one license, OR/AND/WITH mean what SPDX says, the
dataset card's license applies to rows without one (read from a real hub cache layout, offline), and the
report and status say how many rows each refused license dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from kubetune_dev.tiny import write_jsonl
from kubetune_trainer.data.licenses import LicensePolicy, canonical_license
from kubetune_trainer.data.load import load_dataset_uri, read_card_license
from kubetune_trainer.data.prep import prepare
from kubetune_trainer.data_stage import flatten_report
from kubetune_trainer.errors import LicenseError

pytestmark = pytest.mark.unit

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Apache License 2.0", "Apache-2.0"),
        ("apache-2.0", "Apache-2.0"),
        ("MIT License OR apache license 2.0", "MIT OR Apache-2.0"),
        ('BSD 3-Clause "New" or "Revised" License', "BSD-3-Clause"),
        ("GNU General Public License v2.0 or later", "GPL-2.0-or-later"),
        ("gpl-2.0-only with classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"),
        ("openrail", "openrail"),  # a hub id outside the SPDX list stays a literal
    ],
)
def test_names_and_ids_parse_to_one_spdx_expression(text: str, canonical: str) -> None:
    assert canonical_license(text) == canonical


@pytest.mark.parametrize(
    ("row", "decision"),
    [
        ("MIT", "allowed"),
        ("Apache License 2.0", "allowed"),
        ("MIT OR GPL-3.0-only", "allowed"),  # dual licensed: the licensee picks MIT
        ("GPL-3.0-only OR CC-BY-NC-4.0", "refused"),
        ("MIT AND Apache-2.0", "allowed"),
        ("MIT AND CC-BY-NC-4.0", "refused"),  # both apply, one is not allowed
        ("(MIT AND CC-BY-NC-4.0) OR Apache-2.0", "allowed"),
        ("GPL-2.0-only WITH Classpath-exception-2.0", "allowed"),  # listed with its exception
        ("GPL-2.0-only", "refused"),
        ("OpenRAIL", "allowed"),  # literal ids compare case-insensitively
        ("other", "refused"),
    ],
)
def test_a_row_is_allowed_when_one_choice_uses_only_allowed_licenses(row: str, decision: str) -> None:
    policy = LicensePolicy(["MIT", "Apache-2.0", "GPL-2.0-only WITH Classpath-exception-2.0", "openrail"])
    assert policy.decide(row).decision == decision


def test_an_exception_only_adds_permissions() -> None:
    assert LicensePolicy(["GPL-2.0-or-later"]).decide("GPL-2.0-or-later WITH GCC-exception-3.1").decision == "allowed"


def test_allow_list_entries_with_or_allow_each_and_with_and_are_refused() -> None:
    policy = LicensePolicy(["MIT OR Apache-2.0"])
    assert policy.decide("Apache-2.0").decision == "allowed"
    with pytest.raises(LicenseError, match="combines licenses with AND; list each license separately"):
        LicensePolicy(["MIT AND Apache-2.0"])
    with pytest.raises(LicenseError, match=r"cannot parse license 'MIT OR \(Apache-2.0' as an SPDX expression"):
        LicensePolicy(["MIT OR (Apache-2.0"])


def test_card_license_applies_to_rows_without_their_own_and_counts_drops() -> None:
    texts = [f"row {i} is about something else entirely" for i in range(5)]
    licenses = [None, "MIT", None, "GPL-3.0-only", ""]
    dataset = Dataset.from_dict({"text": texts, "license": licenses})
    refused = prepare(dataset, allowed_licenses=["MIT"], card_license="cc-by-nc-4.0")
    assert refused.dataset["text"] == [texts[1]]
    assert refused.report.removed["license"] == 4
    assert refused.report.license_refused == {"CC-BY-NC-4.0": 3, "GPL-3.0-only": 1}
    allowed = prepare(dataset, allowed_licenses=["MIT"], card_license="mit")
    assert allowed.dataset["text"] == [texts[0], texts[1], texts[2], texts[4]]
    assert allowed.report.license_allowed == {"MIT": 4}
    assert allowed.report.rows_without_license == 0
    declared = prepare(dataset, allowed_licenses=["MIT"], declared_license="MIT", card_license="cc-by-nc-4.0")
    assert declared.report.license_refused == {"GPL-3.0-only": 1}  # the declaration wins over the card
    unknown = prepare(dataset, allowed_licenses=["MIT"], card_license="unknown")
    assert unknown.report.rows_without_license == 3


def test_status_counts_rows_each_refused_license_dropped() -> None:
    dataset = Dataset.from_dict(
        {
            "text": [f"text {i} differs" for i in range(4)],
            "license": ["MIT", "GPL-3.0-only", "GPL-3.0-only", "MIT AND CC-BY-NC-4.0"],
        }
    )
    flat = flatten_report(prepare(dataset, allowed_licenses=["MIT"]).report)
    assert flat["removed_license"] == 3
    assert flat["license_refused_GPL-3.0-only"] == 2
    assert flat["license_refused_MIT_AND_CC-BY-NC-4.0"] == 1
    assert flat["rows_without_license"] == 0


def _hub_dataset(cache: Path, repo_id: str, card: str, rows: list[dict[str, str]]) -> None:
    """The layout huggingface_hub writes for a dataset repo (refs + snapshot with README.md card)."""
    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    write_jsonl(snapshot / "data" / "train.jsonl", rows)
    (snapshot / "README.md").write_text(card)


def test_hf_dataset_license_is_read_from_its_card_offline(tmp_path: Path) -> None:
    card = "---\nlicense: cc-by-nc-4.0\npretty_name: Legal QA\n---\n# Legal QA\n"
    _hub_dataset(tmp_path, "acme/legal", card, [{"text": "first row text"}, {"text": "second row text"}])
    loaded = load_dataset_uri("hf://acme/legal", cache_dir=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert loaded.card_license == "cc-by-nc-4.0"
    assert loaded.dataset["text"] == ["first row text", "second row text"]
    with pytest.raises(Exception, match=r"no rows left .* \(license refused: \{'CC-BY-NC-4.0': 2\}\)"):
        prepare(loaded.dataset, allowed_licenses=["MIT"], card_license=loaded.card_license)


def test_a_card_listing_several_licenses_means_all_apply(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense:\n- mit\n- cc-by-4.0\n---\n")
    assert read_card_license(tmp_path) == "mit AND cc-by-4.0"
    assert LicensePolicy(["MIT"], card_license=read_card_license(tmp_path)).decide(None).decision == "refused"
    (tmp_path / "README.md").write_text("# no metadata\n")
    assert read_card_license(tmp_path) is None
    assert read_card_license(tmp_path / "absent") is None

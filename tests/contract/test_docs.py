"""The README and docs/ stay true to the tree: every relative link reaches a file (and a heading, where it names
one), and every manifest they show is one `kubetune validate` accepts."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.cli import check_document

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCKERFILES = ("Dockerfile", "trainer-image/Dockerfile")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: the heading lowercased, punctuation but `-` and `_` dropped, each space a `-`."""
    text = FENCE.sub("", page.read_text())
    headings = re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"[a-z]+:", t)]


def yaml_blocks(page: Path) -> list[Any]:
    return [yaml.safe_load(body) for lang, body in FENCE.findall(page.read_text()) if lang in ("yaml", "yml")]


def test_the_anchor_rule_matches_githubs() -> None:
    page = ROOT / "docs" / "operator.md"
    assert "multi-node-runs-resourcesnodes--1" in heading_anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_readme_manifest_is_valid() -> None:
    (doc,) = [d for d in yaml_blocks(ROOT / "README.md") if isinstance(d, dict) and "kind" in d]
    assert doc["kind"] == "FineTuneJob"
    model, problems = check_document(doc)
    assert problems == []
    assert model is not None


def test_the_tracking_block_in_the_docs_is_valid_on_the_readme_job() -> None:
    (job,) = [d for d in yaml_blocks(ROOT / "README.md") if isinstance(d, dict) and "kind" in d]
    (fragment,) = yaml_blocks(ROOT / "docs" / "tracking.md")
    doc = copy.deepcopy(job)
    doc["spec"]["tracking"] = fragment["spec"]["tracking"]
    model, problems = check_document(doc)
    assert problems == []
    assert model is not None
    broken = copy.deepcopy(doc)
    broken["spec"]["tracking"]["mlflow"]["trackingUri"] = "https://user:secret@mlflow.example.com"
    assert check_document(broken)[1], "a trackingUri with credentials in it must be refused, as the page says"


def test_both_dockerfiles_default_to_the_public_base_the_readme_names_pinned_by_digest() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    defaults = [re.findall(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / p).read_text(), re.M) for p in DOCKERFILES]
    assert all(len(found) == 1 for found in defaults), defaults
    (base,) = {found[0] for found in defaults}
    name, _, digest = base.partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), base
    assert f"`{name}` pinned by digest" in readme

"""The labs as shipped: every lab's manifests are valid API objects in every setting, the data is what
its generator writes, and `kubetune lab` fails with a clear message on bad input (no training here)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from kubetune.api.v1alpha1.adapter import Adapter
from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.cli import main
from kubetune.labs.definition import MODEL_URI, LabError, available, expand, lab_directory, load_lab, name_of
from kubetune.labs.report import Check, Report, Section, Table, markdown
from kubetune.labs.runner import LABS, run_lab
from kubetune_dev import lab_data

pytestmark = pytest.mark.unit

LABS_DIR = Path(__file__).resolve().parents[3] / "labs"
KINDS = {"FineTuneJob": FineTuneJob, "Adapter": Adapter}


def test_every_lab_folder_has_an_analysis_and_the_reverse() -> None:
    assert available(LABS_DIR) == sorted(LABS)


@pytest.mark.parametrize("name", sorted(LABS))
def test_every_setting_expands_to_valid_objects(name: str) -> None:
    lab = load_lab(lab_directory(LABS_DIR, name))
    assert {"small", "gpu"} <= set(lab.settings)
    for setting in lab.settings.values():
        model_uri = setting.model or MODEL_URI
        documents = expand(lab, setting, model_uri=model_uri)
        for document in documents:
            KINDS[document["kind"]].model_validate(document)
        names = [name_of(d) for d in documents]
        assert len(names) == len(set(names)), f"{name}/{setting.name}: duplicate names"
        copies = len(setting.seeds) if setting.seeds else 1
        assert len(documents) == len(lab.documents) + (copies - 1) * len(lab.seeded)
        if setting.name == "small":
            assert all(d["spec"]["resources"]["gpus"] == 0 for d in documents if d["kind"] == "FineTuneJob")
        else:
            assert str(setting.model).startswith("hf://"), "the GPU setting names a documented model"


def test_seeded_jobs_repeat_with_their_seed_in_name_and_training() -> None:
    lab = load_lab(lab_directory(LABS_DIR, "dpo-vs-rl"))
    setting = lab.setting("small")
    documents = expand(lab, setting, model_uri=MODEL_URI)
    dpo = [d for d in documents if name_of(d).startswith("dpo-")]
    assert [name_of(d) for d in dpo] == [f"dpo-seed{s}" for s in setting.seeds]
    assert [d["spec"]["training"]["seed"] for d in dpo] == list(setting.seeds)
    assert [d["spec"]["output"]["adapterName"] for d in dpo] == [name_of(d) for d in dpo]


def test_committed_data_is_what_the_generator_writes() -> None:
    for name, rows in lab_data.datasets().items():
        assert (LABS_DIR / "data" / f"{name}.jsonl").read_text() == lab_data.render(rows), name


def test_held_out_questions_are_not_training_questions() -> None:
    data = lab_data.datasets()
    for task in ("docks", "tags"):
        train = {r["prompt"] for r in data[f"{task}-train"]}
        assert train.isdisjoint(r["prompt"] for r in data[f"{task}-eval"])


def test_unknown_lab_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="labs there: dpo-vs-rl, forgetting, fusion, peft-sweep, qlora-memory"):
        lab_directory(LABS_DIR, "nope")


def test_small_setting_without_a_model_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="pass --model DIR"):
        run_lab(LABS_DIR, "peft-sweep", setting_name="small", model_dir=None, out=tmp_path)


def test_cli_lab_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "run", "nope", "--labs-dir", str(LABS_DIR), "--out", str(tmp_path)]) == 1
    assert "kubetune lab: no lab 'nope'" in capsys.readouterr().out
    assert main(["lab", "run", "fusion", "--labs-dir", str(LABS_DIR), "--setting", "huge"]) == 1
    assert "has no setting 'huge'; it has small, gpu" in capsys.readouterr().out


def test_cli_lab_list_and_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "list", "--labs-dir", str(LABS_DIR)]) == 0
    assert capsys.readouterr().out.split() == sorted(LABS)
    assert main(["lab", "manifests", "fusion", "--labs-dir", str(LABS_DIR), "--setting", "gpu"]) == 0
    printed = capsys.readouterr().out
    assert "uri: hf://Qwen/Qwen2.5-0.5B" in printed
    assert "combination: ties" in printed


def test_markdown_report_states_scale_checks_and_how_to_reproduce() -> None:
    report = Report(
        lab="x",
        title="A lab",
        question="Why?",
        setting="small",
        scale="Tiny.",
        sections=[Section("Numbers", "", [Table("T", ["a", "b"], [[1234, 0.123456], [None, float("nan")]])])],
        checks=[Check("holds", True, "1 < 2"), Check("fails", False, "2 < 1")],
    )
    text = markdown(report, command="kubetune lab run x")
    assert "**Scale** (small setting): Tiny. Conclusions at this scale are indicative" in text
    assert "| 1,234 | 0.1235 |" in text
    assert "|  | n/a |" in text
    assert "- ✅ holds — 1 < 2" in text
    assert "- ❌ fails — 2 < 1" in text
    assert "kubetune lab run x" in text


def test_committed_example_reports_cover_every_lab_and_their_links_resolve() -> None:
    examples = LABS_DIR.parent / "docs" / "labs"
    index = (examples / "README.md").read_text()
    for name in sorted(LABS):
        report = examples / name / "report.md"
        assert f"({name}/report.md)" in index
        links = re.findall(r"\]\(([^)#]+)\)", report.read_text())
        assert links, name
        assert all((report.parent / link).is_file() for link in links), name


def test_figures_without_matplotlib_ask_for_the_labs_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kubetune.labs.plots import draw
    from kubetune.labs.report import Figure

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(LabError, match=r"install kubetune\[labs\]"):
        draw(Figure("f.png", "caption", "lines", "x", "y"), tmp_path)

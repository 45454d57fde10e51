"""The pipeline's data stage prepares once and caches by content: a second run with the same data and
settings (a retry, or another rank) loads the result; a changed setting prepares again."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_trainer import data_stage, pipeline
from kubetune_trainer.context import RunContext
from kubetune_trainer.data import prep as prep_module
from kubetune_trainer.loading import load_tokenizer
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def _context(tmp_path: Path, model_dir: Path, data: Path, prep: dict[str, object]) -> RunContext:
    job = {"dataset": {"train": {"uri": f"file://{data}"}, "eval": {"fraction": 0.25}, "prep": prep}}
    ctx = pipeline.build_context(TrainerConfig.model_validate(trainer_config(tmp_path, model_dir, data, job=job)))
    data_stage.load(ctx)
    ctx.tokenizer = load_tokenizer(model_dir)
    return ctx


def test_second_run_loads_the_prepared_data_from_the_cache(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    prep = {"maxSeqLength": 64, "dedup": "near", "piiFilter": {"enabled": True}}
    first = _context(tmp_path, model_dir, data_files["text"], prep)
    with caplog.at_level("INFO", logger="kubetune_trainer"):
        data_stage.prepare(first)
        assert "(prepared); training on" in caplog.text
        caplog.clear()
        second = _context(tmp_path, model_dir, data_files["text"], prep)
        data_stage.prepare(second)
        assert "reusing the prepared data of an earlier run" in caplog.text
        assert "(from the cache); training on" in caplog.text
    assert second.train_dataset["text"] == first.train_dataset["text"]
    assert second.eval_dataset["text"] == first.eval_dataset["text"]
    assert second.prep_report == first.prep_report
    assert first.prep_report["rows_in"] == 48
    assert first.extras["prep_report"]["settings"]["length_unit"].startswith("tokens:")
    entries = sorted(p.name for p in (tmp_path / "cache" / "prep").iterdir())
    assert len(entries) == 1


def test_a_changed_setting_prepares_again_and_workers_change_nothing(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    prep = {"maxSeqLength": 32, "dedup": "near", "piiFilter": {"enabled": True}}
    one = _context(tmp_path / "one", model_dir, data_files["text"], {**prep, "workers": 1})
    data_stage.prepare(one)
    monkeypatch.setattr(prep_module, "CHUNK_ROWS", 10)  # 48 rows: 5 chunks for 2 worker processes
    two = _context(tmp_path / "two", model_dir, data_files["text"], {**prep, "workers": 2})
    data_stage.prepare(two)  # from a process with torch loaded: the pool starts from a forkserver
    assert two.extras["prep_report"]["workers"] == 2
    assert two.prep_report == one.prep_report
    assert two.train_dataset["text"] == one.train_dataset["text"]
    longer = _context(tmp_path / "one", model_dir, data_files["text"], {**prep, "maxSeqLength": 64})
    data_stage.prepare(longer)
    assert len(list((tmp_path / "one" / "cache" / "prep").iterdir())) == 2

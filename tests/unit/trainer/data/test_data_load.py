"""Loading JSONL, Parquet and saved datasets from file:// and pvc:// (a temporary mount root)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from kubetune_dev.tiny import write_jsonl
from kubetune_trainer.data.load import dataset_digest, detect_source_kind, load_dataset_path, load_dataset_uri
from kubetune_trainer.errors import DataFormatError, UriError
from support.data_files import write_parquet

pytestmark = pytest.mark.unit

ROWS = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(5)]


def test_jsonl_from_file_uri(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in" / "train.jsonl", ROWS)
    loaded = load_dataset_uri(f"file://{path}", cache_dir=tmp_path / "cache")
    assert loaded.dataset.column_names == ["instruction", "output"]
    assert loaded.dataset.to_list() == ROWS
    assert loaded.uri == f"file://{path}"
    assert loaded.revision is None
    assert loaded.digest.startswith("sha256:")
    assert len(loaded.digest) == 71


def test_jsonl_from_pvc_uri_under_mount_root(tmp_path: Path, pvc_root: Path) -> None:
    write_jsonl(pvc_root / "data" / "legal" / "train.jsonl", ROWS)
    loaded = load_dataset_uri("pvc://data/legal/train.jsonl", cache_dir=tmp_path / "cache", pvc_root=pvc_root)
    assert len(loaded.dataset) == 5
    assert loaded.path == pvc_root / "data" / "legal" / "train.jsonl"
    # same bytes under the same name: same digest, wherever the file lives
    elsewhere = write_jsonl(tmp_path / "copy" / "train.jsonl", ROWS)
    assert dataset_digest(elsewhere) == loaded.digest


def test_parquet_from_pvc_uri(tmp_path: Path, pvc_root: Path) -> None:
    write_parquet(pvc_root / "data" / "train.parquet", ROWS)
    loaded = load_dataset_uri("pvc://data/train.parquet", cache_dir=tmp_path / "cache", pvc_root=pvc_root)
    assert loaded.dataset.to_list() == ROWS


def test_saved_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    assert detect_source_kind(tmp_path / "saved") == "saved"
    assert load_dataset_uri(f"file://{tmp_path / 'saved'}", cache_dir=tmp_path / "c").dataset.to_list() == ROWS

    splits = DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:2])})
    splits.save_to_disk(str(tmp_path / "dict"))
    assert len(load_dataset_path(tmp_path / "dict", split="test")) == 2
    with pytest.raises(DataFormatError, match=r"has splits \['test', 'train'\] but not 'validation'"):
        load_dataset_path(tmp_path / "dict", split="validation")


def test_directory_of_shards_like_a_hub_snapshot(tmp_path: Path) -> None:
    write_parquet(tmp_path / "repo" / "data" / "train-00000-of-00002.parquet", ROWS[:3])
    write_parquet(tmp_path / "repo" / "data" / "train-00001-of-00002.parquet", ROWS[3:])
    (tmp_path / "repo" / "README.md").write_text("# a dataset card\n")
    loaded = load_dataset_path(tmp_path / "repo", cache_dir=tmp_path / "cache")
    assert sorted(loaded["instruction"]) == sorted(r["instruction"] for r in ROWS)


def test_gzipped_jsonl(tmp_path: Path) -> None:
    import gzip

    plain = write_jsonl(tmp_path / "t.jsonl", ROWS)
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_dataset_path(packed).to_list() == ROWS


def test_second_load_reuses_the_arrow_cache(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    load_dataset_uri(f"file://{path}", cache_dir=tmp_path / "cache")
    arrow = sorted((tmp_path / "cache").rglob("*.arrow"))
    assert arrow
    stamps = {p: p.stat().st_mtime_ns for p in arrow}
    load_dataset_uri(f"file://{path}", cache_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache").rglob("*.arrow")) == arrow
    assert {p: p.stat().st_mtime_ns for p in arrow} == stamps


def test_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("hello\n")
    with pytest.raises(DataFormatError, match=r"cannot tell the file type of 'train.txt'; use .jsonl"):
        load_dataset_uri(f"file://{tmp_path / 'train.txt'}", cache_dir=tmp_path / "cache")


def test_malformed_jsonl_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(DataFormatError, match=r"could not parse bad.jsonl"):
        load_dataset_path(path, cache_dir=tmp_path / "cache")


def test_empty_directory_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("nothing here")
    with pytest.raises(DataFormatError, match=r"holds no \.jsonl"):
        load_dataset_path(tmp_path / "empty")


def test_missing_file_uri(tmp_path: Path) -> None:
    with pytest.raises(UriError, match="does not exist"):
        load_dataset_uri(f"file://{tmp_path / 'nope.jsonl'}", cache_dir=tmp_path / "cache")


def test_pipeline_load_normalize_prep_holdout(tmp_path: Path, pvc_root: Path) -> None:
    from kubetune_trainer.data.formats import normalize
    from kubetune_trainer.data.prep import prepare
    from kubetune_trainer.data.splits import holdout

    rows = [{"instruction": f"Summarise case {i}", "input": "", "output": f"Case {i} was settled."} for i in range(20)]
    rows += [rows[3], {"instruction": "Email?", "input": "", "output": "Write to clerk@court.example.gov"}]
    write_jsonl(pvc_root / "data" / "legal.jsonl", rows)
    loaded = load_dataset_uri("pvc://data/legal.jsonl", cache_dir=tmp_path / "cache", pvc_root=pvc_root)
    normalized = normalize(loaded.dataset)
    assert normalized.format == "alpaca"
    prepared = prepare(normalized.dataset, dedup="exact", pii_enabled=True, max_seq_length=200)
    assert prepared.report.summary() == "prep: 22 in, 21 out; removed duplicate=1; pii email=1"
    train, evaluation = holdout(prepared.dataset, 0.1)
    assert (len(train), len(evaluation)) == (19, 2)
    assert "Write to [EMAIL]" in [*train["completion"], *evaluation["completion"]]

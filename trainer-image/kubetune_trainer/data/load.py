"""Load a dataset from any supported URI into a `datasets.Dataset`, with a content digest.

The on-disk layout decides the reader: `*.jsonl`/`*.json` and `*.parquet` files go through the
`datasets` packaged builders, a directory written by `Dataset.save_to_disk` through `load_from_disk`,
and any other directory (a hub snapshot, a folder of shards) through `datasets`' data-file inference.
Arrow caches go under the caller's cache directory so a second job does not re-parse or re-download.
The digest (sha256 over the source files) is what the operator records as `status.resolved.datasetDigest`.
A directory's dataset card (`README.md` with YAML metadata, as every hub dataset has) is read for its
`license`, which prep applies to rows that carry no license of their own.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kubetune_trainer.data.uris import DEFAULT_PVC_ROOT, Uri, resolve
from kubetune_trainer.errors import DataFormatError, UriError

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "LoadedDataset",
    "SourceKind",
    "dataset_digest",
    "detect_source_kind",
    "load_dataset_path",
    "load_dataset_uri",
    "read_card_license",
]

log = logging.getLogger(__name__)

SourceKind = Literal["jsonl", "parquet", "saved", "directory"]
_SUFFIXES: dict[str, SourceKind] = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_SAVED_MARKERS = ("state.json", "dataset_dict.json")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow", ".csv")


@dataclass(frozen=True)
class LoadedDataset:
    """A loaded split plus where it came from: the pinned revision (hf://) and the content digest."""

    dataset: Dataset
    uri: str
    path: Path
    digest: str
    revision: str | None = None
    card_license: str | None = None
    """The `license` of the dataset card, if the source is a directory with one (hub datasets are)."""


def detect_source_kind(path: Path) -> SourceKind:
    """Which reader a local path needs; unsupported suffixes are a config error naming the supported ones."""
    if path.is_dir():
        if any((path / marker).is_file() for marker in _SAVED_MARKERS):
            return "saved"
        return "directory"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in {".gz", ".bz2", ".xz", ".zst"}:
        suffixes = suffixes[:-1]  # datasets decompresses these transparently
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise DataFormatError(
        f"cannot tell the file type of {path.name!r}; use .jsonl, .json or .parquet "
        "(optionally .gz), or a directory written by datasets.save_to_disk"
    )


def load_dataset_path(path: Path, *, split: str = "train", cache_dir: Path | None = None) -> Dataset:
    """Read a local file or directory as one split; parse failures become `DataFormatError`."""
    import datasets
    from datasets.exceptions import DatasetGenerationError

    kind = detect_source_kind(path)
    cache = str(cache_dir / "datasets") if cache_dir is not None else None
    try:
        if kind == "saved":
            loaded = datasets.load_from_disk(str(path))
        elif kind == "directory":
            if not any(p.is_file() and p.name.lower().endswith(_DATA_SUFFIXES) for p in path.rglob("*")):
                raise DataFormatError(f"directory {path} holds no .jsonl, .json, .parquet, .arrow or .csv files")
            loaded = datasets.load_dataset(str(path), cache_dir=cache)
        else:
            builder = "json" if kind == "jsonl" else "parquet"
            loaded = datasets.load_dataset(builder, data_files={split: str(path)}, cache_dir=cache)
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc
        raise DataFormatError(f"could not parse {path.name}: {type(cause).__name__}: {cause}") from exc
    return _pick_split(loaded, split, path)


def _pick_split(loaded: object, split: str, path: Path) -> Dataset:
    from datasets import Dataset, DatasetDict

    if isinstance(loaded, Dataset):
        return loaded
    if isinstance(loaded, DatasetDict):
        if split in loaded:
            return loaded[split]
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        raise DataFormatError(f"{path} has splits {sorted(loaded)} but not {split!r}")
    raise DataFormatError(f"{path} did not load as a dataset (got {type(loaded).__name__})")


def dataset_digest(path: Path) -> str:
    """`sha256:<hex>` over the relative names and bytes of every file under `path` (or of the file)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(name.encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def read_card_license(path: Path) -> str | None:
    """The card's `license` as one SPDX expression (a list means all of them apply), or None without a card."""
    from huggingface_hub import DatasetCard

    card_path = path / "README.md"
    if not path.is_dir() or not card_path.is_file():
        return None
    value = DatasetCard.load(card_path).data.to_dict().get("license")
    if isinstance(value, list):
        names = [str(v).strip() for v in value if str(v).strip()]
        return " AND ".join(f"({n})" if " " in n else n for n in names) or None
    return str(value).strip() or None if value is not None else None


def load_dataset_uri(
    uri: str | Uri,
    *,
    cache_dir: Path,
    split: str = "train",
    pvc_root: Path = DEFAULT_PVC_ROOT,
    token_env: str | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedDataset:
    """Resolve a dataset URI (downloading into `cache_dir` if remote), load one split and digest it."""
    source = resolve(uri, cache_dir=cache_dir, pvc_root=pvc_root, repo_type="dataset", token_env=token_env, env=env)
    if not source.path.exists():
        raise UriError(f"{source.uri} does not exist (looked at {source.path})")
    dataset = load_dataset_path(source.path, split=split, cache_dir=cache_dir)
    digest = dataset_digest(source.path)
    card_license = read_card_license(source.path)
    log.info(
        "loaded %s: %d rows, columns %s, %s%s",
        source.uri,
        len(dataset),
        dataset.column_names,
        digest,
        f", card license {card_license}" if card_license else "",
    )
    return LoadedDataset(
        dataset=dataset,
        uri=source.uri,
        path=source.path,
        digest=digest,
        revision=source.revision,
        card_license=card_license,
    )

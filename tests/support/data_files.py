"""Write small datasets to disk as Parquet (JSON Lines: `kubetune_dev.tiny.write_jsonl`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_parquet"]


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as one Parquet file, creating parent folders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path

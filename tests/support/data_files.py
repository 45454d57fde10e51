"""Write small datasets to disk in the layouts the trainer reads (JSONL, Parquet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_jsonl", "write_parquet"]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as one Parquet file, creating parent folders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path

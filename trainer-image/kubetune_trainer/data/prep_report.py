"""What prep did: rows in and out, removals by reason, PII by kind, rows by license decision, speed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["REMOVAL_REASONS", "PrepReport", "RemovalReason"]

RemovalReason = Literal["license", "empty", "pii", "duplicate", "near_duplicate", "too_long"]
REMOVAL_REASONS: tuple[RemovalReason, ...] = ("license", "empty", "pii", "duplicate", "near_duplicate", "too_long")


@dataclass
class PrepReport:
    """Saved as JSON with the artifacts; `data_stage.flatten_report` turns it into `status.result.prepReport`."""

    rows_in: int = 0
    rows_out: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REMOVAL_REASONS, 0))
    pii_found: dict[str, int] = field(default_factory=dict)
    """Findings by kind: replaced by a placeholder (action redact) or the cause of a drop (action drop)."""
    rows_without_license: int = 0
    license_refused: dict[str, int] = field(default_factory=dict)
    """Rows dropped, by the SPDX expression that was refused (e.g. `GPL-3.0-only`: 12)."""
    license_allowed: dict[str, int] = field(default_factory=dict)
    """Rows admitted, by the SPDX expression that was allowed (they may still be removed later, e.g. as duplicates)."""
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1
    rows_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the artifact manifest and `status.result`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrepReport:
        """The inverse of `to_dict` (a cached prep result carries its report)."""
        return cls(**data)

    def to_json(self) -> str:
        """Stable, indented JSON (what `save` writes)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        """Write the report as JSON next to the artifacts."""
        Path(path).write_text(self.to_json() + "\n")

    def summary(self) -> str:
        """One line for logs and status, e.g. `prep: 1000 in, 940 out; removed duplicate=50 pii=10`."""
        removed = " ".join(f"{k}={v}" for k, v in self.removed.items() if v)
        line = f"prep: {self.rows_in} in, {self.rows_out} out; removed {removed or 'none'}"
        if self.license_refused:
            line += "; license refused " + ", ".join(f"{k}={v}" for k, v in sorted(self.license_refused.items()))
        if self.pii_found:
            line += "; pii " + " ".join(f"{k}={v}" for k, v in sorted(self.pii_found.items()))
        return line

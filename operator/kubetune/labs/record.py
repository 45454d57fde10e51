"""One run's outcome as a lab's analysis reads it, whichever way the run went (locally or on a cluster); pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    """One job's or merge's outcome, as the report needs it (all numbers; JSON-ready via `to_json`)."""

    name: str
    artifact: str
    """Where the artifact lives: a local folder (local run) or its URI (cluster run)."""
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    """The training log; a cluster run does not read it back (it stays with the artifact)."""
    files: dict[str, int] = field(default_factory=dict)
    """Artifact file sizes by name; a cluster run sees only their total (`artifact_bytes`)."""
    artifact_bytes: int = 0
    process_seconds: float = 0.0
    """Wall time of the trainer process that ran it (shared by every run of a series), or on a cluster
    the FineTuneJob's time from Running to its completion."""
    checkpoints: list[Path] = field(default_factory=list)
    precision: str | None = None
    libraries: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "history": self.history,
            "files": self.files,
            "artifactBytes": self.artifact_bytes,
            "processSeconds": round(self.process_seconds, 2),
            "checkpoints": [p.name for p in self.checkpoints],
            "precision": self.precision,
        }

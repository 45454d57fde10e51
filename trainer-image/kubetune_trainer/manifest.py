"""Reading and writing the artifact manifest (`kubetune.json`, model: `kubetune.api.v1alpha1.artifact`).

Writers are the training run (`artifacts`) and merge mode (`merge`); readers are merge (sources must
share the base model) and RLHF (the base a reward model was trained on). All go through here, so
the file name, the JSON layout and the validation are the same everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from kubetune.api.v1alpha1.artifact import MANIFEST_FILE, ArtifactManifest
from kubetune_trainer.errors import ConfigError

__all__ = ["MANIFEST_FILE", "ArtifactManifest", "read_manifest", "write_manifest"]


def write_manifest(directory: Path, manifest: ArtifactManifest) -> None:
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.to_document(), indent=2, sort_keys=True))


def read_manifest(directory: Path) -> ArtifactManifest | None:
    """The manifest of the artifact in `directory`; None when there is none (not a kubetune artifact)."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return ArtifactManifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid kubetune artifact manifest: {exc.errors()[0]['msg']}") from exc

"""A lab on disk: `labs/<name>/lab.yaml` (what it asks, its settings) and `jobs.yaml` (the manifests).

The manifests are ordinary FineTuneJobs and Adapters that `kubetune validate` accepts and a cluster
can run. They name the lab's claim, `pvc://kubetune-labs/...`: `model` is the base model, `data` the
shared datasets (labs/data), `runs` where artifacts go. A setting (`small` for a CPU and the tiny
in-repo model, `gpu` for a documented hub model) is an overlay merged into every FineTuneJob, plus
per-job overlays; `seeds` repeats each job of the lab's `seeded` list once per seed. All of this is
pure: documents in, documents out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLAIM = "kubetune-labs"
MODEL_URI = f"pvc://{CLAIM}/model"
"""Base-model URI the manifests use for the lab's model; a setting or `--model` replaces it."""
DATA_URI = f"pvc://{CLAIM}/data"
RUNS_URI = f"pvc://{CLAIM}/runs"
LAB_FILE = "lab.yaml"
JOBS_FILE = "jobs.yaml"


class LabError(Exception):
    """A lab that cannot be found, read or run; the message says what to do."""


@dataclass(frozen=True)
class Setting:
    name: str
    scale: str
    """One sentence on the model and hardware, quoted in the report."""
    model: str | None
    """Base-model URI (hf://...), or None when the model directory must be given (`--model`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class Lab:
    name: str
    directory: Path
    title: str
    question: str
    settings: dict[str, Setting]
    documents: list[dict[str, Any]]
    seeded: tuple[str, ...] = ()
    isolate: bool = False
    """Run every job in its own trainer process (memory measurements must not share a process)."""

    def setting(self, name: str) -> Setting:
        if name not in self.settings:
            raise LabError(f"lab {self.name} has no setting {name!r}; it has {', '.join(self.settings)}")
        return self.settings[name]


def lab_directory(labs_dir: Path, name: str) -> Path:
    """NAME under `labs_dir`, or a path to a lab folder."""
    candidate = Path(name)
    directory = candidate if (candidate / LAB_FILE).is_file() else labs_dir / name
    if not (directory / LAB_FILE).is_file():
        known = ", ".join(available(labs_dir)) or "none"
        raise LabError(f"no lab {name!r} in {labs_dir} (labs there: {known}); pass --labs-dir or a lab folder")
    return directory


def available(labs_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in labs_dir.glob(f"*/{LAB_FILE}"))


def load_lab(directory: Path) -> Lab:
    try:
        meta = yaml.safe_load((directory / LAB_FILE).read_text())
        documents = [d for d in yaml.safe_load_all((directory / JOBS_FILE).read_text()) if d]
    except (OSError, yaml.YAMLError) as error:
        raise LabError(f"lab {directory}: cannot read {LAB_FILE}/{JOBS_FILE}: {error}") from None
    settings = {
        name: Setting(
            name=name,
            scale=body["scale"],
            model=body.get("model"),
            overrides=body.get("overrides") or {},
            jobs=body.get("jobs") or {},
            seeds=tuple(body.get("seeds") or ()),
        )
        for name, body in meta["settings"].items()
    }
    return Lab(
        name=directory.name,
        directory=directory,
        title=meta["title"],
        question=meta["question"].strip(),
        settings=settings,
        documents=documents,
        seeded=tuple(meta.get("seeded") or ()),
        isolate=bool(meta.get("isolate", False)),
    )


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` merged into a copy of `base`; mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def name_of(document: dict[str, Any]) -> str:
    return str(document["metadata"]["name"])


def artifact_uri(document: dict[str, Any]) -> str:
    """Where the trainer publishes a FineTuneJob's artifact: `<output.uri>/<adapterName or job name>/`."""
    output = document["spec"]["output"]
    return f"{str(output['uri']).rstrip('/')}/{output.get('adapterName') or name_of(document)}/"


def _with_model(document: dict[str, Any], model_uri: str) -> dict[str, Any]:
    """Point the lab's model at `model_uri`; bases that are other jobs' artifacts stay."""
    base = document["spec"].get("baseModel") or {}
    if base.get("uri") != MODEL_URI or model_uri == MODEL_URI:
        return document
    return deep_merge(document, {"spec": {"baseModel": {"uri": model_uri}}})


def _seeded(document: dict[str, Any], seed: int) -> dict[str, Any]:
    name = f"{name_of(document)}-seed{seed}"
    overlay = {"metadata": {"name": name}, "spec": {"training": {"seed": seed}, "output": {"adapterName": name}}}
    return deep_merge(document, overlay)


def expand(lab: Lab, setting: Setting, *, model_uri: str) -> list[dict[str, Any]]:
    """The lab's documents for `setting`: overlays applied, seeded jobs repeated, the model set."""
    documents: list[dict[str, Any]] = []
    for written in lab.documents:
        document = written
        if document.get("kind") == "FineTuneJob":
            document = deep_merge(document, {"spec": setting.overrides})
            document = deep_merge(document, {"spec": setting.jobs.get(name_of(document), {})})
        document = _with_model(document, model_uri)
        copies = [_seeded(document, s) for s in setting.seeds] if name_of(document) in lab.seeded else [document]
        documents.extend(copies)
    return documents


def of_kind(documents: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d.get("kind") == kind]

"""`kubetune lab run NAME`: run a lab's manifests (locally, or on a cluster with `--cluster`) and write its report.

The report folder (`--out`, one subfolder per lab) gets `report.md`, `figures/*.png` and
`results.json` (the raw numbers of every run, the report's tables and its checks); scratch (the
lab's claim, work directories, trainer logs) goes to `--out/.work/NAME`. `--out/README.md` indexes
every report in the folder.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubetune.labs import dpo_vs_rl, forgetting, fusion, peft_sweep, qlora_memory
from kubetune.labs.definition import MODEL_URI, Lab, LabError, Setting, expand, lab_directory, load_lab
from kubetune.labs.local import LocalLab
from kubetune.labs.record import RunRecord
from kubetune.labs.report import Report, markdown, report_json

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
FIGURES = "figures"


class LabBackend(Protocol):
    """Where a lab's jobs run: `LocalLab` (trainer processes here) or `kubetune.lab_cluster.ClusterLab`."""

    def train(self, documents: list[dict[str, Any]], *, isolate: bool = False) -> dict[str, RunRecord]:
        """Train FineTuneJobs in order (later jobs may start from earlier artifacts)."""
        ...

    def merge(self, adapters: list[dict[str, Any]], sources: dict[str, RunRecord]) -> dict[str, RunRecord]:
        """Compose merge Adapters from the trained sources."""
        ...


@dataclass(frozen=True)
class LabRun:
    """What a lab's `run` needs: its definition, the chosen setting, its documents and the machinery."""

    lab: Lab
    setting: Setting
    documents: list[dict[str, Any]]
    backend: LabBackend
    model_uri: str
    local: LocalLab | None = None
    """The local machinery, for labs that score models with the trainer here; absent on a cluster."""

    def scorer(self) -> LocalLab:
        if self.local is None:
            raise LabError(
                f"lab {self.lab.name} scores its models with the trainer on this machine after training, so it "
                "runs only locally: drop --cluster"
            )
        return self.local


class LabModule(Protocol):
    def run(self, context: LabRun) -> dict[str, Any]:
        """Train, merge and score; returns the raw numbers (JSON-ready)."""
        ...

    def analyse(self, raw: dict[str, Any], lab: Lab, setting: Setting) -> Report:
        """Pure: raw numbers -> report."""
        ...


LABS: dict[str, LabModule] = {
    "peft-sweep": peft_sweep,
    "qlora-memory": qlora_memory,
    "dpo-vs-rl": dpo_vs_rl,
    "forgetting": forgetting,
    "fusion": fusion,
}


def module_of(lab: Lab) -> LabModule:
    if lab.name not in LABS:
        raise LabError(f"lab {lab.name} has manifests but no analysis; known labs: {', '.join(LABS)}")
    return LABS[lab.name]


def _load(labs_dir: Path, name: str, setting_name: str) -> tuple[Lab, LabModule, Setting]:
    lab = load_lab(lab_directory(labs_dir, name))
    return lab, module_of(lab), lab.setting(setting_name)


def run_lab(labs_dir: Path, name: str, *, setting_name: str, model_dir: Path | None, out: Path) -> Path:
    """Run lab NAME on this machine and write its report; returns the report folder."""
    lab, module, setting = _load(labs_dir, name, setting_name)
    if model_dir is None and setting.model is None:
        raise LabError(f"setting {setting.name} of lab {lab.name} runs on a local model: pass --model DIR")
    model_uri = MODEL_URI if model_dir is not None else str(setting.model)
    work = out / ".work" / lab.name
    if work.exists():
        shutil.rmtree(work)
    local = LocalLab(work, model_dir=model_dir, data_dir=labs_dir / "data")
    context = LabRun(lab, setting, expand(lab, setting, model_uri=model_uri), local, model_uri, local=local)
    command = f"kubetune lab run {lab.name} --setting {setting.name}"
    if model_dir is not None:
        command += " --model MODEL_DIR"
    return _run_and_report(module, context, out, command=command, namespace=None)


def run_lab_on_cluster(
    labs_dir: Path,
    name: str,
    *,
    setting_name: str,
    model_uri: str | None,
    backend: LabBackend,
    namespace: str,
    out: Path,
) -> Path:
    """Run lab NAME through the operator (`backend` applies and follows its objects in `namespace`) and write
    its report, labelled as a cluster run; returns the report folder."""
    lab, module, setting = _load(labs_dir, name, setting_name)
    uri = model_uri or setting.model or MODEL_URI
    context = LabRun(lab, setting, expand(lab, setting, model_uri=uri), backend, uri)
    command = f"kubetune lab run {lab.name} --setting {setting.name} --cluster --namespace {namespace}"
    if model_uri:
        command += f" --model-uri {model_uri}"
    return _run_and_report(module, context, out, command=command, namespace=namespace)


def _run_and_report(module: LabModule, context: LabRun, out: Path, *, command: str, namespace: str | None) -> Path:
    raw = module.run(context)
    report = dataclasses.replace(module.analyse(raw, context.lab, context.setting), cluster_namespace=namespace)
    return write_report(report, raw, out / context.lab.name, command=command)


def write_report(report: Report, raw: dict[str, Any], directory: Path, *, command: str) -> Path:
    from kubetune.labs.plots import draw

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for figure in report.figures:
        draw(figure, directory / FIGURES)
    (directory / REPORT_FILE).write_text(markdown(report, command=command, figure_dir=FIGURES))
    results = {"report": report_json(report), "raw": raw, "host": {"python": platform.python_version()}}
    (directory / RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n")
    write_index(directory.parent)
    return directory


def write_index(out: Path) -> None:
    """`out/README.md`: one line per report in the folder, with its checks' tally."""
    lines = ["# kubetune code labs: reports", ""]
    for results in sorted(out.glob(f"*/{RESULTS_FILE}")):
        data = json.loads(results.read_text())["report"]
        held = sum(1 for c in data["checks"] if c["holds"])
        title = (results.parent / REPORT_FILE).read_text().splitlines()[0].removeprefix("# ")
        venue = ", on a cluster" if data.get("runOn") == "cluster" else ""
        lines.append(
            f"- [{title}]({results.parent.name}/{REPORT_FILE}) ({data['setting']} setting{venue}): "
            f"{held} of {len(data['checks'])} checks hold"
        )
    (out / "README.md").write_text("\n".join(lines) + "\n")


def manifests(labs_dir: Path, name: str, *, setting_name: str, model_uri: str | None) -> list[dict[str, Any]]:
    """The documents a cluster run would apply (settings, seeds and the model applied)."""
    lab = load_lab(lab_directory(labs_dir, name))
    setting = lab.setting(setting_name)
    return expand(lab, setting, model_uri=model_uri or setting.model or MODEL_URI)

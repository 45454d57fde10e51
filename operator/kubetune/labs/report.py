"""A lab's report as data (tables, figures, checks) and its Markdown rendering; pure.

Each lab's analysis turns raw numbers into a `Report`; `markdown` writes it, `plots` draws its
figures. Checks are the relations the lab exists to show, evaluated on this run's numbers and
printed as holding or not: a report never claims a result its own numbers do not support.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from kubetune.labs.definition import Lab, Setting

INDICATIVE = (
    "Conclusions at this scale are indicative: a model this small shows the mechanics and the direction "
    "of each effect, not the magnitudes a billion-parameter model would show."
)

CLUSTER_VENUE = (
    "run on a cluster through the operator (namespace {namespace}): the numbers are the FineTuneJobs' "
    "`status.result` and the Adapters' status, as the trainer pods reported them. A cluster run does not read "
    "back the training logs or the artifacts' files, so curves over steps are empty and sizes on disk are whole "
    "artifacts; the library versions are the trainer image's."
)


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass(frozen=True)
class Series:
    label: str
    x: list[float]
    y: list[float]
    spread: list[float] | None = None
    """Standard deviation per point (drawn as a band), for series averaged over seeds."""


@dataclass(frozen=True)
class Figure:
    file: str
    caption: str
    kind: Literal["lines", "bars"]
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    """`bars`: one group of bars per category, one bar per series (its y holds a value per category)."""
    log_y: bool = False


@dataclass(frozen=True)
class Section:
    heading: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    claim: str
    holds: bool
    detail: str


@dataclass(frozen=True)
class Report:
    lab: str
    title: str
    question: str
    setting: str
    scale: str
    sections: list[Section]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    cluster_namespace: str | None = None
    """Set for a run on a cluster through the operator (`kubetune lab run --cluster`), unset for a local run."""

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]


def lab_report(
    lab: Lab,
    setting: Setting,
    sections: list[Section],
    checks: list[Check],
    *,
    libraries: Mapping[str, str],
    notes: tuple[str, ...] = (),
) -> Report:
    """A lab's report with its framing (title, question, scale) and the library versions it ran with."""
    versions = ", ".join(f"{name} {version}" for name, version in sorted(libraries.items()))
    library_notes = [f"Libraries: {versions}."] if versions else []
    return Report(
        lab=lab.name,
        title=lab.title,
        question=lab.question,
        setting=setting.name,
        scale=setting.scale,
        sections=sections,
        checks=checks,
        notes=[*notes, *library_notes],
    )


def fmt(value: Any) -> str:
    """Numbers as a person reads them: integers with separators, floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value == int(value) and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.4g}"
    return str(value)


def human_bytes(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.3g} {unit}" if abs(scaled) < 1000 else f"{scaled:.0f} {unit}"  # 1014 MiB, not 1.01e+03
    return f"{int(value)} B"


def markdown_table(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def markdown(report: Report, *, command: str, figure_dir: str = "figures") -> str:
    out = [f"# {report.title}", "", report.question, ""]
    out += [f"> **Scale** ({report.setting} setting): {report.scale} {INDICATIVE}", ""]
    if report.cluster_namespace is not None:
        out += [f"> **Where**: {CLUSTER_VENUE.format(namespace=report.cluster_namespace)}", ""]
    for section in report.sections:
        out += [f"## {section.heading}", ""]
        if section.text:
            out += [section.text, ""]
        for table in section.tables:
            out += [markdown_table(table), ""]
        for figure in section.figures:
            out += [f"![{figure.caption}]({figure_dir}/{figure.file})", "", f"*{figure.caption}*", ""]
    out += ["## What this run shows", ""]
    out += [f"- {'✅' if c.holds else '❌'} {c.claim} — {c.detail}" for c in report.checks]
    out += [""]
    if report.notes:
        out += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    out += ["## Reproduce", "", "```sh", command, "```", "", "Raw numbers: [`results.json`](results.json).", ""]
    return "\n".join(out)


def report_json(report: Report) -> dict[str, Any]:
    """The report's derived content for results.json (the raw runs sit next to it)."""
    return {
        "lab": report.lab,
        "setting": report.setting,
        "scale": report.scale,
        "runOn": "local" if report.cluster_namespace is None else "cluster",
        "namespace": report.cluster_namespace,
        "checks": [{"claim": c.claim, "holds": c.holds, "detail": c.detail} for c in report.checks],
        "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for s in report.sections for t in s.tables],
    }

"""Checks for the chart's alert rules and Grafana dashboard against what kubetune really exports.

Every PromQL expression must parse (promtool, the real Prometheus parser) and may only name series that
the operator's and the trainer's registries export (or that Prometheus adds itself, like `up`). The known
names are a parameter, so an end-to-end run can pass the names it actually scraped instead.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

PROMETHEUS_OWN_SERIES = frozenset({"up"})
"""Series Prometheus writes for every target; alerts may use them."""
ONLY_ON_A_GPU = frozenset({"kubetune_trainer_gpu_memory_bytes"})
"""Series a CPU run cannot serve: the end-to-end run checks every other name against what it scraped; the GPU
check (tests/gpu) scrapes these from a trainer on CUDA."""

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*"}
"""Grafana substitutes these before the query reaches Prometheus; the checks do the same."""

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"inf", "nan", "start", "end"}
)
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_NUMBERS = re.compile(r"(?<![\w:])[0-9]*\.?[0-9]+(e[+-]?[0-9]+)?(?![\w:])", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def exported_series(registry: CollectorRegistry) -> set[str]:
    """Every series name a scrape of `registry` can show, including those of label sets not yet used."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def kubetune_series() -> set[str]:
    """The operator's and the trainer's series, from their registries (the code, not a list kept by hand)."""
    from kubetune.metrics import REGISTRY
    from kubetune_trainer.metrics import TrainerMetrics

    return exported_series(REGISTRY) | exported_series(TrainerMetrics().registry)


def metric_names(expression: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label names,
    grouping labels, durations or numbers. Parse errors are promtool's job (`check_expressions_parse`)."""
    text = _STRINGS.sub('""', expression)
    while _BRACES.search(text):
        text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def unknown_names(expressions: Iterable[str], known: set[str]) -> dict[str, set[str]]:
    """Expression -> the series it names that are not in `known` (nor Prometheus's own); empty when all exist."""
    allowed = known | PROMETHEUS_OWN_SERIES
    found = {e: metric_names(e) - allowed for e in expressions}
    return {e: names for e, names in found.items() if names}


def rule_expressions(rules_spec: Mapping[str, Any]) -> list[str]:
    """The `expr` of every rule in a PrometheusRule spec (or a Prometheus rules file)."""
    return [str(rule["expr"]) for group in rules_spec["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard: Mapping[str, Any]) -> list[str]:
    """Every panel target's PromQL (nested rows included) with Grafana's variables substituted, plus the
    metric of each `label_values(METRIC, label)` template variable."""
    out: list[str] = []
    pending = list(dashboard.get("panels", []))
    while pending:
        panel = pending.pop(0)
        pending.extend(panel.get("panels", []))
        out.extend(_substitute(str(t["expr"])) for t in panel.get("targets", []) if t.get("expr"))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*", text)
        if match:
            out.append(_substitute(match.group(1)))
    return out


def _substitute(expression: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value).replace("${" + variable[1:] + "}", value)
    return expression


def check_expressions_parse(promtool: Path, expressions: list[str]) -> str:
    """Raises with promtool's message unless every expression parses; each becomes a recording rule."""
    records = [{"record": f"check:{i}", "expr": e} for i, e in enumerate(expressions)]
    rules = {"groups": [{"name": "parse", "rules": records}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "expressions.yaml"
        path.write_text(yaml.safe_dump(rules))
        result = subprocess.run(
            [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
    if result.returncode != 0:
        raise AssertionError(f"promtool check rules failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def served_series(exposition: str) -> set[str]:
    """The sample names in one scrape (Prometheus text format), e.g. `..._bucket`, `..._total`."""
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


class SeriesCollector:
    """Scrapes some /metrics URLs every `interval` seconds in a thread and keeps every sample name seen.

    A trainer serves its metrics only while it trains, so an end-to-end run polls for the whole run and
    checks the union; unreachable endpoints (a trainer not started yet, or gone) are skipped.
    """

    def __init__(self, urls: Sequence[str], interval: float = 0.5) -> None:
        self.urls = list(urls)
        self.interval = interval
        self.names: dict[str, set[str]] = {url: set() for url in self.urls}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="series-collector", daemon=True)

    def scrape(self) -> None:
        for url in self.urls:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    self.names[url] |= served_series(response.read().decode())
            except (urllib.error.URLError, OSError):
                continue

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.scrape()
            self._stop.wait(self.interval)

    @property
    def seen(self) -> set[str]:
        return set().union(*self.names.values())

    def __enter__(self) -> SeriesCollector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.scrape()

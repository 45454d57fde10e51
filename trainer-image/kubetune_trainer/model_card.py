"""The model card (README.md) pushed with an hf:// artifact: Hub metadata, lineage, metrics and the gate.

The YAML header is huggingface_hub's `ModelCardData` (base_model, datasets, library_name, tags), so the
Hub links the adapter to its base model and training data; the body repeats what `kubetune.json`
records (base revision, data digest, method and objective settings, seed, library versions) in a
form a person reads, plus the evaluation metrics, the gate's verdict and how to load the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from kubetune_trainer.context import RunContext
from kubetune_trainer.data.uris import HfUri, parse_uri


def _hub_id(uri: str) -> str | None:
    try:
        parsed = parse_uri(uri)
    except ValueError:
        return None
    return parsed.repo_id if isinstance(parsed, HfUri) else None


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return lines


def model_card(ctx: RunContext, repo_id: str, *, gate: tuple[bool, str | None], libraries: Mapping[str, str]) -> str:
    from huggingface_hub import ModelCardData

    spec = ctx.spec
    base_id = _hub_id(spec.base_model.uri)
    dataset_id = _hub_id(spec.dataset.train.uri)
    card = ModelCardData(
        base_model=base_id,
        datasets=[dataset_id] if dataset_id else None,
        library_name="peft" if ctx.is_peft else "transformers",
        pipeline_tag="text-generation",
        tags=["kubetune", ctx.method, spec.objective.type],
    )
    job = f"{ctx.config.target.namespace}/{ctx.config.target.name}"
    revision = f" @ `{ctx.base_revision}`" if ctx.base_revision else ""
    lineage = [
        ("base model", f"`{spec.base_model.uri}`{revision}"),
        ("training data", f"`{spec.dataset.train.uri}` ({ctx.data_digest or 'digest unknown'})"),
        ("method", f"{ctx.method} (requested {spec.method.type}): `{json.dumps(spec.method.to_wire())}`"),
        ("objective", f"`{json.dumps(spec.objective.to_wire())}`"),
        ("precision, seed", f"{ctx.precision}, {spec.training.seed}"),
        ("libraries", ", ".join(f"{name} {version}" for name, version in sorted(libraries.items()))),
    ]
    lines = [
        "---",
        card.to_yaml(),
        "---",
        "",
        f"# {spec.output.adapter_name or ctx.config.target.name}",
        "",
        f"A {ctx.method} {'adapter' if ctx.is_peft else 'fine-tune'} of `{spec.base_model.uri}`, trained by "
        f"kubetune from the FineTuneJob `{job}` with objective "
        f"`{spec.objective.type}`. `kubetune.json` holds the complete record (configuration, file digests).",
        "",
        "## Lineage",
        "",
        *_table(lineage, ("", "")),
        "",
        "## Evaluation",
        "",
    ]
    if ctx.metrics:
        lines += _table([(key, f"{value:.6g}") for key, value in sorted(ctx.metrics.items())], ("metric", "value"))
    else:
        lines.append("No evaluation suites ran.")
    verdict = "passed" if gate[0] else "failed"
    lines += ["", f"Gate: **{verdict}**" + (f": {gate[1]}" if gate[1] else "."), ""]
    if ctx.is_peft and base_id:
        lines += [
            "## Use",
            "",
            "```python",
            "from peft import AutoPeftModelForCausalLM",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")  # loads {base_id} too',
            "```",
            "",
        ]
    return "\n".join(lines)

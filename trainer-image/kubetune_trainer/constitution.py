"""Constitutional data (RLAIF, `dataset.constitution`): prompts become SFT rows and preference pairs.

For every prompt the base model answers, is asked to critique its answer against one principle of
the constitution (taken in turn, as Constitutional AI samples one per revision), and to revise the
answer in the light of that critique. The revision is the SFT target (prompt, revision) and is chosen
over the original answer in a preference pair, so the same synthesis feeds objective sft or the
preference objectives. Both sets are written to the artifact (`synthetic/sft.jsonl`,
`synthetic/preference.jsonl`) so a later job can train on them, and the counts join the prep report.

Generation is greedy and runs before the method wraps the model, so the data comes from the base
model exactly (or from `constitution.model` or the Adapter `constitution.adapterRef`, loaded for the synthesis
and released after it). A pair
whose revision is empty or identical to the answer carries no preference and is skipped (counted).
With the tiny CPU test model the texts are meaningless; what matters there is the structure, the
counts, that every principle reaches the requests, and that the pairs train DPO.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.constraints import ConstitutionSpec
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import EmptyDataError
from kubetune_trainer.generation import generate
from kubetune_trainer.input_adapters import load_adapter

log = logging.getLogger(__name__)

Generate = Callable[[list[str]], list[str]]
SYNTHETIC_DIR = "synthetic"


def critique_request(prompt: str, answer: str, principle: str) -> str:
    return (
        f"{prompt}{answer}\n\nCritique request: {principle}\n"
        "Identify specific ways in which the response above falls short of this principle.\nCritique:"
    )


def revision_request(prompt: str, answer: str, critique: str, principle: str) -> str:
    return (
        f"{prompt}{answer}\n\nCritique request: {principle}\nCritique:{critique}\n\n"
        f"Revision request: Rewrite the response so that it follows the principle: {principle}\nRevision:"
    )


@dataclass
class SynthesisReport:
    prompts: int = 0
    sft_rows: int = 0
    pairs: int = 0
    skipped_empty: int = 0
    skipped_identical: int = 0
    principles: list[str] = field(default_factory=list)


@dataclass
class Synthesis:
    sft: list[dict[str, Any]]
    preference: list[dict[str, Any]]
    report: SynthesisReport


def _as_completion(prompt: Any, text: str) -> Any:
    """A completion in the prompt's layout: a string, or one assistant turn for conversational prompts."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def synthesize(prompts: Sequence[Any], texts: Sequence[str], principles: Sequence[str], run: Generate) -> Synthesis:
    """Answer, critique, revise for every prompt (`texts` are the prompts as the model reads them)."""
    chosen = [principles[i % len(principles)] for i in range(len(texts))]
    answers = run(list(texts))
    critiques = run([critique_request(t, a, p) for t, a, p in zip(texts, answers, chosen, strict=True)])
    revisions = run(
        [revision_request(t, a, c, p) for t, a, c, p in zip(texts, answers, critiques, chosen, strict=True)]
    )
    report = SynthesisReport(prompts=len(texts), principles=list(principles))
    sft: list[dict[str, Any]] = []
    preference: list[dict[str, Any]] = []
    for prompt, answer, revision in zip(prompts, answers, revisions, strict=True):
        revised, original = revision.strip(), answer.strip()
        if not revised:
            report.skipped_empty += 1
            continue
        sft.append({"prompt": prompt, "completion": _as_completion(prompt, " " + revised)})
        if revised == original:
            report.skipped_identical += 1
            continue
        preference.append(
            {
                "prompt": prompt,
                "chosen": _as_completion(prompt, " " + revised),
                "rejected": _as_completion(prompt, " " + original),
            }
        )
    report.sft_rows, report.pairs = len(sft), len(preference)
    return Synthesis(sft, preference, report)


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    if isinstance(prompt, list):
        return str(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
    return str(prompt)


def writer_model(ctx: RunContext, spec: ConstitutionSpec) -> tuple[Any, Any]:
    """(model, tokenizer) that writes the data: the loaded base, or `constitution.model` or `constitution.adapterRef`
    loaded beside it."""
    if spec.adapter_ref is not None:
        model, tokenizer = load_adapter(ctx, spec.adapter_ref.name, "dataset.constitution.adapterRef", "causal-lm")
        log.info("constitution: answers, critiques and revisions by Adapter %s", spec.adapter_ref.name)
        return model.to(next(ctx.model.parameters()).device), tokenizer
    if spec.model is None:
        return ctx.model, ctx.tokenizer
    from kubetune.api.v1alpha1.data import BaseModelRef
    from kubetune_trainer.loading import load_model, load_tokenizer, resolve_base_model

    trust = ctx.spec.base_model.trust_remote_code
    source = resolve_base_model(
        BaseModelRef(uri=spec.model, trust_remote_code=trust),
        cache_dir=ctx.paths.cache_dir,
        pvc_root=ctx.paths.pvc_root,
        token_env=ctx.config.runtime.model_token_env,
    )
    model = load_model(source.path, precision=ctx.precision, trust_remote_code=trust)
    log.info("constitution: answers, critiques and revisions by %s (%s)", spec.model, source.path)
    return model.to(next(ctx.model.parameters()).device), load_tokenizer(source.path, trust_remote_code=trust)


def _synthesize_dataset(writer: tuple[Any, Any], dataset: Any, spec: ConstitutionSpec) -> Synthesis:
    model, tokenizer = writer
    prompts = list(dataset["prompt"])
    texts = [prompt_text(tokenizer, p) for p in prompts]

    def run(batch: list[str]) -> list[str]:
        return generate(model, tokenizer, batch, max_new_tokens=spec.max_new_tokens)

    return synthesize(prompts, texts, spec.principles, run)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def apply(ctx: RunContext) -> None:
    """Replace the prompt datasets with synthesised rows for the objective; stage both sets for the artifact."""
    spec = ctx.spec.dataset.constitution
    if spec is None:
        return
    from datasets import Dataset

    writer = writer_model(ctx, spec)
    train = _synthesize_dataset(writer, ctx.train_dataset, spec)
    pairs = ctx.spec.objective.type != "sft"
    rows = train.preference if pairs else train.sft
    if not rows:
        raise EmptyDataError(
            f"dataset.constitution produced no {'preference pairs' if pairs else 'SFT rows'} from "
            f"{train.report.prompts} prompts ({asdict(train.report)}); raise maxNewTokens or check the base model"
        )
    ctx.train_dataset = Dataset.from_list(rows)
    if ctx.eval_dataset is not None:
        held_out = _synthesize_dataset(writer, ctx.eval_dataset, spec)
        ctx.eval_dataset = Dataset.from_list(held_out.preference if pairs else held_out.sft) or None
    out = ctx.paths.work_dir / SYNTHETIC_DIR
    files = ctx.extras.setdefault("artifact_files", {})
    files[f"{SYNTHETIC_DIR}/sft.jsonl"] = _write_jsonl(out / "sft.jsonl", train.sft)
    files[f"{SYNTHETIC_DIR}/preference.jsonl"] = _write_jsonl(out / "preference.jsonl", train.preference)
    counts = asdict(train.report)
    ctx.prep_report.update({f"constitution_{k}": int(v) for k, v in counts.items() if isinstance(v, int)})
    ctx.extras.setdefault("prep_report", {})["constitution"] = counts
    log.info("constitution: %s", {k: v for k, v in counts.items() if k != "principles"})

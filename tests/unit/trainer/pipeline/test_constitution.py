"""Constitutional data synthesis: structure and counts with a scripted generator, then the real pipeline.

On CPU the tiny model's answers, critiques and revisions are meaningless text; the tests say so and assert
what does not depend on meaning: every prompt gets an answer, a critique and a revision, every principle is
quoted in the requests that go to the model, the rows and pairs have the layouts SFT and DPO read, the
counts add up, the sets are saved with the artifact, and DPO on the synthesised pairs raises its margin.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from kubetune_trainer import constitution
from kubetune_trainer.constitution import synthesize
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

PRINCIPLES = ["Avoid harm.", "Be honest about uncertainty."]


class Scripted:
    """Answers by request kind: 'A<i>' for prompts, 'C<i>' for critiques, revisions from a table."""

    def __init__(self, revisions: list[str]) -> None:
        self.requests: list[list[str]] = []
        self.revisions = revisions

    def __call__(self, batch: list[str]) -> list[str]:
        self.requests.append(batch)
        stage = len(self.requests)
        if stage == 1:
            return [f"A{i}" for i in range(len(batch))]
        if stage == 2:
            return [f"C{i}" for i in range(len(batch))]
        return self.revisions


def test_answer_critique_revise_rows_pairs_and_counts() -> None:
    prompts = ["p0", "p1", "p2", [{"role": "user", "content": "p3"}]]
    texts = ["p0", "p1", "p2", "user: p3 assistant:"]
    run = Scripted(revisions=["R0", "  ", "A2", "R3"])
    result = synthesize(prompts, texts, PRINCIPLES, run)
    answers, critiques, revisions = run.requests
    assert answers == texts
    # principles are taken in turn and quoted in both the critique and the revision request
    for i, principle in enumerate([PRINCIPLES[0], PRINCIPLES[1], PRINCIPLES[0], PRINCIPLES[1]]):
        assert critiques[i].startswith(texts[i] + f"A{i}")
        assert principle in critiques[i]
        assert principle in revisions[i]
        assert f"Critique:C{i}" in revisions[i]
    report = result.report
    assert (report.prompts, report.sft_rows, report.pairs) == (4, 3, 2)
    assert (report.skipped_empty, report.skipped_identical) == (1, 1)  # "  " is empty; "A2" repeats the answer
    assert result.sft[0] == {"prompt": "p0", "completion": " R0"}
    assert result.preference[0] == {"prompt": "p0", "chosen": " R0", "rejected": " A0"}
    assert result.preference[1]["chosen"] == [{"role": "assistant", "content": " R3"}]


def constitution_dpo(prompts: Path, writer: dict[str, Any]) -> dict[str, Any]:
    """The job block of DPO on pairs synthesised from `prompts` by `writer` (model or adapterRef)."""
    constitution = {"principles": PRINCIPLES, "maxNewTokens": 8} | writer
    return {
        "objective": {"type": "dpo", "beta": 0.1},
        "dataset": {
            "train": {"uri": f"file://{prompts}"},
            "format": "prompt",
            "prep": {"maxSeqLength": 64},
            "constitution": constitution,
        },
    }


def _another_model(model_dir: Path, target: Path) -> Path:
    """The tiny model with perturbed weights: a writer model that answers differently from the base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return target


def test_synthesised_pairs_train_dpo_and_are_saved(
    run_job: RunJob, data_files: dict[str, Path], model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _another_model(model_dir, tmp_path / "writer")
    requests: list[str] = []
    real = constitution.generate

    def recording(model: Any, tokenizer: Any, prompts: list[str], **kwargs: Any) -> list[str]:
        requests.extend(prompts)
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(constitution, "generate", recording)
    prompts = data_files["prompt"]
    ctx, result, logs = run_job(
        prompts,
        job=constitution_dpo(prompts, {"model": f"file://{writer}"}),
        training={"maxSteps": 10, "batchSize": 8, "learningRate": 5e-3},
    )
    report = result.prep_report
    n = report["constitution_prompts"]
    assert n == 32
    assert len(requests) == 3 * n  # answer, critique, revision per prompt
    assert all(sum(p in r for r in requests) == n for p in PRINCIPLES)  # each quoted in half of 2n requests
    assert report["constitution_pairs"] + report["constitution_skipped_identical"] == report["constitution_sft_rows"]
    assert len(ctx.train_dataset) == report["constitution_pairs"] > 0
    artifact = Path(result.artifact_uri.removeprefix("file://"))
    saved = [json.loads(line) for line in (artifact / "synthetic/preference.jsonl").read_text().splitlines()]
    assert len(saved) == report["constitution_pairs"]
    assert all(set(row) == {"prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"] for row in saved)
    sft = (artifact / "synthetic/sft.jsonl").read_text().splitlines()
    assert len(sft) == report["constitution_sft_rows"]
    manifest = json.loads((artifact / "kubetune.json").read_text())
    assert manifest["dataset"]["prepReport"]["constitution"]["principles"] == PRINCIPLES
    assert "synthetic/preference.jsonl" in manifest["files"]
    # the named model wrote the data: its own greedy answers are the rejected sides
    from transformers import AutoModelForCausalLM, AutoTokenizer

    own = real(
        AutoModelForCausalLM.from_pretrained(writer),
        AutoTokenizer.from_pretrained(writer),
        [row["prompt"] for row in saved],
        max_new_tokens=8,
    )
    assert [row["rejected"] for row in saved] == [" " + answer.strip() for answer in own]
    with ctx.model.disable_adapter():  # the base, as it was before training
        base_answers = real(ctx.model, ctx.tokenizer, [row["prompt"] for row in saved[:8]], max_new_tokens=8)
    assert base_answers != own[:8], "the perturbed writer must answer differently from the base"
    margins = logs.series("rewards/margins")
    print(f"constitution dpo: {report}; margin {mean(margins[:3]):.3f} -> {mean(margins[-3:]):.3f}")
    assert mean(margins[-3:]) > mean(margins[:3]) + 0.05


def _lora_adapter(model_dir: Path, target: Path) -> Path:
    """A LoRA artifact on the tiny model whose update is not zero (PEFT starts B at zero): a writer Adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(2)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora).save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return target


def test_an_adapter_writes_the_data(
    run_job: RunJob, data_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    """constitution.adapterRef: the Adapter (a LoRA on the run's base, merged) answers; its greedy answers are the
    rejected sides of the pairs, and they differ from the base's."""
    from kubetune_trainer.input_adapters import load_artifact

    writer = _lora_adapter(model_dir, tmp_path / "writer-adapter")
    prompts = data_files["prompt"]
    ctx, result, _ = run_job(
        prompts,
        job=constitution_dpo(prompts, {"adapterRef": {"name": "writer"}}),
        training={"maxSteps": 1, "batchSize": 8},
        adapters={"writer": f"file://{writer}"},
    )
    artifact = Path(result.artifact_uri.removeprefix("file://"))
    saved = [json.loads(line) for line in (artifact / "synthetic/preference.jsonl").read_text().splitlines()]
    assert saved, result.prep_report
    model, tokenizer = load_artifact(writer, model_dir, "causal-lm")
    own = constitution.generate(model, tokenizer, [row["prompt"] for row in saved], max_new_tokens=8)
    assert [row["rejected"] for row in saved] == [" " + answer.strip() for answer in own]
    with ctx.model.disable_adapter():
        base = constitution.generate(ctx.model, ctx.tokenizer, [row["prompt"] for row in saved[:8]], max_new_tokens=8)
    assert base != own[:8], "the adapter must answer differently from the base"

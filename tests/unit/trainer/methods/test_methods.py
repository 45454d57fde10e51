"""Every method trains with SFT through the real pipeline, learns, and its artifact reloads identically.

The artifact's layout follows the method's facts (PEFT adapter or complete model), so the facts the
operator publishes from are the ones the trainer really acted on.

One process, one model build: each case runs `pipeline.run` in-process and measures the model
through the pipeline's own hooks (before training and after publishing), so the assertions are on
the model the trainer really trained and the files it really wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune.api.v1alpha1.artifact import ArtifactManifest
from kubetune.api.v1alpha1.methods import METHOD_FACTS, PartialSettings
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_dev.tiny import message_rows, text_rows, write_jsonl
from kubetune_trainer.artifacts import load_trained, tree_digest
from kubetune_trainer.context import Hooks, RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.manifest import read_manifest
from kubetune_trainer.methods.partial import trainable_parameter_names
from kubetune_trainer.pipeline import run
from support.trainer_job import METHOD_BLOCKS, trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
PROBE = ["count three four five six seven eight done blue", "count zero one two three four five done red"]


def _probe(model: Any, tokenizer: Any) -> tuple[float, torch.Tensor]:
    batch = tokenizer(PROBE, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    model.train(was_training)
    return float(out.loss), out.logits.detach().clone()


class Recorder:
    """Pipeline hooks that probe the model before training and after the artifact is published."""

    def __init__(self) -> None:
        self.before: tuple[float, torch.Tensor] | None = None
        self.after: tuple[float, torch.Tensor] | None = None
        self.ctx: RunContext | None = None
        self.result: Any = None

    def hooks(self) -> Hooks:
        return Hooks(before_train=[self._before], after_result=[self._after])

    def _before(self, ctx: RunContext) -> None:
        self.before = _probe(ctx.model, ctx.tokenizer)

    def _after(self, ctx: RunContext, result: Any) -> None:
        self.ctx, self.result = ctx, result
        self.after = _probe(ctx.model, ctx.tokenizer)


def _train(tmp: Path, model_dir: Path, data: Path, method: str | dict[str, Any], **kwargs: Any) -> Recorder:
    recorder = Recorder()
    config = TrainerConfig.model_validate(trainer_config(tmp, model_dir, data, method, **kwargs))
    run(config, hooks=recorder.hooks())
    return recorder


def _artifact(tmp: Path, name: str = "job") -> Path:
    return tmp / "out" / name


def _manifest(tmp: Path) -> ArtifactManifest:
    manifest = read_manifest(_artifact(tmp))
    assert manifest is not None
    return manifest


@pytest.mark.parametrize("method", sorted(METHOD_BLOCKS))
def test_method_learns_and_artifact_reloads(
    method: str, tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    rec = _train(tmp_path, model_dir, data_files["text"], method, output={"mergeWeights": method in {"lora", "ia3"}})
    assert rec.before is not None
    assert rec.after is not None
    assert rec.ctx is not None
    loss_before, _ = rec.before
    loss_after, logits = rec.after
    assert loss_after < loss_before - 0.05, f"{method}: loss {loss_before:.3f} -> {loss_after:.3f}"

    artifact = _artifact(tmp_path)
    tolerance = 1e-5
    manifest = _manifest(tmp_path)
    assert manifest.method is not None
    assert manifest.method.resolved == rec.ctx.method
    assert manifest.base_model.revision == rec.result.base_model_revision
    peft = METHOD_FACTS[rec.ctx.method].peft
    assert manifest.format == ("peft-safetensors" if peft else "safetensors")
    assert (artifact / "adapter_config.json").is_file() is peft
    assert rec.result.sha256 == tree_digest(artifact)[0]
    assert rec.result.size_bytes == sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())
    assert not list((tmp_path / "out").glob(".*")), "temporary publish directories must not remain"

    if method == "qlora":
        reloaded = _reload_quantized(artifact, model_dir)
        _assert_same_adapter_weights(rec.ctx.model, reloaded)
        # identical weights; the in-training PEFT model and the reloaded one take different 4-bit CPU
        # kernel paths, which differ by ~2e-3 on these logits
        tolerance = 5e-3
    else:
        reloaded = load_trained(artifact, model_dir)
    _, reloaded_logits = _probe(reloaded, rec.ctx.tokenizer)
    torch.testing.assert_close(reloaded_logits, logits, atol=tolerance, rtol=1e-4)
    if method in {"lora", "ia3"}:
        merged = load_trained(artifact / "merged")
        _, merged_logits = _probe(merged, rec.ctx.tokenizer)
        torch.testing.assert_close(merged_logits, logits, atol=1e-4, rtol=1e-3)
        assert manifest.merged is True


def _assert_same_adapter_weights(trained: Any, reloaded: Any) -> None:
    trained_lora = {k: v for k, v in trained.state_dict().items() if "lora_" in k}
    reloaded_lora = {k: v for k, v in reloaded.state_dict().items() if "lora_" in k}
    assert trained_lora.keys() == reloaded_lora.keys()
    assert trained_lora
    for key, value in trained_lora.items():
        torch.testing.assert_close(reloaded_lora[key].to(value.dtype), value, atol=0, rtol=0)


def _reload_quantized(artifact: Path, model_dir: Path) -> Any:
    """A QLoRA adapter reproduces its logits only on the same 4-bit base it was trained on."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=quant, device_map="cpu", dtype=torch.float32
    )
    model = PeftModel.from_pretrained(base, str(artifact))
    # TRL trains QLoRA adapters in bf16 (the QLoRA recipe) and PEFT loads them as fp32: compute as trained
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(torch.bfloat16)
    return model


def test_qlora_base_is_really_4bit(tmp_path: Path, model_dir: Path, data_files: dict[str, Path]) -> None:
    import bitsandbytes as bnb

    seen: dict[str, Any] = {}

    def inspect(ctx: RunContext) -> None:
        # before any inference forward: bitsandbytes' CPU kernels repack the quant state on first use
        layers = [m for m in ctx.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        seen["count"] = len(layers)
        seen["uint8"] = all(m.weight.dtype == torch.uint8 for m in layers)
        seen["nf4"] = {m.weight.quant_type for m in layers}
        seen["nested"] = all(m.weight.quant_state.nested for m in layers)
        seen["head"] = type(ctx.model.get_output_embeddings()).__name__

    config = TrainerConfig.model_validate(
        trainer_config(
            tmp_path,
            model_dir,
            data_files["text"],
            "qlora",
            training={"maxSteps": 2, "optimizer": "paged_adamw_8bit", "precision": "bf16"},
        )
    )
    run(config, hooks=Hooks(before_train=[inspect]))
    assert seen == {"count": 14, "uint8": True, "nf4": {"nf4"}, "nested": True, "head": "Linear"}
    notes = _manifest(tmp_path).notes or []
    assert "optimizer paged_adamw_8bit is not paged on CPU (bitsandbytes falls back)" in notes
    assert "precision bf16 requested but no GPU is available: training in fp32" in notes
    adapter_config = json.loads((_artifact(tmp_path) / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA"


@pytest.mark.parametrize("method", ["lora", "adapter-pfeiffer"])
def test_added_tokens_round_trip(method: str, tmp_path: Path, model_dir: Path) -> None:
    new_tokens = ["<statute>", "<case>"]
    recorder = Recorder()
    rows_before: dict[str, torch.Tensor] = {}

    def remember_rows(ctx: RunContext) -> None:
        with torch.no_grad():
            rows_before["emb"] = ctx.model.get_input_embeddings()(torch.tensor(ctx.new_token_ids)).clone()

    rows = [{"text": r["text"].replace("done", new_tokens[i % 2])} for i, r in enumerate(text_rows())]
    data = write_jsonl(tmp_path / "with-new-tokens.jsonl", rows)
    config = TrainerConfig.model_validate(
        trainer_config(
            tmp_path, model_dir, data, method, job={"tokenizer": {"addTokens": new_tokens, "chatTemplate": TEMPLATE}}
        )
    )
    hooks = recorder.hooks()
    hooks.before_train.insert(0, remember_rows)
    run(config, hooks=hooks)
    ctx = recorder.ctx
    assert ctx is not None
    assert recorder.after is not None
    assert len(ctx.new_token_ids) == 2
    artifact = _artifact(tmp_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact)
    assert tokenizer.chat_template == TEMPLATE
    ids = tokenizer.convert_tokens_to_ids(new_tokens)
    assert ids == ctx.new_token_ids
    assert tokenizer("a <statute> b")["input_ids"].count(ids[0]) == 1
    reloaded = load_trained(artifact, model_dir)
    embeddings = reloaded.get_input_embeddings()
    assert embeddings.weight.shape[0] % 8 == 0
    assert embeddings.weight.shape[0] >= len(tokenizer)
    with torch.no_grad():
        trained_rows = reloaded.get_input_embeddings()(torch.tensor(ids))
    assert not torch.allclose(trained_rows, rows_before["emb"]), "the new tokens' embeddings were not trained"
    _, logits = _probe(reloaded, tokenizer)
    torch.testing.assert_close(logits, recorder.after[1], atol=1e-5, rtol=1e-4)


def test_resume_continues_from_checkpoint_after_preemption(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    from transformers import TrainerCallback

    class Preempt(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.global_step == 5:
                raise RuntimeError("simulated preemption")

    class FirstStep(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.steps.append(state.global_step)

    def blocks(extra: TrainerCallback) -> Hooks:
        return Hooks(before_train=[lambda ctx: ctx.callbacks.append(extra)])

    config = TrainerConfig.model_validate(
        trainer_config(
            tmp_path,
            model_dir,
            data_files["text"],
            "lora",
            job={"checkpointing": {"everySteps": 2, "keepLast": 2, "resume": True}},
        )
    )
    with pytest.raises(RuntimeError, match="simulated preemption"):
        run(config, hooks=blocks(Preempt()))
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "out" / "job").exists(), "a failed run publishes nothing"

    seen = FirstStep()
    result = run(config, hooks=blocks(seen))
    assert seen.steps == [5, 6, 7, 8]
    assert result.metrics["train.steps"] == 8
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]


@pytest.mark.parametrize(("fmt", "prompt_masked"), [("text", False), ("alpaca", True), ("messages", True)])
def test_sft_formats_and_completion_only_loss(
    fmt: str, prompt_masked: bool, tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    from transformers import TrainerCallback

    class FirstBatch(TrainerCallback):
        masked: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            batch = next(iter(kwargs["train_dataloader"]))
            real = batch["attention_mask"].bool() if "attention_mask" in batch else batch["labels"] != -100
            self.masked = int(((batch["labels"] == -100) & real).sum())

    probe = FirstBatch()
    data = write_jsonl(tmp_path / "messages.jsonl", message_rows()) if fmt == "messages" else data_files[fmt]
    recorder = Recorder()
    hooks = recorder.hooks()
    hooks.before_train.append(lambda ctx: ctx.callbacks.append(probe))
    config = TrainerConfig.model_validate(
        trainer_config(tmp_path, model_dir, data, "lora", training={"maxSteps": 4, "learningRate": 2e-2})
    )
    result = run(config, hooks=hooks)
    assert result.metrics["train.steps"] == 4
    assert probe.masked is not None
    assert (probe.masked > 0) is prompt_masked


def test_auto_resolves_from_the_device_budget_and_records_it(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetune.api.estimate import TrainSetup
    from kubetune_trainer.loading import inspect_model
    from kubetune_trainer.preflight import estimate, shape_of

    shape = shape_of(inspect_model(model_dir))
    setup = TrainSetup(precision="fp32", batch_size=8, seq_len=64, lora_rank=8, lora_targets=("all-linear",))
    full = estimate("full", shape, setup)
    assert full is not None
    monkeypatch.setenv("KUBETUNE_CPU_MEMORY_BYTES", str(full.total - 1))
    # without dropout: on the tiny model LoRA dropout's copies of the inputs would outweigh full's weights
    method = {"type": "auto", "lora": {"rank": 8, "targetModules": ["all-linear"], "dropout": 0.0}}
    rec = _train(tmp_path, model_dir, data_files["text"], method, training={"maxSteps": 2})
    assert rec.ctx is not None
    assert rec.ctx.method == "lora"
    assert rec.result.method == "lora"
    manifest = _manifest(tmp_path)
    assert manifest.method is not None
    assert (manifest.method.requested, manifest.method.resolved) == ("auto", "lora")
    assert "method auto resolved to lora" in (manifest.notes or [])
    assert (_artifact(tmp_path) / "adapter_config.json").is_file()


@pytest.mark.parametrize(("style", "adapters"), [("houlsby", 4), ("pfeiffer", 2)])
def test_bottleneck_adapter_is_a_registered_peft_tuner(
    style: str, adapters: int, tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    from peft import PeftModel

    from kubetune_trainer.methods.bottleneck import BottleneckLayer

    method = {"type": "adapter", "adapter": {"style": style, "reductionFactor": 4}}
    rec = _train(tmp_path, model_dir, data_files["text"], method, training={"maxSteps": 1})
    assert rec.ctx is not None
    assert isinstance(rec.ctx.model, PeftModel)
    layers = [m for m in rec.ctx.model.modules() if isinstance(m, BottleneckLayer)]
    assert len(layers) == adapters  # 2 blocks x (attention + FFN) for houlsby, FFN only for pfeiffer
    trainable = sum(p.numel() for p in rec.ctx.model.parameters() if p.requires_grad)
    assert trainable == adapters * (64 * 16 + 16 + 16 * 64 + 64)  # down (64 -> 16) and up (16 -> 64)
    config = json.loads((_artifact(tmp_path) / "adapter_config.json").read_text())
    assert (config["peft_type"], config["style"], config["reduction_factor"]) == ("KUBETUNE_BOTTLENECK", style, 4)
    reloaded = load_trained(_artifact(tmp_path), model_dir)
    with pytest.raises(ValueError, match="non-linear and cannot be merged"):
        reloaded.merge_and_unload()


def test_partial_keeps_the_last_blocks_and_named_modules() -> None:
    names = [f"model.layers.{i}.{p}.weight" for i in range(4) for p in ("self_attn.q_proj", "mlp.up_proj")]
    names += ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
    keep = trainable_parameter_names(names, PartialSettings(trainable_layers=2, trainable_modules=["lm_head"]))
    assert keep == {n for n in names if ".layers.2." in n or ".layers.3." in n} | {"lm_head.weight"}
    with pytest.raises(ConfigError, match="no parameter name contains 'nope'"):
        trainable_parameter_names(names, PartialSettings(trainable_layers=1, trainable_modules=["nope"]))

"""Training options Axolotl and LLaMA-Factory users look for: packing, completion-only loss, NEFTune,
torch.compile and Liger kernels, each through the real pipeline on the tiny model where the library
runs on CPU (Liger's Triton kernels need a GPU: tests/gpu trains with them; here the CPU refusal and
the wiring into TrainingArguments).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_dev.tiny import message_rows, write_jsonl
from kubetune_trainer.context import Capabilities, Hooks
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.objectives.sft import loss_masking, training_chat_template
from kubetune_trainer.pipeline import build_context, run
from kubetune_trainer.preflight import check_spec
from support.trainer_fixtures import RunJob
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

CPU = Capabilities(cuda=False, gpu_memory_bytes=0, bf16=False, bitsandbytes=True, deepspeed=True)
GPU = Capabilities(cuda=True, gpu_memory_bytes=80 << 30, bf16=True, bitsandbytes=True, deepspeed=True)
UNMARKED = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
SEEDED = {"seed": 7, "maxSteps": 3}


def _config(tmp: Path, model_dir: Path, data: Path, **blocks: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(trainer_config(tmp, model_dir, data, "lora", **blocks))


class FirstBatch:
    """Keeps the first training batch the Trainer's dataloader yields."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.batch: dict[str, Any] = {}
        keeper = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                keeper.batch = next(iter(kwargs["train_dataloader"]))

        self.callback = _Callback()

    def hooks(self) -> Hooks:
        return Hooks(before_train=[lambda ctx: ctx.callbacks.append(self.callback)])


def test_packing_packs_several_rows_into_each_sft_sequence(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    first = FirstBatch()
    job = {"dataset": {"train": {"uri": f"file://{data_files['text']}"}, "prep": {"maxSeqLength": 64, "packing": True}}}
    run(_config(tmp_path, model_dir, data_files["text"], job=job, training={"maxSteps": 2}), hooks=first.hooks())
    positions = first.batch["position_ids"]
    starts_per_row = (positions == 0).sum(dim=-1)
    assert int(starts_per_row.max()) > 1, "no packed row holds more than one sequence"


def test_loss_masking_by_data_and_template() -> None:
    marked = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    assert loss_masking(None, {"prompt", "completion"}, "").completion_only
    assert loss_masking(None, {"messages"}, marked).assistant_only
    unmarked = loss_masking(None, {"messages"}, UNMARKED)
    assert not unmarked.assistant_only
    assert unmarked.note is not None
    assert "no {% generation %} markers" in unmarked.note
    with pytest.raises(ConfigError, match="completionOnlyLoss: the chat template has no"):
        loss_masking(True, {"messages"}, UNMARKED)
    with pytest.raises(ConfigError, match="text rows have no prompt"):
        loss_masking(True, {"text"}, "")
    off = loss_masking(False, {"messages"}, marked)
    assert not off.assistant_only
    assert not off.completion_only


def test_trl_marks_the_templates_of_known_model_families() -> None:
    from importlib import resources

    from transformers import PreTrainedTokenizerFast

    from kubetune_dev.tiny import tiny_model_dir

    llama3 = (resources.files("trl") / "chat_templates" / "llama3.jinja").read_text()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_model_dir())
    tokenizer.chat_template = llama3
    patched = training_chat_template(tokenizer)
    assert patched is not None
    assert "{% generation %}" in patched
    tokenizer.chat_template = UNMARKED
    assert training_chat_template(tokenizer) is None


def _messages_job(tmp: Path, template: str, completion_only: bool | None) -> dict[str, Any]:
    data = write_jsonl(tmp / "messages.jsonl", message_rows())
    objective: dict[str, Any] = {"type": "sft"}
    if completion_only is not None:
        objective["completionOnlyLoss"] = completion_only
    return {
        "dataset": {"train": {"uri": f"file://{data}"}, "prep": {"maxSeqLength": 64}},
        "tokenizer": {"chatTemplate": template},
        "objective": objective,
    }


def test_unmarked_template_trains_on_every_token_and_says_so(tmp_path: Path, model_dir: Path) -> None:
    first = FirstBatch()
    job = _messages_job(tmp_path, UNMARKED, None)
    result = run(_config(tmp_path, model_dir, tmp_path, job=job, training={"maxSteps": 2}), hooks=first.hooks())
    labels = first.batch["labels"]
    real = first.batch["attention_mask"].bool()
    assert int(((labels == -100) & real).sum()) == 0  # nothing masked: the loss covers the user turns too
    manifest = json.loads((Path(result.artifact_uri.removeprefix("file://")) / "kubetune.json").read_text())
    assert any("completion-only loss does not apply" in note for note in manifest["notes"])


@pytest.mark.usefixtures("weights_never_load")
def test_required_completion_only_loss_fails_before_weights_load(tmp_path: Path, model_dir: Path) -> None:
    job = _messages_job(tmp_path, UNMARKED, True)
    with pytest.raises(ConfigError, match=r"objective\.completionOnlyLoss: the chat template has no"):
        run(_config(tmp_path, model_dir, tmp_path, job=job))


def test_neftune_adds_noise_to_the_embeddings_while_training_only(run_job: RunJob, data_files: dict[str, Path]) -> None:
    _, _, plain = run_job(data_files["text"], training=SEEDED)
    ctx, _, noisy = run_job(data_files["text"], training=SEEDED | {"neftuneNoiseAlpha": 5.0})
    # LoRA starts as the identity (B = 0): the first loss differs only through the noise on the inputs
    assert noisy.series("loss")[0] != plain.series("loss")[0]
    import torch

    ids = torch.tensor([[1, 5, 9, 13]])
    embeddings = ctx.model.get_input_embeddings()
    embeddings.train()
    assert embeddings(ids).equal(embeddings(ids))  # the hook is gone once training ends


def test_neftune_and_liger_wiring_and_refusals(tmp_path: Path, model_dir: Path) -> None:
    wire = trainer_config(tmp_path, model_dir, tmp_path / "x.jsonl", "lora", training={"ligerKernel": True})
    config = TrainerConfig.model_validate(wire)
    assert config.job is not None
    with pytest.raises(ConfigError, match="ligerKernel needs a CUDA GPU"):
        check_spec(config.job, CPU)
    check_spec(config.job, GPU)  # liger-kernel is installed with the trainer extra
    ctx = build_context(config, GPU)
    kwargs = ctx.training_args_kwargs()
    assert kwargs["use_liger_kernel"] is True
    assert kwargs["neftune_noise_alpha"] is None
    assert kwargs["torch_compile"] is False


@pytest.fixture
def restore_llama_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Liger also swaps module-level pieces of transformers' Llama (one run per process in a pod); put them back
    so later tests in this process build plain, CPU-runnable models."""
    from torch import nn
    from transformers.models.llama import modeling_llama

    for name in ("apply_rotary_pos_emb", "LlamaRMSNorm", "LlamaMLP"):
        monkeypatch.setattr(modeling_llama, name, getattr(modeling_llama, name))
    monkeypatch.setattr(modeling_llama.LlamaForCausalLM, "forward", modeling_llama.LlamaForCausalLM.forward)
    monkeypatch.setattr(nn.functional, "cross_entropy", nn.functional.cross_entropy)


@pytest.mark.usefixtures("restore_llama_globals")
def test_liger_kernels_patch_the_model_the_trainer_trains(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    """Up to the first step on a CPU posing as a GPU (the kernels themselves run in tests/gpu)."""
    from transformers import TrainerCallback

    patched: dict[str, Any] = {}

    class StoppedOnCpuError(Exception):
        pass

    class StopAtFirstStep(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
            patched["model"] = model
            raise StoppedOnCpuError

    hooks = Hooks(before_train=[lambda ctx: ctx.callbacks.append(StopAtFirstStep())])
    config = _config(tmp_path, model_dir, data_files["text"], training={"ligerKernel": True})
    with pytest.raises(StoppedOnCpuError):
        run(config, hooks=hooks, capabilities=GPU)
    norms = [m for _, m in patched["model"].named_modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert norms
    assert all(getattr(m, "casting_mode", None) == "llama" for m in norms)  # Liger's RMSNorm forward is bound


def test_torch_compile_compiles_the_trained_model(run_job: RunJob, data_files: dict[str, Path]) -> None:
    import torch

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    _, result, logs = run_job(data_files["text"], training={"torchCompile": True, "maxSteps": 2})
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert result.metrics["train.steps"] == 2
    assert all(math.isfinite(loss) for loss in logs.series("loss"))
    torch._dynamo.reset()

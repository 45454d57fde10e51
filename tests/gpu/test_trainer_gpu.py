"""GPU-only trainer checks: bf16 really is faster than fp32, paged optimizers really page, QLoRA in bf16.

Skipped (reported as skipped, never as passed) when CUDA is absent; `make test-trainer` runs them.
They use the pipeline's own pieces so a regression in the CUDA path of the trainer shows here.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

TESTS_ROOT = Path(__file__).resolve().parents[1]
if str(TESTS_ROOT) not in sys.path:
    sys.path.insert(0, str(TESTS_ROOT))

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.trainer,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _step_seconds(dtype: torch.dtype, steps: int = 20) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=8,
        num_attention_heads=16,
        num_key_value_heads=16,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, 32000, (8, 512), device="cuda")
    for i in range(steps + 3):
        if i == 3:  # warm-up steps excluded (kernel selection, allocator growth)
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def test_bf16_is_faster_than_fp32() -> None:
    from kubetune_trainer.preflight import effective_precision, probe_capabilities

    caps = probe_capabilities()
    assert caps.cuda
    assert effective_precision("bf16", caps) == ("bf16", None)
    fp32 = _step_seconds(torch.float32)
    bf16 = _step_seconds(torch.bfloat16)
    assert bf16 < 0.8 * fp32, f"bf16 {bf16 * 1e3:.1f} ms/step vs fp32 {fp32 * 1e3:.1f} ms/step"


def test_paged_optimizer_pages_on_cuda() -> None:
    import bitsandbytes as bnb

    model = torch.nn.Linear(4096, 4096).cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CPU fallback warns; on CUDA nothing may
        optimizer = bnb.optim.PagedAdamW8bit(model.parameters(), lr=1e-3)
        model(torch.randn(16, 4096, device="cuda")).sum().backward()
        optimizer.step()
    state = optimizer.state[model.weight]
    assert state["state1"].dtype == torch.uint8
    assert getattr(state["state1"], "is_paged", False), "optimizer state is not in paged (unified) memory"


def test_qlora_trains_with_bf16_compute(tmp_path: Path) -> None:
    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_dev.tiny import text_rows, tiny_model_dir, write_jsonl
    from kubetune_trainer.context import Hooks, RunContext
    from kubetune_trainer.pipeline import run
    from support.trainer_job import trainer_config

    data = write_jsonl(tmp_path / "text.jsonl", text_rows())
    method = {"type": "qlora", "lora": {"rank": 8}, "quantization": {"computeDtype": "bfloat16"}}
    wire = trainer_config(
        tmp_path,
        tiny_model_dir(),
        data,
        method,
        training={"maxSteps": 4, "precision": "bf16", "optimizer": "paged_adamw_8bit", "learningRate": 1e-2},
    )
    seen: dict[str, object] = {}

    def inspect(ctx: RunContext) -> None:
        seen["precision"] = ctx.precision
        seen["device"] = next(ctx.model.parameters()).device.type

    result = run(TrainerConfig.model_validate(wire), hooks=Hooks(before_train=[inspect]))
    assert seen == {"precision": "bf16", "device": "cuda"}
    assert result.metrics["train.steps"] == 4


def test_liger_kernels_train_on_cuda(tmp_path: Path) -> None:
    """Liger's Triton kernels replace RMSNorm/RoPE/SwiGLU in the trained model and the run learns with them."""
    from transformers import TrainerCallback

    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_dev.tiny import text_rows, tiny_model_dir, write_jsonl
    from kubetune_trainer.context import Hooks, RunContext
    from kubetune_trainer.pipeline import run
    from support.trainer_job import trainer_config

    data = write_jsonl(tmp_path / "text.jsonl", text_rows())
    losses: list[float] = []
    patched: list[bool] = []

    class Watch(TrainerCallback):
        def on_train_begin(
            self, args: object, state: object, control: object, model: object = None, **_: object
        ) -> None:
            norms = [m for _, m in model.named_modules() if type(m).__name__ == "LlamaRMSNorm"]  # type: ignore[union-attr]
            patched.append(bool(norms) and all(getattr(m, "casting_mode", None) == "llama" for m in norms))

        def on_log(
            self, args: object, state: object, control: object, logs: dict[str, float] | None = None, **_: object
        ) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    def watch(ctx: RunContext) -> None:
        ctx.callbacks.append(Watch())

    wire = trainer_config(
        tmp_path, tiny_model_dir(), data, "lora", training={"maxSteps": 12, "precision": "bf16", "ligerKernel": True}
    )
    result = run(TrainerConfig.model_validate(wire), hooks=Hooks(before_train=[watch]))
    assert patched == [True]
    assert result.metrics["train.steps"] == 12
    assert sum(losses[-3:]) < sum(losses[:3]), losses

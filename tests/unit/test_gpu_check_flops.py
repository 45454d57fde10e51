"""The GPU check's MFU numerator, checked on CPU: its parameter count is the model's own."""

from __future__ import annotations

import pytest

from kubetune_dev.tiny import tiny_model_dir
from support.bench_runs import model_flops_per_token

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


@pytest.mark.parametrize("shape", [{}, {"hidden": 128, "layers": 3, "heads": 8, "kv_heads": 2}], ids=["tiny", "wider"])
def test_flops_count_every_linear_weight_of_the_real_model(shape: dict[str, int]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(**shape))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    config, sequence = model.config, 64
    attention = 12 * config.num_hidden_layers * config.hidden_size * sequence
    assert model_flops_per_token(config, sequence, frozen_base=False) == 6 * linear + attention
    assert model_flops_per_token(config, sequence, frozen_base=True) == 4 * linear + attention

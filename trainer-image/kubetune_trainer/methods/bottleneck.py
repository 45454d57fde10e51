"""Bottleneck adapters (Houlsby: after attention and FFN; Pfeiffer: after FFN only) as a PEFT tuner.

Registered with PEFT (`register_peft_method`) so bottleneck adapters take the same paths as LoRA:
`get_peft_model`, `save_pretrained` (`adapter_model.safetensors` + `adapter_config.json`),
`PeftModel.from_pretrained`, `modules_to_save` for resized embeddings, Trainer checkpoints and
resume. AdapterHub `adapters` would be the library choice but pins transformers 4.57 (see
TRAINER-NOTES). PEFT's registry is keyed by the closed `PeftType` enum, so registration adds one
member to it (`KUBETUNE_BOTTLENECK`) before calling the public `register_peft_method`.

Each adapter wraps an output projection (`o_proj`/`down_proj` and their equivalents):
`y = W x; y <- y + up(gelu(down(y)))`, the Houlsby placement (on the sub-layer output, before the
residual add). `up` starts at zero, so the untrained adapter is the identity. The adapter is
non-linear, so it cannot be merged into the base weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import PeftType, register_peft_method
from torch import nn

from kubetune_trainer.errors import ConfigError

PEFT_NAME = "kubetune_bottleneck"
PREFIX = "bottleneck_"
_ATTENTION_OUT = ("self_attn.o_proj", "attn.c_proj", "attention.dense", "attn.out_proj", "self_attention.dense")
_FFN_OUT = ("mlp.down_proj", "mlp.c_proj", "mlp.fc2", "mlp.dense_4h_to_h", "feed_forward.w2", "mlp.w2")


def target_names(module_names: list[str], style: str) -> list[str]:
    """Dotted names of the projections that get an adapter; a model with none is a config error."""
    suffixes = _FFN_OUT if style == "pfeiffer" else _ATTENTION_OUT + _FFN_OUT
    found = [n for n in module_names if n.endswith(suffixes)]
    if not found:
        raise ConfigError(
            f"method.adapter: found no attention/FFN output projection (looked for {', '.join(suffixes)}); "
            "use method lora for this architecture"
        )
    return found


def bottleneck_width(width: int, reduction_factor: int) -> int:
    return max(1, width // reduction_factor)


def parameters(width: int, reduction_factor: int) -> int:
    """Trainable parameters of one adapter on a projection `width` wide: down and up, with biases."""
    size = bottleneck_width(width, reduction_factor)
    return 2 * width * size + size + width


@dataclass
class BottleneckConfig(PeftConfig):
    """PEFT config of a bottleneck adapter; `target_modules` are full dotted module names."""

    style: str = field(default="houlsby", metadata={"help": "houlsby (attention + FFN) or pfeiffer (FFN)"})
    reduction_factor: int = field(default=16, metadata={"help": "output width / bottleneck width"})
    target_modules: list[str] | None = field(default=None, metadata={"help": "projections to adapt"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "modules trained and saved whole"})

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[no-untyped-call]
        self.peft_type = PeftType.KUBETUNE_BOTTLENECK  # type: ignore[attr-defined]


class BottleneckLayer(nn.Module, BaseTunerLayer):
    """A linear output projection followed by one bottleneck per adapter name."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")

    def __init__(self, base_layer: nn.Module, adapter_name: str, reduction_factor: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.bottleneck_down = nn.ModuleDict({})
        self.bottleneck_up = nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, reduction_factor)

    def update_layer(self, adapter_name: str, reduction_factor: int, **_: Any) -> None:
        base: Any = self.get_base_layer()
        width = int(base.out_features)
        size = bottleneck_width(width, reduction_factor)
        down, up = nn.Linear(width, size), nn.Linear(size, width)
        nn.init.zeros_(up.weight)
        nn.init.zeros_(up.bias)
        self.bottleneck_down[adapter_name] = down
        self.bottleneck_up[adapter_name] = up
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError("bottleneck adapters are non-linear and cannot be merged into the base weights")

    def unmerge(self) -> None:
        raise ValueError("bottleneck adapters are never merged")

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result: torch.Tensor = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down: Any = self.bottleneck_down[name]
            up = self.bottleneck_up[name]
            hidden = nn.functional.gelu(down(result.to(down.weight.dtype)))
            result = result + up(hidden).to(result.dtype)
        return result


class BottleneckModel(BaseTuner):
    """Wraps every target projection in a `BottleneckLayer`."""

    prefix: str = PREFIX
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}

    def _create_and_replace(  # noqa: PLR0917  (PEFT's positional signature)
        self,
        peft_config: PeftConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        parameter_name: str | None = None,
    ) -> None:
        assert isinstance(peft_config, BottleneckConfig)
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, peft_config.reduction_factor)
            return
        if not isinstance(target, nn.Linear):
            raise TypeError(f"bottleneck adapters need nn.Linear targets, {current_key} is {type(target).__name__}")
        new = BottleneckLayer(target, adapter_name, peft_config.reduction_factor)
        if adapter_name != self.active_adapter:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)


def _register() -> None:
    """Add the enum member PEFT's registry is keyed by, then register through PEFT's public API."""
    name = PEFT_NAME.upper()
    if name in PeftType.__members__:
        return
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    type.__setattr__(PeftType, name, member)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    register_peft_method(name=PEFT_NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel, prefix=PREFIX)


_register()

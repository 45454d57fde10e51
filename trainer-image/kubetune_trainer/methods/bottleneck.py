"""Bottleneck adapters (Houlsby: after attention and FFN; Pfeiffer: after FFN only).

Why not a PEFT tuner: PEFT's registry (`register_peft_method`) requires a member of the closed
`PeftType` enum, which can only be added by mutating enum internals; and AdapterHub `adapters`
pins transformers 4.57. So the adapter is a small module attached *inside* the existing output
projection (`o_proj`/`down_proj` and their equivalents) and applied by a forward hook:
`y = W x; y <- y + up(act(down(y)))`, the Houlsby placement (on the sub-layer output, before the
residual add). Attaching rather than wrapping keeps every base state-dict key unchanged, so Trainer
checkpoints and resume work as for full models, and the adapter alone saves as
`adapter_model.safetensors` + `adapter_config.json` (same file names as PEFT). `up` starts at zero,
so the untrained adapter is the identity. The adapter is non-linear, so it cannot be merged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.methods import BottleneckSettings
from kubetune_trainer.errors import ConfigError

ATTR = "kubetune_adapter"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
KIND = "kubetune-bottleneck"
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


def _bottleneck(width: int, size: int) -> Any:
    from torch import nn

    up = nn.Linear(size, width)
    nn.init.zeros_(up.weight)
    nn.init.zeros_(up.bias)
    block = nn.Sequential()
    block.add_module("down", nn.Linear(width, size))
    block.add_module("act", nn.GELU())
    block.add_module("up", up)
    return block


def _apply(module: Any, _args: Any, output: Any) -> Any:
    adapter = getattr(module, ATTR)
    return output + adapter(output.to(adapter.up.weight.dtype)).to(output.dtype)


def inject(model: Any, settings: BottleneckSettings, *, extra_trainable: list[str] | None = None) -> dict[str, Any]:
    """Freeze the base, attach adapters, unfreeze the adapters (and e.g. resized embeddings).

    Returns the adapter config that `save` writes and `load` reads back.
    """
    names = [n for n, _ in model.named_modules()]
    targets = target_names(names, settings.style)
    for param in model.parameters():
        param.requires_grad_(False)
    modules = dict(model.named_modules())
    sizes = set()
    for name in targets:
        proj = modules[name]
        width = proj.out_features if hasattr(proj, "out_features") else proj.weight.shape[-1]
        size = max(1, width // settings.reduction_factor)
        sizes.add(size)
        adapter = _bottleneck(width, size).to(device=proj.weight.device)
        proj.add_module(ATTR, adapter)
        proj.register_forward_hook(_apply)
    for name, param in model.named_parameters():
        if f".{ATTR}." in name or any(name.startswith(m + ".") for m in extra_trainable or []):
            param.requires_grad_(True)
    return {
        "kind": KIND,
        "style": settings.style,
        "reduction_factor": settings.reduction_factor,
        "bottleneck_size": sorted(sizes),
        "target_modules": targets,
        "modules_to_save": list(extra_trainable or []),
    }


def adapter_state_dict(model: Any, config: dict[str, Any]) -> dict[str, Any]:
    keep = tuple(m + "." for m in config["modules_to_save"])
    return {
        name: tensor.detach().contiguous().cpu()
        for name, tensor in model.state_dict().items()
        if f".{ATTR}." in name or name.startswith(keep)
    }


def save(model: Any, config: dict[str, Any], directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state_dict(model, config), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))


def is_bottleneck_dir(directory: Path) -> bool:
    path = directory / CONFIG_NAME
    return path.is_file() and json.loads(path.read_text()).get("kind") == KIND


def load(model: Any, directory: Path) -> Any:
    """Attach a saved adapter to a freshly loaded base model (resized to the saved vocabulary first)."""
    from safetensors.torch import load_file

    config = json.loads((directory / CONFIG_NAME).read_text())
    settings = BottleneckSettings(style=config["style"], reduction_factor=config["reduction_factor"])
    inject(model, settings, extra_trainable=config["modules_to_save"])
    state = load_file(str(directory / WEIGHTS_NAME))
    missing = set(adapter_state_dict(model, config)) - set(state)
    if missing:
        raise ValueError(f"adapter at {directory} lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
    model.load_state_dict(state, strict=False)
    return model

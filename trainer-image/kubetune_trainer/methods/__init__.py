"""Methods: what is trained. Small mappers from the spec to library configs, plus one dispatch.

`load_kwargs` runs before `from_pretrained` (quantization has to happen at load time) and
`apply_method` after tokenizer alignment (so adapter methods know which embedding rows are new).
`check_targets` runs against the meta-device inspection, before any weights are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune.api.v1alpha1.methods import (
    AdapterMethod,
    AutoMethod,
    DoraMethod,
    IA3Method,
    LoraMethod,
    LoraSettings,
    PartialMethod,
    PrefixMethod,
    PromptMethod,
    QloraMethod,
    QuantizationSettings,
)
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.methods import bottleneck, ia3, lora, partial, prompt_learning, qlora
from kubetune_trainer.tokenizer_align import embedding_modules, new_token_training

_COMPUTE_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def lora_settings(ctx: RunContext) -> LoraSettings:
    """LoRA settings for lora/dora/qlora, and for what `auto` resolved to."""
    method = ctx.spec.method
    if isinstance(method, LoraMethod | DoraMethod | QloraMethod | AutoMethod):
        return method.lora
    raise ConfigError(f"method {method.type} has no lora block")


def _task_type(ctx: RunContext) -> str:
    return "SEQ_CLS" if ctx.spec.objective.type == "reward" else "CAUSAL_LM"


def load_kwargs(ctx: RunContext) -> dict[str, Any]:
    """Extra `from_pretrained` keywords of the resolved method (only QLoRA needs any)."""
    if ctx.method != "qlora":
        return {}
    method = ctx.spec.method
    settings = method.quantization if isinstance(method, QloraMethod) else QuantizationSettings()
    compute: str = settings.compute_dtype
    if compute == "bfloat16" and not ctx.capabilities.bf16:
        compute = _COMPUTE_DTYPE[ctx.precision]
    return qlora.load_kwargs(settings, compute_dtype=compute, cuda=ctx.capabilities.cuda)


def _peft(ctx: RunContext, config: Any) -> Any:
    from peft import get_peft_model

    return get_peft_model(ctx.model, config)


def _lora(ctx: RunContext) -> Any:
    tokens, save = new_token_training(ctx.model, ctx.new_token_ids)
    if ctx.method == "qlora":
        ctx.model = qlora.prepare(ctx.model, gradient_checkpointing=ctx.spec.training.gradient_checkpointing)
    config = lora.lora_config(
        lora_settings(ctx),
        task_type=_task_type(ctx),
        use_dora=ctx.method == "dora",
        trainable_token_indices=tokens,
        modules_to_save=save,
    )
    return _peft(ctx, config)


def _ia3(ctx: RunContext) -> Any:
    method = ctx.spec.method
    assert isinstance(method, IA3Method)
    save = embedding_modules(ctx.model).names if ctx.new_token_ids else None
    return _peft(ctx, ia3.ia3_config(method.ia3, task_type=_task_type(ctx), modules_to_save=save))


def _prefix(ctx: RunContext) -> Any:
    method = ctx.spec.method
    assert isinstance(method, PrefixMethod)
    return _peft(ctx, prompt_learning.prefix_config(method.prompt, task_type=_task_type(ctx)))


def _prompt(ctx: RunContext) -> Any:
    method = ctx.spec.method
    assert isinstance(method, PromptMethod)
    return _peft(ctx, prompt_learning.prompt_config(method.prompt, task_type=_task_type(ctx)))


def _partial(ctx: RunContext) -> Any:
    method = ctx.spec.method
    assert isinstance(method, PartialMethod)
    model = partial.apply(ctx.model, method.partial)
    if ctx.new_token_ids:
        for name in embedding_modules(model).names:
            _find(model, name).requires_grad_(True)
    return model


def _adapter(ctx: RunContext) -> Any:
    method = ctx.spec.method
    assert isinstance(method, AdapterMethod)
    names = [n for n, _ in ctx.model.named_modules()]
    config = bottleneck.BottleneckConfig(
        style=method.adapter.style,
        reduction_factor=method.adapter.reduction_factor,
        target_modules=bottleneck.target_names(names, method.adapter.style),
        modules_to_save=embedding_modules(ctx.model).names if ctx.new_token_ids else None,
        task_type=_task_type(ctx),
    )
    return _peft(ctx, config)


def _full(ctx: RunContext) -> Any:
    for param in ctx.model.parameters():
        param.requires_grad_(True)
    return ctx.model


def _find(model: Any, leaf: str) -> Any:
    return next(m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == leaf)


METHOD_APPLIERS: dict[str, Callable[[RunContext], Any]] = {
    "full": _full,
    "partial": _partial,
    "lora": _lora,
    "dora": _lora,
    "qlora": _lora,
    "adapter": _adapter,
    "prefix": _prefix,
    "prompt": _prompt,
    "ia3": _ia3,
}


def apply_method(ctx: RunContext) -> Any:
    """Wrap or freeze `ctx.model` for the resolved method and return the model to train."""
    ctx.model = METHOD_APPLIERS[ctx.method](ctx)
    return ctx.model


def check_targets(ctx: RunContext, info: ModelInfo) -> None:
    """Refuse target modules the model does not have, naming what it does have."""
    method = ctx.spec.method
    targets: list[str] = []
    if ctx.method in {"lora", "dora", "qlora"}:
        targets = [t for t in lora_settings(ctx).target_modules if t != "all-linear"]
        field = "method.lora.targetModules"
    elif isinstance(method, IA3Method):
        targets = list(method.ia3.target_modules)
        field = "method.ia3.targetModules"
    elif isinstance(method, PartialMethod):
        partial.trainable_parameter_names(sorted(info.module_names), method.partial)
        return
    elif isinstance(method, AdapterMethod):
        bottleneck.target_names(sorted(info.module_names), method.adapter.style)
        return
    leaves = set(info.linear_shapes)
    unknown = [t for t in targets if t not in leaves and t not in info.module_names]
    if unknown:
        raise ConfigError(
            f"{field}: {', '.join(unknown)} not found in {info.model_type}; "
            f"linear modules are {', '.join(sorted(leaves))} (or use all-linear)"
        )

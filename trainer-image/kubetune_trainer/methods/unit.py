"""The method unit: what the trainer does for one method, next to the facts its API variant declares.

The facts (family, mergeable, trains embeddings, fsdp) live on the API variant because the
operator and the CLI read them too; the unit adds what only the trainer does. Every hook has a
harmless default, so a unit overrides only what its method needs; `memory` and `apply` are the ones
every unit writes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubetune.api.estimate import MemoryEstimate, ModelShape, TrainSetup, estimate
from kubetune.api.v1alpha1.methods import METHOD_UNION, MethodFacts, MethodVariant
from kubetune_trainer.context import Capabilities, RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.registry import VariantUnit
from kubetune_trainer.tokenizer_align import embedding_modules


class MethodUnit(VariantUnit):
    """One method in the trainer, registered in `kubetune_trainer.methods.METHODS` by its API `type`."""

    union = METHOD_UNION
    variant: ClassVar[type[MethodVariant]]

    @property
    def facts(self) -> MethodFacts:
        facts = self.variant.facts
        assert facts is not None, f"{self.name} does not train"  # only auto has no facts, and no unit
        return facts

    def machine_problem(self, caps: Capabilities) -> str | None:
        """Why this machine cannot run the method (a missing library), or None."""
        return None

    def check_targets(self, ctx: RunContext, info: ModelInfo) -> None:
        """Refuse settings naming modules the model lacks; runs on the meta-device inspection, before weights."""

    def memory(self, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
        """Bytes per device; every method has one, so preflight checks every method. The default is the formula
        `kubetune estimate` uses too (`kubetune.api.estimate.FORMULAS`: full, lora, dora, qlora)."""
        result = estimate(self.name, shape, setup)
        if result is None:
            raise NotImplementedError(f"method {self.name} has no memory formula: its unit must define memory")
        return result

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        """Extra `from_pretrained` keywords (quantization has to happen at load time)."""
        return {}

    def apply(self, ctx: RunContext) -> Any:
        """Wrap or freeze `ctx.model` for training (after tokenizer alignment) and return the model to train."""
        raise NotImplementedError


def task_type(ctx: RunContext) -> str:
    """PEFT task type: a sequence classifier (reward model) saves its new score head with the adapter."""
    return "SEQ_CLS" if ctx.spec.objective.facts.model == "sequence-classifier" else "CAUSAL_LM"


def peft_model(ctx: RunContext, config: Any) -> Any:
    from peft import get_peft_model

    return get_peft_model(ctx.model, config)


def saved_embeddings(ctx: RunContext) -> list[str] | None:
    """Embedding modules trained and saved whole when the tokenizer gained tokens (None: no new tokens)."""
    return embedding_modules(ctx.model).names if ctx.new_token_ids else None


def matching_linears(shape: ModelShape, targets: list[str]) -> dict[str, tuple[int, int]]:
    """Linear modules PEFT adapts for `targets`: a dotted name equal to a target or ending in `.TARGET`."""
    return {
        name: dims
        for name, dims in shape.linear_modules.items()
        if any(name == t or name.endswith("." + t) for t in targets)
    }


def check_linear_targets(info: ModelInfo, targets: list[str], field: str) -> None:
    """Refuse target modules the model does not have, naming the linear modules it does have."""
    leaves = set(info.linear_shapes)
    unknown = [t for t in targets if t not in leaves and t not in info.module_names]
    if unknown:
        raise ConfigError(
            f"{field}: {', '.join(unknown)} not found in {info.model_type}; "
            f"linear modules are {', '.join(sorted(leaves))} (or use all-linear)"
        )

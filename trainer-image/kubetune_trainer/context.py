"""The hand-off point between pipeline stages and objective builders.

Every stage reads and fills one `RunContext`, so an objective builder (SFT here, DPO/KTO/RLHF elsewhere)
receives a model that is already loaded, aligned and wrapped by the method, datasets that are already
prepared, and one place that turns the spec into `TrainingArguments` keywords. Builders therefore
never re-derive precision, checkpointing or device settings, and every objective checkpoints and
resumes the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec
from kubetune.api.v1alpha1.methods import METHOD_FACTS, MethodFacts, TrainedMethod
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.api.v1alpha1.training import Precision

if TYPE_CHECKING:
    from transformers import Trainer, TrainerCallback


@dataclass(frozen=True)
class Capabilities:
    """What the machine can do, probed once before any model is loaded."""

    cuda: bool
    gpu_memory_bytes: int
    bf16: bool
    bitsandbytes: bool
    deepspeed: bool


@dataclass(frozen=True)
class RunPaths:
    """Local directories of one run; `staging` is where artifacts are written before publishing."""

    cache_dir: Path
    work_dir: Path
    checkpoint_dir: Path
    staging_dir: Path
    pvc_root: Path


@dataclass
class RunContext:
    """State shared by the pipeline stages; fields below `paths` are filled as the run progresses."""

    config: TrainerConfig
    spec: FineTuneJobSpec
    capabilities: Capabilities
    precision: Precision
    """The precision actually used (bf16/fp16 requested on a CPU falls back to fp32)."""
    method: TrainedMethod
    """The method actually used (`auto` is resolved by the estimator before loading)."""
    paths: RunPaths
    model: Any = None
    tokenizer: Any = None
    train_dataset: Any = None
    eval_dataset: Any = None
    base_model_path: Path | None = None
    base_revision: str | None = None
    data_digest: str | None = None
    prep_report: dict[str, int] = field(default_factory=dict)
    new_token_ids: list[int] = field(default_factory=list)
    deepspeed_config: dict[str, Any] | None = None
    callbacks: list[TrainerCallback] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Warnings worth recording in the manifest (capability fallbacks, auto decisions)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Free slot for hooks (EWC Fisher, reference models) so they need no new fields here."""

    @property
    def method_facts(self) -> MethodFacts:
        """The facts of the method actually used."""
        return METHOD_FACTS[self.method]

    @property
    def is_peft(self) -> bool:
        return self.method_facts.peft

    def training_args_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `TrainingArguments` or any TRL `*Config` derived from it.

        Objective builders pass their own keys as `overrides` (e.g. `max_length`, `beta`); everything
        about schedule, precision, checkpointing and devices comes from the spec here so that all
        objectives resume from the same checkpoint layout.
        """
        t = self.spec.training
        ckpt = self.spec.checkpointing
        kwargs: dict[str, Any] = {
            "output_dir": str(self.paths.checkpoint_dir),
            "per_device_train_batch_size": t.batch_size,
            "per_device_eval_batch_size": t.batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation,
            "learning_rate": t.learning_rate,
            "num_train_epochs": t.epochs,
            "max_steps": t.max_steps if t.max_steps is not None else -1,
            "lr_scheduler_type": t.scheduler,
            # transformers 5 reads warmup_steps < 1 as a ratio of the total (a ratio of 1 would mean
            # "1 step"), so an all-warmup schedule is expressed as just under 1
            "warmup_steps": min(t.warmup_ratio, 0.999),
            "weight_decay": t.weight_decay,
            "seed": t.seed,
            "data_seed": t.seed,
            "full_determinism": t.deterministic,
            "neftune_noise_alpha": t.neftune_noise_alpha,
            "torch_compile": t.torch_compile,
            "use_liger_kernel": t.liger_kernel,
            "bf16": self.precision == "bf16",
            "fp16": self.precision == "fp16",
            "activation_checkpointing": t.gradient_checkpointing,
            "optim": _OPTIMIZERS[t.optimizer],
            "save_strategy": "steps",
            "save_steps": ckpt.every_steps,
            "save_total_limit": ckpt.keep_last,
            "logging_steps": 1,  # cheap on the step scale of fine-tuning; progress reporting reads every log
            # tokens/s for status.progress; set for every rank here because counting is a collective
            # (a callback turning it on for rank 0 alone deadlocks multi-process runs)
            "include_num_input_tokens_seen": "non_padding",
            "logging_first_step": True,
            "report_to": self.spec.tracking.report_to if self.spec.tracking is not None else "none",
            "run_name": self.config.target.name,  # the MLflow run's name
            "disable_tqdm": True,
            "use_cpu": not self.capabilities.cuda,
            # eval loss at checkpoint cadence feeds status.progress.evalLoss; suites run after training
            "eval_strategy": "steps" if self.eval_dataset is not None else "no",
            "eval_steps": ckpt.every_steps,
            "remove_unused_columns": True,
            "dataloader_num_workers": 0,
        }
        if t.gradient_checkpointing:
            kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
        if self.deepspeed_config is not None:
            kwargs["deepspeed"] = self.deepspeed_config
        if self.spec.distributed.strategy == "fsdp":
            kwargs.update(self._fsdp_kwargs())
        kwargs.update(overrides)
        return kwargs

    def _fsdp_kwargs(self) -> dict[str, Any]:
        """Shard whole transformer blocks (the model's own `_no_split_modules`); offload maps to FSDP's."""
        blocks = list(getattr(self.model, "_no_split_modules", None) or [])
        options = "full_shard auto_wrap" + (" offload" if self.spec.distributed.offload == "cpu" else "")
        config: dict[str, Any] = {"use_orig_params": True}  # adapters: frozen and trainable params share units
        if blocks:
            config["transformer_layer_cls_to_wrap"] = blocks
        return {"fsdp": options, "fsdp_config": config}


_OPTIMIZERS = {
    "adamw": "adamw_torch",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
    "adafactor": "adafactor",
}

EvaluationHook = Callable[[RunContext, "Trainer"], Mapping[str, float]]
"""Runs after training on the trained model; returns metrics named `SUITE.METRIC`."""

GateHook = Callable[[RunContext, Mapping[str, float]], tuple[bool, str | None]]
"""Decides `gatePassed` (and a message when it fails) from the evaluation metrics."""

ContextHook = Callable[[RunContext], None]
"""Runs after model and data are ready, before the trainer is built (add callbacks, EWC state...)."""


def no_evaluation(_ctx: RunContext, _trainer: Trainer) -> Mapping[str, float]:
    return {}


def always_pass(_ctx: RunContext, _metrics: Mapping[str, float]) -> tuple[bool, str | None]:
    return True, None


@dataclass
class Hooks:
    """Extension points other packages plug into without editing the pipeline."""

    preflight: list[ContextHook] = field(default_factory=list)
    """Checks that run once data and tokenizer are ready, before weights load: a failure costs seconds, not a run."""
    before_train: list[ContextHook] = field(default_factory=list)
    evaluate: EvaluationHook = no_evaluation
    gate: GateHook = always_pass
    after_result: list[Callable[[RunContext, Any], None]] = field(default_factory=list)
    """Called with the `RunResult` once artifacts are published (status reporting)."""

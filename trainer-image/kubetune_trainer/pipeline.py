"""The training run, stage by stage: every check that can fail on the spec runs before weights load.

Order: validate and probe the machine -> experiment tracking (MLflow credentials and server)
-> an hf:// output's repository (the token can write)
-> load the data (format errors, before any model download)
-> resolve and inspect the base model on the meta device (target modules, memory estimate, `auto`)
-> tokenizer (new tokens, chat template) and data prep -> the objective's data check -> `Hooks.preflight`
(evaluation data and tasks) -> distributed setup
-> seed -> load weights -> tokenizer alignment -> constitutional data synthesis -> method -> `Hooks.before_train`
-> continual learning and objective builder -> train (resuming from the newest complete checkpoint on durable
storage, saving a last one on SIGTERM) -> `Hooks.evaluate` / `Hooks.gate` -> artifacts -> `Hooks.after_result`
-> delete the run's checkpoints (`checkpointing.storage.deleteOnSuccess`). Methods and objectives plug in as
units of `METHODS` and `OBJECTIVES`, everything else through `Hooks`.

`check` is the preflight pod's run: the stages up to the tokenizer, against the machine the spec asks
for, with only the model's config and tokenizer downloaded; it returns the report the operator reads.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.preflight import PreflightReport, spec_digest
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_trainer import (
    artifacts,
    constitution,
    continual,
    data_stage,
    durable,
    hub,
    preflight,
    tokenizer_align,
    tracking,
)
from kubetune_trainer.artifacts import RunResult
from kubetune_trainer.context import Capabilities, Hooks, RunContext, RunPaths
from kubetune_trainer.deepspeed_config import deepspeed_config
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import inspect_model, load_model, load_tokenizer, resolve_base_model
from kubetune_trainer.measure import ESTIMATE_KEY
from kubetune_trainer.methods import METHODS
from kubetune_trainer.objectives import OBJECTIVES
from kubetune_trainer.termination import TerminationRequest

log = logging.getLogger(__name__)


def build_context(config: TrainerConfig, capabilities: Capabilities | None = None) -> RunContext:
    """Static validation and capability checks; no model, no data, no GPU context."""
    if config.mode != "train" or config.job is None:
        raise ConfigError(f"mode {config.mode} is not a training run")
    spec = config.job
    caps = capabilities or preflight.probe_capabilities()
    notes = preflight.check_spec(spec, caps)
    precision, note = preflight.effective_precision(spec.training.precision, caps)
    if note:
        notes.append(note)
    runtime = config.runtime
    work = Path(runtime.work_dir)
    paths = RunPaths(
        cache_dir=Path(runtime.cache_dir),
        work_dir=work,
        checkpoint_dir=Path(runtime.checkpoint_dir),
        staging_dir=work / "staging",
        pvc_root=Path(runtime.pvc_mount_root),
    )
    method = "lora" if spec.method.type == "auto" else spec.method.type  # resolved in inspect_base
    ctx = RunContext(config=config, spec=spec, capabilities=caps, precision=precision, method=method, paths=paths)
    ctx.notes.extend(notes)
    for line in notes:
        log.warning("%s", line)
    return ctx


def inspect_base(ctx: RunContext, *, weights: bool = True) -> preflight.MemoryVerdict:
    """Resolve the base model into the cache (config and tokenizer only unless `weights`), then check
    targets and memory against it."""
    ref = ctx.spec.base_model
    source = resolve_base_model(
        ref,
        cache_dir=ctx.paths.cache_dir,
        pvc_root=ctx.paths.pvc_root,
        token_env=ctx.config.runtime.model_token_env,
        weights=weights,
    )
    ctx.base_model_path = source.path
    ctx.base_revision = source.revision
    info = inspect_model(source.path, trust_remote_code=ref.trust_remote_code)
    verdict = preflight.resolve_method(
        ctx.spec, info, ctx.capabilities, precision=ctx.precision, world_size=ctx.config.runtime.world_size
    )
    ctx.method = verdict.method or ctx.method
    if verdict.estimate is not None:
        ctx.extras[ESTIMATE_KEY] = verdict.estimate
    if ctx.spec.method.type == "auto" and verdict.method is not None:
        ctx.notes.append(f"method auto resolved to {ctx.method}")
    METHODS[ctx.method].check_targets(ctx, info)
    log.info("base model %s at %s (revision %s), method %s", ref.uri, source.path, source.revision, ctx.method)
    return verdict


def prepare_tokenizer(ctx: RunContext) -> None:
    """Load and align the tokenizer, and refuse conversations it cannot render."""
    assert ctx.base_model_path is not None
    ctx.tokenizer = load_tokenizer(ctx.base_model_path, trust_remote_code=ctx.spec.base_model.trust_remote_code)
    ctx.new_token_ids = tokenizer_align.align_tokenizer(ctx.tokenizer, ctx.spec.tokenizer)
    tokenizer_align.require_chat_template(ctx.tokenizer, ctx.train_dataset.column_names)


def setup_distributed(ctx: RunContext) -> None:
    """DeepSpeed must own the process group before `from_pretrained` so ZeRO-3 partitions at load."""
    spec = ctx.spec
    if spec.distributed.strategy != "deepspeed":
        return
    if not ctx.capabilities.cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    from transformers import TrainingArguments

    deepspeed.init_distributed(dist_backend="nccl" if ctx.capabilities.cuda else "gloo")
    nvme = str(ctx.paths.work_dir / "nvme-offload")
    ctx.deepspeed_config = deepspeed_config(spec.distributed, spec.training, nvme_path=nvme)
    # TrainingArguments registers the DeepSpeed config globally (a weakref): keeping this instance
    # alive is what makes from_pretrained use zero.Init for stage 3
    ctx.extras["deepspeed_args"] = TrainingArguments(**ctx.training_args_kwargs())


def seed_run(ctx: RunContext) -> None:
    """Seed Python, NumPy and torch before weights load, so initialisation repeats run to run.

    The Trainer seeds itself only when it is built, after the method has already drawn its random
    initial weights (LoRA's A matrices, prompt embeddings, new token rows, a reward head), so without
    this two identical runs start from different adapters. `training.deterministic` also makes torch
    pick deterministic kernels (slower on GPU).
    """
    from transformers import enable_full_determinism, set_seed

    training = ctx.spec.training
    if training.deterministic:
        enable_full_determinism(training.seed)
    else:
        set_seed(training.seed)


def load_weights(ctx: RunContext) -> None:
    assert ctx.base_model_path is not None
    ctx.model = load_model(
        ctx.base_model_path,
        precision=_load_precision(ctx),
        trained_model=ctx.spec.objective.facts.model,
        extra_kwargs=METHODS[ctx.method].load_kwargs(ctx),
        trust_remote_code=ctx.spec.base_model.trust_remote_code,
    )
    if ctx.model.config.pad_token_id is None:
        ctx.model.config.pad_token_id = ctx.tokenizer.pad_token_id
    tokenizer_align.resize_embeddings(ctx.model, ctx.tokenizer)


def _load_precision(ctx: RunContext) -> str:
    """Trained weights load in fp32 (the optimizer's master copy); frozen adapter bases in 16-bit."""
    if not ctx.is_peft and ctx.deepspeed_config is None:
        return "fp32"
    return ctx.precision


def log_progress_callback() -> Any:
    """One log line per logged step on rank 0, so `kubectl logs` shows progress without tqdm bars."""
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            values = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("step %d/%d epoch %.2f %s", state.global_step, state.max_steps, state.epoch or 0.0, values)

    return LogProgress()


def resumed_step(checkpoint: str | None) -> int:
    """The global step a checkpoint folder holds (its trainer state's, as the Trainer reads it); 0 without one."""
    if checkpoint is None:
        return 0
    from transformers import TrainerState
    from transformers.trainer import TRAINER_STATE_NAME

    return int(TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME)).global_step)


def train(
    ctx: RunContext, trainer: Any, checkpoints: durable.DurableCheckpoints, termination: TerminationRequest
) -> None:
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # raw dicts on stdout; LogProgress logs the same, readable
    stop = checkpoints.attach(trainer, termination)
    resume = checkpoints.resume_point(trainer) if ctx.spec.checkpointing.resume else None
    tracking.continue_logging(ctx, trainer, resumed_step(resume))
    started = time.monotonic()
    with termination.deferred():
        output = trainer.train(resume_from_checkpoint=resume)
    if stop.stopped_at is not None:
        checkpoints.stop_for_termination(termination, saved=stop.saved)
    ctx.metrics["train.loss"] = float(output.training_loss)
    ctx.metrics["train.steps"] = float(output.global_step)
    log.info("training done: %d steps in %.1f s", output.global_step, time.monotonic() - started)


def run(
    config: TrainerConfig,
    hooks: Hooks | None = None,
    capabilities: Capabilities | None = None,
    termination: TerminationRequest | None = None,
) -> RunResult:
    """One training run from a validated TrainerConfig to a published artifact.

    `termination` is the process's SIGTERM handler (the entrypoint installs it); without one nothing stops the run.
    """
    hooks = hooks or Hooks()
    termination = termination or TerminationRequest(config.runtime.termination_grace_seconds)
    ctx = build_context(config, capabilities)
    tracking.prepare(ctx)
    checkpoints = durable.DurableCheckpoints.open(ctx)
    hub.ensure_repo(ctx)
    data_stage.load(ctx)
    ctx.notes.append(f"memory estimate {inspect_base(ctx).message}")
    prepare_tokenizer(ctx)
    data_stage.prepare(ctx)
    OBJECTIVES[ctx.spec.objective.type].check_data(ctx)
    for check in hooks.preflight:
        check(ctx)
    setup_distributed(ctx)
    seed_run(ctx)
    load_weights(ctx)
    constitution.apply(ctx)  # generates with the base model, before the method wraps it
    ctx.model = METHODS[ctx.method].apply(ctx)
    ctx.callbacks.append(log_progress_callback())
    for hook in hooks.before_train:
        hook(ctx)
    ewc_state, lwf_state = continual.prepare(ctx)
    trainer = continual.attach(OBJECTIVES[ctx.spec.objective.type].build(ctx), ewc_state=ewc_state, lwf_state=lwf_state)
    train(ctx, trainer, checkpoints, termination)
    ctx.metrics.update(hooks.evaluate(ctx, trainer))
    gate = hooks.gate(ctx, ctx.metrics)
    result = artifacts.save_artifacts(ctx, trainer, gate=gate)
    checkpoints.finish_uploads(trainer)
    for after in hooks.after_result:
        after(ctx, result)
    checkpoints.after_success(trainer)
    return result


def check(config: TrainerConfig, capabilities: Capabilities | None = None) -> PreflightReport:
    """The preflight pod's run: spec, data format, model config (targets, memory) and tokenizer, checked
    against the machine the spec asks for, with no weights downloaded; a problem is a `ConfigError`."""
    if config.job is None:
        raise ConfigError(f"mode {config.mode} has no FineTuneJob spec to check")
    ctx = build_context(config, capabilities or preflight.expected_capabilities(config.job))
    data_stage.load(ctx)
    verdict = inspect_base(ctx, weights=False)
    prepare_tokenizer(ctx)
    return preflight.report(spec_digest(ctx.spec), verdict, ctx.notes)

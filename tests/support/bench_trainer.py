"""Trainer benchmark runs: the kubetune pipeline and a plain TRL script on identical model, data, batch and method.

`python -m support.bench_trainer MODE SPEC.json` (with tests/ on PYTHONPATH) runs one measurement in a fresh
interpreter and prints one JSON line; the benchmarks in tests/bench and the GPU check in tests/gpu drive it.
Modes: `throughput` (interleaved kubetune/TRL pairs in one process), `startup` (one side, from interpreter start
to the first optimizer step), `memory` (one kubetune run: measured peak memory next to the estimator's).

The TRL side is what a user would write with TRL alone: `SFTTrainer`/`DPOTrainer`, a `LoraConfig` for LoRA, and
the same hyperparameters as the kubetune run (optimizer, schedule, batch, length, seed). Both sides count tokens
with TRL's own counter (`include_num_input_tokens_seen`), so their token counts must agree step for step.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubetune_dev.tiny import COLORS, NUMBERS
from support.trainer_job import LORA, METHOD_BLOCKS, trainer_config

WORDS = (*NUMBERS, *COLORS)


@dataclass(frozen=True)
class Case:
    """One configuration both sides run."""

    method: str
    objective: str = "sft"
    packing: bool = False
    steps: int = 30
    warmup: int = 5
    batch_size: int = 8
    max_length: int = 192
    """Above the longest generated row (157 tokens): neither side drops (kubetune's prep) or truncates (TRL) a row."""
    learning_rate: float = 1e-3
    precision: str = "fp32"
    optimizer: str = "adamw"
    distributed: dict[str, Any] = field(default_factory=dict)
    rows: int = 512

    @property
    def name(self) -> str:
        return f"{self.method} {self.objective}" + (" packed" if self.packing else "")


@dataclass
class StepTimes:
    """What the timing callback saw: wall times of train begin and each step end, tokens after each step."""

    train_begin: float = 0.0
    step_ends: list[float] = field(default_factory=list)
    cpu_ends: list[float] = field(default_factory=list)
    """CPU seconds of the whole process (every thread) at each step end: immune to other processes' load."""
    tokens: list[int] = field(default_factory=list)
    real_tokens: int = 0
    positions: int = 0

    def steady(self, warmup: int) -> dict[str, float]:
        """Steps after `warmup` (allocator growth, first calls excluded): wall and CPU seconds, steps, tokens."""
        seconds = self.step_ends[-1] - self.step_ends[warmup - 1]
        return {
            "seconds": seconds,
            "cpu_seconds": self.cpu_ends[-1] - self.cpu_ends[warmup - 1],
            "steps": len(self.step_ends) - warmup,
            "tokens": self.tokens[-1] - self.tokens[warmup - 1],
        }


def step_timer(times: StepTimes) -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            times.train_begin = time.time()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            _synchronize()
            times.step_ends.append(time.time())
            times.cpu_ends.append(time.process_time())
            times.tokens.append(int(state.num_input_tokens_seen or 0))

    return Timer()


def count_positions(model: Any, times: StepTimes, pad_id: int) -> None:
    """Real tokens and batch positions of every training forward (packing efficiency)."""

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is None or not model.training:
            return
        mask = kwargs.get("attention_mask")
        times.real_tokens += int(mask.sum()) if mask is not None else int((ids != pad_id).sum())
        times.positions += int(ids.numel())

    model.register_forward_pre_hook(hook, with_kwargs=True)


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def skewed_text_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Mostly short rows and a few long ones (lengths 4..110 words, heavy-tailed): what padding wastes most on."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        length = min(110, 4 + int(rng.paretovariate(1.2) * 6))
        rows.append({"text": f"row {i} " + " ".join(rng.choice(WORDS) for _ in range(length))})
    return rows


def preference_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(4 + rng.randrange(12)))
        chosen = " ".join(rng.choice(WORDS) for _ in range(4 + rng.randrange(24)))
        rejected = " ".join(rng.choice(WORDS) for _ in range(4 + rng.randrange(24)))
        rows.append({"prompt": f"{i} {prompt}", "chosen": f" {chosen}", "rejected": f" {rejected}"})
    return rows


def write_data(folder: Path, objective: str, rows: int = 512) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{objective}.jsonl"
    data = preference_rows(rows) if objective == "dpo" else skewed_text_rows(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return path


# --- the two sides --------------------------------------------------------------------------------------------
def kubetune_side(
    case: Case,
    model_dir: Path,
    data: Path,
    root: Path,
    times: StepTimes,
    *,
    packing_probe: bool = False,
    callbacks: tuple[Any, ...] = (),
) -> Any:
    """The kubetune pipeline as the entrypoint runs it (default hooks: progress reporter with metrics on)."""
    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_trainer.__main__ import default_hooks
    from kubetune_trainer.context import RunContext
    from kubetune_trainer.pipeline import run

    method = METHOD_BLOCKS[case.method]
    if case.method == "qlora" and case.precision == "bf16":
        method = {**method, "quantization": {"computeDtype": "bfloat16"}}
    wire = trainer_config(
        root,
        model_dir,
        data,
        method,
        job={
            "objective": {"type": case.objective},
            "dataset": {
                "train": {"uri": f"file://{data}"},
                "format": "preference" if case.objective == "dpo" else "text",
                "prep": {"maxSeqLength": case.max_length, "packing": case.packing},
            },
            "distributed": case.distributed or {"strategy": "auto"},
            "checkpointing": {"everySteps": case.steps + 1, "keepLast": 1},
        },
        training={
            "maxSteps": case.steps,
            "batchSize": case.batch_size,
            "learningRate": case.learning_rate,
            "precision": case.precision,
            "optimizer": case.optimizer,
            "warmupRatio": 0,
            "scheduler": "constant",
        },
        runtime={"metricsPort": free_port(), "reportStatus": True, "strategy": "single"}
        | ({"strategy": "deepspeed", "launcher": "deepspeed"} if case.distributed else {}),
    )
    hooks = default_hooks()
    seen: dict[str, Any] = {}

    def attach(ctx: RunContext) -> None:
        ctx.callbacks.extend([step_timer(times), *callbacks])
        if packing_probe:
            count_positions(ctx.model, times, ctx.tokenizer.pad_token_id)
        seen["ctx"] = ctx

    hooks.before_train.append(attach)
    result = run(TrainerConfig.model_validate(wire), hooks=hooks)
    return seen["ctx"], result


def trl_side(case: Case, model_dir: Path, data: Path, root: Path, times: StepTimes) -> None:
    """Plain TRL: the script a user writes for the same run."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if case.precision == "bf16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32 if case.method == "full" else dtype)
    if cuda:
        model = model.cuda()
    dataset = load_dataset("json", data_files=str(data), split="train")
    peft_config = None
    if case.method == "lora":
        peft_config = LoraConfig(
            r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=0.0, target_modules=LORA["targetModules"],
            task_type="CAUSAL_LM",
        )  # fmt: skip
    common: dict[str, Any] = {
        "output_dir": str(root / "trl"),
        "per_device_train_batch_size": case.batch_size,
        "max_steps": case.steps,
        "learning_rate": case.learning_rate,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "optim": "adamw_torch",
        "seed": 42,
        "data_seed": 42,  # kubetune sets both: the same sampler order, so both sides see the same batches
        "activation_checkpointing": False,  # TRL's configs default to True; kubetune's spec to false
        "bf16": case.precision == "bf16",
        "use_cpu": not cuda,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
        "max_length": case.max_length,
    }
    callbacks = [step_timer(times)]
    if case.objective == "dpo":
        args = DPOConfig(**common, beta=0.1, loss_type=["sigmoid"])
        trainer: Any = DPOTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
            callbacks=callbacks,
        )  # fmt: skip
    else:
        args = SFTConfig(**common, packing=case.packing)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
            callbacks=callbacks,
        )  # fmt: skip
    trainer.train()


# --- modes ----------------------------------------------------------------------------------------------------
def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Interleaved pairs (K,T then T,K) per case in this one process; per pair the steady-state numbers."""
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    root = Path(spec["root"])
    model_dir = Path(spec["model_dir"])
    out: dict[str, Any] = {"cases": []}
    for raw in spec["cases"]:
        case = Case(**raw)
        data = write_data(root / "data", case.objective, case.rows)
        pairs = []
        for rep in range(int(spec["repeats"])):
            sides = ("kubetune", "trl") if rep % 2 == 0 else ("trl", "kubetune")
            measured: dict[str, dict[str, float]] = {}
            for side in sides:
                times = StepTimes()
                run_root = root / f"{case.name.replace(' ', '-')}-{rep}-{side}"
                if side == "kubetune":
                    kubetune_side(case, model_dir, data, run_root, times)
                else:
                    trl_side(case, model_dir, data, run_root, times)
                measured[side] = times.steady(case.warmup)
            pairs.append(measured)
        out["cases"].append({"case": asdict(case), "pairs": pairs})
    if spec.get("packing_probe"):
        out["packing"] = {}
        for packing in (False, True):
            case = Case(method="lora", packing=packing, steps=10, warmup=1)
            times = StepTimes()
            kubetune_side(
                case, model_dir, write_data(root / "data", "sft"), root / f"probe-{packing}", times, packing_probe=True
            )
            out["packing"][str(packing).lower()] = {"real": times.real_tokens, "positions": times.positions}
    return out


def startup(spec: dict[str, Any]) -> dict[str, Any]:
    """From interpreter start (the parent's clock) to the first step, in phases; `spec["side"]` says which."""
    t0 = float(spec["t0"])
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    if spec["side"] == "kubetune":
        import kubetune_trainer.pipeline  # noqa: F401
    imported = time.time()
    torch.set_num_threads(int(spec.get("threads", 1)))
    root = Path(spec["root"])
    case = Case(**spec["case"])
    data = write_data(root / "data", case.objective, case.rows)
    times = StepTimes()
    if spec["side"] == "kubetune":
        kubetune_side(case, Path(spec["model_dir"]), data, root / "run", times)
    else:
        trl_side(case, Path(spec["model_dir"]), data, root / "run", times)
    return {
        "imports": imported - t0,
        "setup": times.train_begin - imported,
        "first_step": times.step_ends[0] - times.train_begin,
        "to_first_step": times.step_ends[0] - t0,
    }


def main(argv: list[str]) -> int:
    from support import bench_memory

    mode, spec_path = argv
    spec = json.loads(Path(spec_path).read_text())
    modes = {"throughput": throughput, "startup": startup, "memory": bench_memory.measure}
    result = modes[mode](spec)
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The parent side of the trainer benchmarks and the GPU check: start `support.bench_trainer` workers in fresh
interpreters, and turn their results into intervals and Markdown tables."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Two-sided 95% quantiles of Student's t by degrees of freedom (small samples: the normal would be too narrow)."""


def worker(
    mode: str, spec: dict[str, Any], folder: Path, timeout: float = 3600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One fresh interpreter running `support.bench_trainer MODE`; its JSON result."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / f"{mode}-{len(list(folder.glob('*.json')))}.json"
    environment = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    environment |= {
        "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("tests", "operator", "trainer-image", "dev")),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "OMP_NUM_THREADS": "1",
        "KUBETUNE_TERMINATION_LOG": os.devnull,
    } | (env or {})
    spec_file.write_text(json.dumps(spec | {"root": str(folder / spec_file.stem), "t0": time.time()}))
    command = [sys.executable, "-m", "support.bench_trainer", mode, str(spec_file)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("BENCH-RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH-RESULT "))
    return result


def interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean and 95% t-interval of ratios (computed on their logarithms)."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    half = T_975[len(logs) - 1] * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def model_flops_per_token(config: Any, sequence: int, *, frozen_base: bool) -> float:
    """Training FLOPs per token of a Llama-shaped causal LM (MFU's numerator): 6N + 12 L h s when every weight
    trains, 4N + 12 L h s when the base is frozen (no weight gradients); N counts the linear layers and the output
    head, not the input embedding (a lookup)."""
    h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size
    dense = layers * per_layer + h * vocab
    return float((4 if frozen_base else 6) * dense + 12 * layers * h * sequence)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])

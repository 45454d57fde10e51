#!/usr/bin/env bash
# Build DeepSpeed's CPU ops (shared-memory comm, CPU Adam) once into a fixed cache directory.
#
# DeepSpeed JIT-compiles these on first use (~55 s and ~90 s on 2 cores). Pointing TORCH_EXTENSIONS_DIR
# at a stable path that CI caches means the compile is paid at most once; the trainer tests and the
# image (which runs this at build time) use the same variable. Idempotent: a second run only loads.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-${KUBETUNE_CACHE:-$HOME/.cache/kubetune}/torch_extensions}
export DS_ACCELERATOR=cpu
mkdir -p "$TORCH_EXTENSIONS_DIR"
start=$(date +%s)
"$PY" - <<'PY'
from deepspeed.ops.op_builder.cpu import CPUAdamBuilder
from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder

ShareMemCommBuilder().load()
CPUAdamBuilder().load()
PY
printf 'deepspeed ops ready in %s (%ss)\n' "$TORCH_EXTENSIONS_DIR" "$(($(date +%s) - start))" >&2

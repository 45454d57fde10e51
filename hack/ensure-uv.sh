#!/usr/bin/env bash
# Prints the path of a uv binary, installing uv from PyPI into the user site when it is missing,
# so `make test` works from a fresh clone with only python3 on the machine.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
py=${PYTHON:-python3}
command -v "$py" >/dev/null 2>&1 || { echo "error: python3 not found; install Python 3.11+ first" >&2; exit 1; }
echo "installing uv from PyPI (one time)..." >&2
"$py" -m pip install --quiet --user uv >&2 || "$py" -m pip install --quiet uv >&2
for candidate in "$("$py" -m site --user-base)/bin/uv" "$(dirname "$(command -v "$py")")/uv"; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
echo "error: uv was installed but not found on PATH; add \$($py -m site --user-base)/bin to PATH" >&2
exit 1

#!/usr/bin/env bash
# Prints the path of a uv binary, installing uv from PyPI into the user site when it is missing,
# so `make test` works from a fresh clone with only python3 on the machine. An installed uv is found
# silently, on PATH or where pip puts it (the user site's bin is often not on PATH).
set -euo pipefail
py=${PYTHON:-python3}
installed() {
  command -v uv 2>/dev/null && return 0
  command -v "$py" >/dev/null 2>&1 || return 1
  local candidate
  for candidate in "$("$py" -m site --user-base)/bin/uv" "$(dirname "$(command -v "$py")")/uv"; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
installed && exit 0
command -v "$py" >/dev/null 2>&1 || { echo "error: python3 not found; install Python 3.11+ first" >&2; exit 1; }
echo "installing uv from PyPI (one time)..." >&2
"$py" -m pip install --quiet --user uv >&2 || "$py" -m pip install --quiet uv >&2
installed && exit 0
echo "error: uv was installed but not found; add \$($py -m site --user-base)/bin to PATH" >&2
exit 1

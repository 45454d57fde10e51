"""`python -m kubetune_trainer.series CONFIG...`: several trainer runs in one process, one after another.

The code labs run series of small jobs (a sweep, three seeds of four objectives); each
`python -m kubetune_trainer` process pays the torch/transformers/TRL imports again (about ten seconds
on a small CPU), which would dwarf jobs that train for one. Each config runs exactly as the entrypoint
runs it, with the same exit-code contract; the first failure ends the series with its code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kubetune_trainer.__main__ import main as run_config


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m kubetune_trainer.series CONFIG [CONFIG...]", file=sys.stderr)
        return 2
    for path in paths:
        code = run_config(["--config", path])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

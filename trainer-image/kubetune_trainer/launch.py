"""PID 1 of a pod whose trainer runs under a launcher: `python -m kubetune_trainer.launch -- torchrun ...`.

torchrun and the DeepSpeed launcher stand between Kubernetes and the trainer processes, and both get exit
codes and SIGTERM wrong for the Job's pod failure policy: they exit 1 whatever their workers exited with (a
config error's 78 included), and on SIGTERM they kill their workers within 30 s (torchrun) or at once
(DeepSpeed), before a checkpoint can be saved. This wrapper starts the launcher in a session of its own (a
kubelet signals only PID 1), turns SIGTERM into the stop file every trainer process watches (see
`termination`), and exits with the code the policy expects: 143 after SIGTERM, 78 when a trainer reported
a config error in the termination log, else the launcher's. It imports nothing heavy and only waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from kubetune.api.v1alpha1.pod_contract import SCRATCH_DIR, TERMINATION_LOG_ENV
from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE, TERMINATED_EXIT_CODE
from kubetune_trainer.termination import CONFIG_ERROR_PREFIX, DEFAULT_TERMINATION_LOG, STOP_FILE_ENV

DEFAULT_STOP_FILE = f"{SCRATCH_DIR}/.kubetune-stop"
"""In the pod's own scratch volume: never shared with another pod."""


def exit_code(launcher_status: int, *, terminated: bool, termination_log: str) -> int:
    """What the container reports: the Job's policy ignores 143 and fails at once on 78."""
    code = 128 - launcher_status if launcher_status < 0 else launcher_status
    if code == 0:
        return 0
    if termination_log.startswith(CONFIG_ERROR_PREFIX):
        return CONFIG_ERROR_EXIT_CODE
    return TERMINATED_EXIT_CODE if terminated else code


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m kubetune_trainer.launch -- LAUNCHER ARGS...", file=sys.stderr)
        return 2
    stop_file = Path(os.environ.get(STOP_FILE_ENV) or DEFAULT_STOP_FILE)
    stop_file.unlink(missing_ok=True)
    terminated = False

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True
        stop_file.touch()

    signal.signal(signal.SIGTERM, on_sigterm)
    child = subprocess.Popen(command, env={**os.environ, STOP_FILE_ENV: str(stop_file)}, start_new_session=True)
    status = child.wait()
    log = Path(os.environ.get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG))
    try:
        message = log.read_text(errors="replace") if log.is_file() else ""
    except OSError:
        message = ""
    return exit_code(status, terminated=terminated, termination_log=message)


if __name__ == "__main__":
    sys.exit(main())

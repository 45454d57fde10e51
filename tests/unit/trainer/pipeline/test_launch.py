"""`kubetune_trainer.launch`, PID 1 above torchrun and the DeepSpeed launcher: SIGTERM becomes the stop file the
trainer processes watch, and the container exits with the codes the Job's pod failure policy reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kubetune_trainer.launch import exit_code

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[4]
# stands in for torchrun: waits for the stop file its workers would watch, then fails like torchrun does
LAUNCHER = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: pathlib.Path(sys.argv[1]).write_text("signalled"))
    stop = pathlib.Path(os.environ["KUBETUNE_STOP_FILE"])
    pathlib.Path(sys.argv[1]).write_text("started")
    while not stop.exists():
        time.sleep(0.05)
    log = os.environ["KUBETUNE_TERMINATION_LOG"]
    if sys.argv[2] == "config-error":
        pathlib.Path(log).write_text("kubetune-trainer: config error: dataset.train: no rows\\n")
    sys.exit(1)
    """
)


@pytest.mark.parametrize(
    ("status", "terminated", "log", "expected"),
    [
        (0, False, "", 0),
        (0, True, "", 0),  # finished just as SIGTERM came: a success is a success
        (1, True, "", 143),
        (-15, True, "", 143),
        (1, False, "kubetune-trainer: config error: bad\n", 78),
        (1, True, "kubetune-trainer: config error: bad\n", 78),
        (1, False, "", 1),
        (-9, False, "", 137),
    ],
)
def test_exit_codes(status: int, terminated: bool, log: str, expected: int) -> None:
    assert exit_code(status, terminated=terminated, termination_log=log) == expected


def run_wrapper(tmp_path: Path, mode: str) -> tuple[int, str]:
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    state = tmp_path / "state"
    env = os.environ | {
        "KUBETUNE_STOP_FILE": str(tmp_path / "stop"),
        "KUBETUNE_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer-image")]),
    }
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "kubetune_trainer.launch", "--", sys.executable, str(script), str(state), mode], env=env
    )
    deadline = time.monotonic() + 60
    while not (state.exists() and state.read_text() == "started"):
        assert time.monotonic() < deadline, "the launcher never started"
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)  # a kubelet signals PID 1 only
    return wrapper.wait(timeout=60), state.read_text()


def test_sigterm_reaches_the_trainers_through_the_stop_file_and_exits_143(tmp_path: Path) -> None:
    code, state = run_wrapper(tmp_path, "plain")
    assert code == 143
    assert state == "started", "the launcher itself never saw SIGTERM (it would kill its workers)"


def test_a_config_error_under_a_launcher_exits_78(tmp_path: Path) -> None:
    code, _ = run_wrapper(tmp_path, "config-error")
    assert code == 78

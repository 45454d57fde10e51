"""Starting and stopping component processes, by recorded PID only.

Teardown never looks processes up by name: other control planes (a parallel test run, a hand-started
``devcluster up``) may be running the very same binaries. Before signalling a PID that came from a state file
we check /proc/<pid>/cmdline still starts with the binary we started, so a recycled PID is never killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If pytest is killed (SIGKILL, CI timeout) its components get SIGTERM instead of leaking.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Process:
    name: str
    pid: int
    executable: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return is_our_process(self.pid, self.executable)


def is_our_process(pid: int, executable: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    if state == "Z":  # exited, only waiting to be reaped by its parent
        return False
    return cmdline.split(b"\0", 1)[0].decode(errors="replace") == executable


def spawn(name: str, argv: Sequence[str], log: Path, *, cwd: Path, env: dict[str, str], detach: bool) -> Process:
    """``detach`` puts the process in its own session so it outlives the starting shell (``devcluster up``);
    otherwise it shares the caller's process group (Ctrl-C reaches it) and dies with its parent."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
        )
    return Process(name=name, pid=popen.pid, executable=str(argv[0]), log=log, popen=popen)


def terminate(processes: Sequence[Process], grace: float = 10.0, log: Callable[[str], None] | None = None) -> None:
    """One at a time in the given order: SIGTERM, wait up to ``grace`` seconds, then SIGKILL.

    Sequential on purpose: with etcd gone first, kube-apiserver's graceful shutdown stalls on storage and
    eats the whole grace period.
    """
    for proc in processes:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.alive():
            if log is not None:
                log(f"{proc.name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f}s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)


def tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * lines))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None

"""Start a container command as a local process with its mounts, environment and exit report."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from kubetune_dev.local_node.network import PodNetwork
from kubetune_dev.local_node.volumes import Mount


def mount_order(mounts: Sequence[Mount]) -> list[Mount]:
    """Mounts whose target would hide another mount's source go last (e.g. /tmp over a sandbox in /tmp)."""
    pending = list(mounts)
    ordered: list[Mount] = []
    while pending:
        for mount in pending:
            hides = any(other is not mount and other.source.is_relative_to(mount.target) for other in pending)
            if not hides:
                break
        else:
            mount = pending[0]
        pending.remove(mount)
        ordered.append(mount)
    return ordered


def mount_script(mounts: Sequence[Mount], hostname: str) -> str:
    """Shell run inside the pod's namespaces: set the hostname, bind each volume at its mountPath, exec the command.

    Mount points that do not exist yet are created on the host first (see `ensure_mount_points`);
    the binds themselves are private to the pod's namespace.
    """
    lines = [f"hostname {shlex.quote(hostname)}"]
    for mount in mount_order(mounts):
        if mount.source.is_file():
            lines.append(f"{{ [ -e {shlex.quote(mount.target)} ] || touch {shlex.quote(mount.target)}; }}")
        lines.append(f"mount --bind {shlex.quote(str(mount.source))} {shlex.quote(mount.target)}")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {shlex.quote(mount.target)}")
    lines.append('exec "$@"')
    return " && ".join(lines)


def ensure_mount_points(mounts: Sequence[Mount]) -> list[Path]:
    """Creates missing mount-point directories; returns the ones created so they can be removed."""
    created: list[Path] = []
    for mount in mounts:
        target = Path(mount.target)
        missing = []
        probe = target if not mount.source.is_file() else target.parent
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        probe_target = target if not mount.source.is_file() else target.parent
        probe_target.mkdir(parents=True, exist_ok=True)
        created.extend(reversed(missing))
    return created


def mount_points_in_use(proc: Path = Path("/proc")) -> set[str]:
    """Every mount point of every process on this host, whatever its mount namespace (/proc/PID/mountinfo)."""
    found: set[str] = set()
    for info in proc.glob("[0-9]*/mountinfo"):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                fields = line.split(" ")
                if len(fields) > 4:
                    found.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return found


def signal_pending(group: int, signum: int, proc: Path = Path("/proc")) -> bool:
    """Whether `signum` was sent to a process of process group `group` and waits there (the process is stopped,
    or blocks it): the process-wide pending set (ShdPnd) of /proc/PID/status, for the group's processes."""
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != group:  # after comm: state, ppid, pgrp
                continue
            status = (stat.parent / "status").read_text().splitlines()
            pending = next(line.split()[1] for line in status if line.startswith("ShdPnd:"))
            if int(pending, 16) & (1 << (signum - 1)):
                return True
    return False


def remove_mount_points(created: Iterable[Path], proc: Path = Path("/proc")) -> None:
    """Removes the mount points this node created, deepest first, but none that any process still mounts on.

    Removing a directory detaches what is mounted on it in every mount namespace (Linux >= 3.18): a node
    stopping while another session's pod (e.g. one with the same `/scratch`) runs would pull the volume
    out from under it, and that pod would go on writing into the host's root filesystem.
    """
    in_use = mount_points_in_use(proc)
    for path in sorted(set(created), key=lambda p: len(p.parts), reverse=True):
        if str(path) not in in_use:
            with contextlib.suppress(OSError):
                path.rmdir()


def start(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    mounts: Sequence[Mount],
    workdir: str | None,
    log_path: Path,
    hostname: str,
    network: PodNetwork | None = None,
) -> subprocess.Popen[bytes]:
    """The command runs as PID 1 of its own PID namespace, like a container: killing the returned
    `unshare` process (`--kill-child`) kills every process of the pod, torchrun's workers included
    (they run in sessions of their own, out of reach of a process-group signal). With a `network`, in
    that network namespace (`nsenter` execs `unshare`, so the returned process is still `unshare`)."""
    namespaces = ["--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"]
    argv = ["unshare", *namespaces, "sh", "-c", mount_script(mounts, hostname), "pod", *command]
    log = log_path.open("ab")
    return subprocess.Popen(
        [*network.enter(), *argv] if network else argv,
        env=dict(env),
        cwd=workdir if workdir and os.path.isdir(workdir) else None,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=(network.namespace_fd,) if network else (),
    )

"""``python -m kubetune_dev.controlplane up|down|status``: a control plane started by hand for development.

``up`` detaches the components and records their PIDs in the state directory, so ``down`` from another
shell stops exactly those processes and nothing else that happens to run the same binaries.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from kubetune_dev.controlplane.cluster import LocalControlPlane
from kubetune_dev.controlplane.components import Tier
from kubetune_dev.controlplane.kueue import CLUSTER_QUEUE
from kubetune_dev.controlplane.paths import default_state_dir


def _up(state_dir: Path, tier: Tier, kueue: bool) -> int:
    running = LocalControlPlane.attach(state_dir)
    if running is not None and running.processes:
        print(f"already running (tier {running.tier}), stop it with `make cluster-down`", file=sys.stderr)
        print(running.state["kubeconfig"])
        return 0
    shutil.rmtree(state_dir, ignore_errors=True)
    plane = LocalControlPlane(state_dir, detach=True).start(tier, kueue=kueue)
    for name, seconds in plane.timings.items():
        print(f"  {name:<26} ready after {seconds:5.1f}s", file=sys.stderr)
    with_kueue = f", Kueue ClusterQueue {CLUSTER_QUEUE}" if kueue else ""
    print(
        f"control plane up (tier {tier}{with_kueue}); use: export KUBECONFIG={plane.kubeconfig_path}", file=sys.stderr
    )
    print(plane.kubeconfig_path)
    return 0


def _down(state_dir: Path) -> int:
    plane = LocalControlPlane.attach(state_dir)
    if plane is None:
        print(f"nothing to stop: no state in {state_dir}", file=sys.stderr)
        return 0
    names = ", ".join(f"{p.name}={p.pid}" for p in plane.processes) or "none alive"
    plane.stop(remove_workdir=True)
    print(f"stopped ({names})", file=sys.stderr)
    return 0


def _status(state_dir: Path) -> int:
    plane = LocalControlPlane.attach(state_dir)
    if plane is None:
        print(f"not running (no state in {state_dir})")
        return 1
    alive = {p.name: p for p in plane.processes}
    print(f"tier {plane.tier}, kubeconfig {plane.state['kubeconfig']}")
    for entry in plane.state["processes"]:
        proc = alive.get(entry["name"])
        rss = plane.rss_mib().get(entry["name"])
        print(
            f"  {entry['name']:<24} pid {entry['pid']:<8} {'running' if proc else 'DEAD'}"
            + (f"  rss {rss:.0f} MiB" if rss else "")
        )
    return 0 if len(alive) == len(plane.state["processes"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetune_dev.controlplane", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start and leave running; prints the kubeconfig path")
    up.add_argument("--tier", choices=[t.value for t in Tier], default=Tier.B.value)
    up.add_argument("--kueue", action="store_true", help="also run Kueue, with a ClusterQueue over the fake GPUs")
    sub.add_parser("down", help="stop the processes recorded by `up`")
    sub.add_parser("status", help="show recorded processes and whether they run")
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up(args.state_dir, Tier(args.tier), args.kueue)
    if args.command == "down":
        return _down(args.state_dir)
    return _status(args.state_dir)


if __name__ == "__main__":
    raise SystemExit(main())

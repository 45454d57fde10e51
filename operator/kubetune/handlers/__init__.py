"""Thin kopf glue. Importing this package registers every handler; `run_operator` runs them.

Entry points: `kubetune operator [ARGS]` calls `run_operator(ARGS)`; tests use
`kopf.testing.KopfRunner(["run", "--standalone", "-n", NS, "-m", "kubetune.handlers"])`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import kopf

from kubetune.handlers import adapter, children, finetunejob, startup

__all__ = ["adapter", "children", "finetunejob", "run_operator", "startup"]


def parse_args(args: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubetune operator", description="Run the kubetune operator (kopf).")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="namespace to watch (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    ha = parser.add_mutually_exclusive_group()
    ha.add_argument("--standalone", action="store_true", help="no peering (one replica, or tests)")
    ha.add_argument("--peering", metavar="NAME", help="peering object for HA: one active replica at a time")
    parser.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    parser.add_argument(
        "--liveness", metavar="URL", default=None, help="liveness/readiness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(list(args))


def quiet_libraries() -> None:
    """--verbose is for kopf and kubetune; the CEL evaluator and HTTP pool would drown it."""
    for name in ("celpy", "urllib3", "kubernetes"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_operator(args: Sequence[str]) -> int:
    """`kubetune operator`: kopf run with kubetune's handlers; returns the process exit code."""
    options = parse_args(args)
    kopf.configure(verbose=options.verbose, debug=options.debug, log_prefix=True)  # [namespace/name] on lines
    quiet_libraries()
    kopf.run(
        standalone=options.standalone,
        peering_name=options.peering,
        priority=options.priority,
        liveness_endpoint=options.liveness,
        clusterwide=options.all_namespaces,
        namespaces=options.namespace,
    )
    return 0

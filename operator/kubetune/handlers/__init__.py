"""Thin kopf glue; `run_operator` runs it.

kopf finds handlers in a registry. `register_operator` fills one explicitly: each kind in `KINDS`
through the one registration helper, the Job/pod watchers and the lifecycle handlers. kopf's
`run -m MODULE` only imports a module, so importing this package registers into kopf's default
registry, once, by that one call.

Entry points: `kubetune operator [ARGS]` calls `run_operator(ARGS)`; tests use
`kopf.testing.KopfRunner(["run", "--standalone", "-n", NS, "-m", "kubetune.handlers"])`.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime

import kopf

from kubetune.handlers.children import register_children
from kubetune.handlers.kinds import KINDS
from kubetune.handlers.peering import MEMBERSHIP_KEY, Membership
from kubetune.handlers.registration import register_kind
from kubetune.handlers.startup import register_lifecycle


def register_operator(registry: kopf.OperatorRegistry) -> None:
    for kind in KINDS:
        register_kind(registry, kind)
    register_children(registry)
    register_lifecycle(registry, KINDS)


register_operator(kopf.get_default_registry())


def parse_args(args: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubetune operator", description="Run the kubetune operator (kopf).")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="namespace to watch (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    ha = parser.add_mutually_exclusive_group()
    ha.add_argument("--standalone", action="store_true", help="no peering (one replica, or tests)")
    ha.add_argument("--peering", metavar="NAME", help="peering object for HA: one active replica at a time")
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica; default: derived from its start time (the oldest replica leads, "
        "any explicit priority >= 0 outranks every derived one)",
    )
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
    membership = Membership.derive(os.environ, options.namespace, options.priority, datetime.now(UTC))
    kopf.run(
        standalone=options.standalone,
        peering_name=options.peering,
        priority=membership.priority,
        identity=membership.identity,  # type: ignore[arg-type]  # kopf's Identity (a NewType of str) is private
        memo=kopf.Memo({MEMBERSHIP_KEY: membership}),
        liveness_endpoint=options.liveness,
        clusterwide=options.all_namespaces,
        namespaces=options.namespace,
    )
    return 0

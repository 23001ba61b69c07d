"""The arguments of ``moldau cluster rebalance`` and ``reassign``.

Apart from ``cluster_rebalance`` (which runs them), so that every other
``moldau`` command, ``moldau broker`` first, starts without loading it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(actions: Any) -> None:
    rebalance = actions.add_parser(
        "rebalance",
        help="plan (and with --execute, run) moves that balance replicas and leaders",
        description="Plan where replicas should go: off removed brokers, onto added ones, "
        "spread over racks, replica and leader counts balanced, fewest moves. Prints "
        "the plan; --execute runs it with a progress line.",
    )
    _cluster_flags(rebalance)
    rebalance.add_argument(
        "--add-broker",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="a broker to move replicas onto (repeatable)",
    )
    rebalance.add_argument(
        "--remove-broker",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="a broker to move every replica off (repeatable)",
    )
    rebalance.add_argument(
        "--topics", nargs="+", metavar="TOPIC", help="only these topics (default: all)"
    )
    _execute_flags(rebalance)
    rebalance.set_defaults(run=_run("rebalance"))

    reassign = actions.add_parser(
        "reassign",
        help="move partitions as a reassignment JSON file says (Kafka's format)",
        description="Show, run (--execute) or cancel (--cancel) the reassignment in FILE: "
        '{"version":1,"partitions":[{"topic":..,"partition":..,"replicas":[..]}]}.',
    )
    _cluster_flags(reassign)
    reassign.add_argument("--plan", type=Path, required=True, metavar="FILE")
    reassign.add_argument(
        "--cancel", action="store_true", help="cancel the reassignments of the file's partitions"
    )
    _execute_flags(reassign)
    reassign.set_defaults(run=_run("reassign"))


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    found = parser.add_mutually_exclusive_group()
    found.add_argument(
        "--bootstrap-server", metavar="HOST:PORT[,HOST:PORT...]", help="brokers to ask first"
    )
    found.add_argument("--dir", type=Path, help="the directory of a `moldau cluster up`")
    parser.add_argument(
        "--timeout-ms", type=int, default=30_000, help="per request (default 30000)"
    )


def _execute_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--execute", action="store_true", help="run the plan")
    parser.add_argument(
        "--throttle",
        type=int,
        metavar="BYTES_PER_S",
        help="with --execute: limit the replication traffic of the moves",
    )


def _run(command: str) -> Callable[[argparse.Namespace], int]:
    """The command ``command`` of ``cluster_rebalance``, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        from . import cluster_rebalance

        result: int = getattr(cluster_rebalance, command)(args)
        return result

    return run

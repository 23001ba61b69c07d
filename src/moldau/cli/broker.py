"""``moldau broker``: run a broker in the foreground."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "broker",
        help="run a broker",
        description="Run one moldau broker until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--config", metavar="FILE", help="a server.properties file")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key (repeatable), e.g. listeners=PLAINTEXT://127.0.0.1:9092",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from moldau.broker.run import run_broker

    return run_broker(args.config, args.override)

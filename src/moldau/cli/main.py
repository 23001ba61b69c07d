"""The ``moldau`` command: argument parsing and the one-line error rule.

Each command group lives in its own module and registers its subparser; this
module imports none of the client (or the broker) at start-up, so ``moldau
--help`` answers at once. Any failure becomes one line on stderr and a
non-zero exit status; ``MOLDAU_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from . import (
    broker,
    cluster,
    configs,
    consume,
    groups,
    produce,
    topics,
    transactions,
    verify,
)
from .common import CliError


class _Parser(argparse.ArgumentParser):
    """argparse without prefix matching: ``--partition`` must never be taken
    for ``--partitions``. Subcommands' parsers are made of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moldau", description="A Kafka-compatible distributed commit log.")
    parser.add_argument("--version", action="version", version=f"moldau {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        broker,
        cluster,
        topics,
        configs,
        produce,
        consume,
        groups,
        transactions,
        verify,
    ):
        module.register(commands)
    _finish(parser)
    return parser


def _finish(parser: argparse.ArgumentParser) -> None:
    """Give every parser its own name on the namespace (so that an unknown
    flag is reported with that subcommand's usage), and make a parser that
    needs a subcommand print its help when given none."""
    parser.set_defaults(parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parser.set_defaults(run=_help(parser))
            for sub in action.choices.values():
                _finish(sub)


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from moldau.protocol.errors import KafkaError

    try:
        return int(args.run(args))
    except KafkaError as exc:
        return _fail(f"{exc.message} ({exc.code.name})" if exc.message else exc.code.name)
    except CliError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``moldau consume ... | head``): not an error.
        _silence_stdout()
        return 0
    except Exception as exc:
        if os.environ.get("MOLDAU_DEBUG"):
            raise
        return _fail(f"unexpected error: {exc!r} (MOLDAU_DEBUG=1 shows where)")


def _fail(message: str) -> int:
    print(f"moldau: {message}", file=sys.stderr)
    return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

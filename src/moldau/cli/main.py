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
from collections.abc import Sequence

from . import broker, configs, consume, groups, produce, topics
from .common import CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moldau", description="A Kafka-compatible distributed commit log."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (broker, topics, configs, produce, consume, groups):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

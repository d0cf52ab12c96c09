"""The ``fastws`` command line (``python -m fastws``, or the ``fastws`` script).

Sub-commands: ``demo`` (the default: every registered exchange from its
simulator), ``stream``, ``book`` (local order books), ``record``, ``replay``,
``bench`` and ``verify``; each lives in ``fastws.commands.<name>``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from fastws.commands import COMMANDS, CommandError
from fastws.errors import ExchangeAPIError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="fastws", description="fastws: exchange market data over WebSocket.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fastws.commands.{name}").register(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fastws`` and ``python -m fastws``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command is None:
        args = parser.parse_args(["demo"])
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except (CommandError, ExchangeAPIError, OSError) as exc:
        if args.debug:
            raise
        print(f"fastws {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_status if isinstance(exc, CommandError) else 1

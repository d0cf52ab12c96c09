"""``fastws verify MODULE:CLASS|EXCHANGE``: check an adapter against the interface standard.

Runs ``fastws.verify.verify_adapter`` on the class and prints the pass/fail
table (or JSON with ``--json``); exits 0 when no check failed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import uvloop

from fastws.commands import CommandError
from fastws.verify import AdapterLoadError, format_report, load_adapter, verify_adapter

__all__ = ["add_arguments", "register", "run"]


def register(commands: Any) -> None:
    """Add the ``verify`` sub-command to the ``argparse`` sub-parsers ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "verify", help="check an adapter (MODULE:CLASS, or a registered exchange) against the interface standard",
        description="Check a BaseWebSocketInterface subclass: the four methods and their signatures, "
                    "_parse_message on sample and malformed frames, _extract_stream_info types, and "
                    "a live round trip against the simulator its profile names.")
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to ``parser`` (also used by ``scripts/verify_websocket_compliance.py``)."""
    parser.add_argument("target", metavar="MODULE:CLASS|EXCHANGE",
                        help="the adapter class (e.g. mypackage.client:MyWebSocket) or a registered exchange's name")
    parser.add_argument("--no-live", action="store_true", help="skip the live round trip against the simulator")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each step may take (default 5)")


def run(args: argparse.Namespace) -> int:
    """Run the checks and print the report; 0 when all passed, 1 on a failure."""
    # As ``python -m`` does: the user's own adapter module, run from its
    # project directory, imports with the ``fastws`` script too.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        cls = load_adapter(args.target)
    except AdapterLoadError as exc:
        raise CommandError(f"{args.target}: {exc}") from exc
    if not getattr(args, "debug", False):
        # The forced drop is logged as a warning: expected here, not news.
        logging.getLogger("fastws").addHandler(logging.NullHandler())
        logging.getLogger("fastws").propagate = False
    report = uvloop.run(verify_adapter(cls, live=not args.no_live, timeout=args.timeout))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.passed else 1

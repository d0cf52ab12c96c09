"""``fastws bench``: the loopback benchmark report (Markdown tables and PNG plots).

The measurements live in the repository's ``bench/`` folder (with its feed
servers and peers), not in the installed package: the command runs from a
checkout, found from the current directory or beside this package (an
editable install).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Optional

from fastws.commands import CommandError

__all__ = ["find_repository", "register", "run"]

_MARKER = os.path.join("bench", "suite.py")


def register(commands: Any) -> None:
    """Add the ``bench`` sub-command to the ``argparse`` sub-parsers ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench", help="measure fastws against its peers on loopback; write report.md and plots")
    parser.add_argument("--out", metavar="DIR", default="bench-report", help="folder for report.md and the plots")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run of under a minute)")
    parser.set_defaults(run=run)


def find_repository() -> Optional[str]:
    """The fastws checkout holding ``bench/suite.py`` (current directory first), or None."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (os.getcwd(), package_parent):
        if os.path.isfile(os.path.join(root, _MARKER)):
            return root
    return None


def run(args: argparse.Namespace) -> int:
    """Run every measurement, write ``args.out``/report.md and the plots, print the report; 0."""
    root = find_repository()
    if root is None:
        raise CommandError("the benchmarks live in the fastws repository's bench/ folder, which is not here "
                           "(an installed wheel?): run this from a checkout")
    if root not in sys.path:
        sys.path.insert(0, root)
    suite = importlib.import_module("bench.suite")
    print(suite.run_report(args.out, quick=args.quick))
    return 0

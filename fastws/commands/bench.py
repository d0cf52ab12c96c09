"""``fastws bench``: the loopback benchmark report (Markdown tables and PNG plots).

The measurements live in the repository's ``bench/`` folder (with its feed
servers and peers), not in the installed package. From a checkout (found from
the current directory, or beside this package for an editable install) the
command runs the repository's ``scripts/benchmark_websocket_performance.py``
in a child process; elsewhere (an installed wheel) it says where the
benchmark suite lives and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any, Optional

__all__ = ["NOT_FOUND", "find_repository", "register", "run"]

_SCRIPT = os.path.join("scripts", "benchmark_websocket_performance.py")
_MARKERS = (_SCRIPT, os.path.join("bench", "suite.py"))

NOT_FOUND = ("fastws bench: error: the benchmark suite lives in the fastws repository (bench/, "
             "scripts/benchmark_websocket_performance.py), not in the installed package: "
             "run this from a checkout")


def register(commands: Any) -> None:
    """Add the ``bench`` sub-command to the ``argparse`` sub-parsers ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench", help="measure fastws against its peers on loopback; write report.md and plots")
    parser.add_argument("--out", metavar="DIR", default="bench-report", help="folder for report.md and the plots")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run of under a minute)")
    parser.set_defaults(run=run)


def find_repository() -> Optional[str]:
    """The fastws checkout holding the benchmark suite (current directory first), or None."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (os.getcwd(), package_parent):
        if all(os.path.isfile(os.path.join(root, marker)) for marker in _MARKERS):
            return root
    return None


def run(args: argparse.Namespace) -> int:
    """Run the repository's benchmark script (it writes ``args.out``/report.md and the plots, and
    prints the report) and return its exit status; 2, with one line on stderr, outside a checkout."""
    root = find_repository()
    if root is None:
        print(NOT_FOUND, file=sys.stderr)
        return 2
    command = [sys.executable, os.path.join(root, _SCRIPT), "--out", args.out]
    if args.quick:
        command.append("--quick")
    return subprocess.call(command)

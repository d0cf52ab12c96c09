"""Benchmark report: fastws beside its peers on loopback, as Markdown tables and PNG plots.

Usage: python scripts/benchmark_websocket_performance.py --out DIR [--quick]

Runs every measurement of ``bench/suite.py`` (per-message cost per exchange,
stream type and route; throughput; tick-to-handler latency; reconnection;
subscription acknowledgment; 20 to 1000 connections in one process; order
books over loopback and in process), writes
DIR/report.md and DIR/*.png, and prints the report. Progress goes to stderr.
A full run takes a few minutes; ``--quick`` is a smoke run of under a minute.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the report, print it; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR", default="bench-report", help="folder for report.md and the plots")
    parser.add_argument("--quick", action="store_true", help="small counts (scale 20/50): a smoke run")
    args = parser.parse_args(argv)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from bench.suite import run_report

    print(run_report(args.out, quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())

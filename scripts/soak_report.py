#!/usr/bin/env python3
"""Run the reliability soak and print its figures.

Usage: python scripts/soak_report.py [--seconds 60] [--rate 50]

20 connections (10 Binance, 10 MEXC) on the embedded simulators, a random
server-side fault every 1-2 s; prints faults injected and recovered, recovery
times, messages delivered, depth updates lost outside reported gaps (must be
0), RSS and fd growth, and the event loop's lag. The test suite runs the same
soak for a few seconds (tests/reliability/test_soak.py, ``--soak SECONDS``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.reliability.soak import run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="market steps per second per simulator")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report = uvloop.run(run_soak(args.seconds, args.rate))
    print("\n".join(report.lines()))
    return 0 if report.lost_outside_gaps == 0 and not report.unrecovered else 1


if __name__ == "__main__":
    sys.exit(main())

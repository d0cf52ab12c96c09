"""One-run comparison: fastws beside raw picows and websockets, as ratios.

Usage: python bench/compare.py [--messages N] [--rounds R] [--drops D]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.peers import PEERS, bench_server, reconnect_times, time_rounds  # noqa: E402


async def main(messages: int, rounds: int, drops: int) -> None:
    with bench_server() as url:
        medians: dict[str, float] = {}
        # Interleave peers round by round so machine noise hits all of them alike.
        samples: dict[str, list[float]] = {}
        for _ in range(rounds):
            for make in PEERS:
                peer = make(url)
                samples.setdefault(peer.name, []).extend(await time_rounds(peer, messages, 1))
        for name, values in samples.items():
            medians[name] = statistics.median(values)
        base = medians["raw picows"]
        print(f"per-message cost, {messages} x ~250-byte depth messages, median of {rounds} rounds")
        print("| client | ns/message | vs raw picows | websockets / client |")
        print("| --- | ---: | ---: | ---: |")
        for name, value in medians.items():
            print(f"| {name} | {value * 1e9:.0f} | {value / base:.2f}x | {medians['websockets'] / value:.2f}x |")
        times = sorted(await reconnect_times(url, drops))
        print(f"\nreconnection (drop to first message after resubscribe), {drops} drops: "
              f"median {statistics.median(times) * 1e3:.2f} ms, "
              f"p99 {times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--drops", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    uvloop.run(main(args.messages, args.rounds, args.drops))

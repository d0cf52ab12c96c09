"""Binance per-message cost, per stream type: fastws's typed and dict routes beside
a raw picows listener with msgspec and one with ``json.loads``, in one run.

Two measurements, each with every peer decoding the whole message, classifying
it by its stream and handing it to a counting handler:

1. in-process: built picows frames handed straight to each peer's
   ``on_ws_frame``: parse + classify + dispatch, no socket;
2. loopback: the same peers as clients of ``bench/binance_server.py`` (its own
   process), which blasts pre-built frames; a round ends when the handler has
   counted them all.

Rounds are interleaved across peers (and the peer order rotates) so that noise
hits all alike; each figure is the median of the rounds. Before timing, what
every peer hands its handler is checked against the payloads (typed: the
payload Structs); every round checks that each peer handled exactly the
messages sent (over loopback, also that the fastws cores counted no error).

Usage: python bench/binance_bench.py [--messages N] [--rounds R] [--suite in-process|loopback|all]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from typing import Any, Optional

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.binance_payloads import KINDS, build_payloads  # noqa: E402
from bench.binance_peers import (IN_PROCESS_PEERS, StreamCounter, binance_server, check_in_process,  # noqa: E402
                                 feed_all, frames_of, loopback_peers, run_blast)

BASE = "raw msgspec"
PEER_NAMES = list(IN_PROCESS_PEERS)
Results = dict[str, dict[str, float]]     # kind -> peer -> seconds per message


def rotated(items: list[Any], by: int) -> list[Any]:
    by %= len(items)
    return items[by:] + items[:by]


def in_process(payloads: dict[str, list[bytes]], messages: int, rounds: int) -> tuple[Results, float]:
    """Seconds per message of every peer and kind; and of the harness alone (a no-op feed)."""
    check_in_process(frames_of(payloads["mix"], len(payloads["mix"])))
    frames = {kind: frames_of(payloads[kind], messages) for kind in KINDS}
    peers = [(name, counter, make(counter)) for name, make in IN_PROCESS_PEERS.items()
             for counter in [StreamCounter()]]
    samples: dict[tuple[str, str], list[float]] = {}
    harness: list[float] = []
    for index in range(rounds):
        for kind in KINDS:
            for name, counter, feed in rotated(peers, index):
                counter.count = 0
                start = time.perf_counter()
                feed_all(feed, frames[kind])
                samples.setdefault((kind, name), []).append((time.perf_counter() - start) / messages)
                assert counter.count == messages, f"{name} {kind}: {counter.count} of {messages} delivered"
        start = time.perf_counter()
        feed_all(lambda transport, frame: None, frames["mix"])
        harness.append((time.perf_counter() - start) / messages)
    return _medians(samples), statistics.median(harness)


async def loopback(url: str, messages: int, rounds: int, peers: Optional[list[Any]] = None) -> Results:
    """Seconds per message of every peer and kind, over real sockets (``peers``:
    default ``loopback_peers(url)``)."""
    peers = loopback_peers(url) if peers is None else peers
    for peer in peers:
        await peer.open()
    try:
        for kind in KINDS:            # warm-up; the server builds its blobs
            for peer in peers:
                await run_blast(peer, kind, messages)
        samples: dict[tuple[str, str], list[float]] = {}
        for index in range(rounds):
            for kind in KINDS:
                for peer in rotated(peers, index):
                    start = time.perf_counter()
                    await run_blast(peer, kind, messages)
                    samples.setdefault((kind, peer.name), []).append((time.perf_counter() - start) / messages)
        return _medians(samples)
    finally:
        for peer in peers:
            await peer.close()


def _medians(samples: dict[tuple[str, str], list[float]]) -> Results:
    results: Results = {}
    for (kind, name), values in samples.items():
        results.setdefault(kind, {})[name] = statistics.median(values)
    return results


def table(results: Results, payloads: dict[str, list[bytes]]) -> str:
    """Markdown: ns/message per kind and peer, and how many times faster than raw msgspec."""
    lines = [
        "| stream type | bytes (median) | " + " | ".join(f"{name} ns" for name in PEER_NAMES)
        + " | typed vs raw msgspec | dict vs raw msgspec | json vs raw msgspec |",
        "| --- | ---: |" + " ---: |" * (len(PEER_NAMES) + 3),
    ]
    for kind in KINDS:
        row = results[kind]
        base = row[BASE]
        size = statistics.median(len(p) for p in payloads[kind])
        lines.append(f"| {kind} | {size:.0f} | " + " | ".join(f"{row[name] * 1e9:.0f}" for name in PEER_NAMES)
                     + f" | {base / row['fastws typed']:.2f}x | {base / row['fastws dict']:.2f}x"
                     + f" | {base / row['raw json']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages per round, peer and type")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--per-stream", type=int, default=64,
                        help="distinct payloads per stream (8 symbols per type)")
    parser.add_argument("--suite", choices=("all", "in-process", "loopback"), default="all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    payloads = build_payloads(args.per_stream)
    ratio_note = "ratios: raw msgspec ns / peer ns (above 1: faster than the raw picows listener with msgspec)"
    if args.suite in ("all", "in-process"):
        results, harness = in_process(payloads, args.messages, args.rounds)
        print(f"## In-process: parse + classify + dispatch, ns/message "
              f"(median of {args.rounds} rounds x {args.messages} messages)\n")
        print(table(results, payloads))
        print(f"\n{ratio_note}; every figure includes {harness * 1e9:.0f} ns of harness "
              f"(a Python loop calling a no-op feed)\n")
    if args.suite in ("all", "loopback"):
        with binance_server(args.per_stream) as url:
            results = uvloop.run(loopback(url, args.messages, args.rounds))
        print(f"## Loopback end to end: server process -> socket -> handler, ns/message "
              f"(median of {args.rounds} rounds x {args.messages} messages)\n")
        print(table(results, payloads))
        print(f"\n{ratio_note}")


if __name__ == "__main__":
    main()

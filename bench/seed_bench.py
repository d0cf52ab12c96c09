"""The seed-style adapter beside a raw picows listener, per message, in one run.

Peers (``bench/seed_adapter.py``): **seed adapter**, ``SeedWebSocket`` as a
user writes it from the interface standard (``async def`` parse with
``msgspec.json``, inline ``StreamType.X`` in ``_extract_stream_info``,
``async def`` handler); **raw picows**, a ``WSListener`` in Python doing the
same decode and calling a trivial handler.

- loopback: both peers are clients of ``bench/binance_server.py`` (its own
  process), which blasts pre-built Binance frames of each kind; rounds are
  interleaved across peers (the order rotating), each figure is the median of
  the rounds (``bench.binance_bench.loopback``);
- ``--callgrind``: machine instructions per message in-process (built frames
  handed to each peer's ``on_ws_frame``, no socket), counted by valgrind as
  the difference between two runs that differ only in the number of frames.

Before timing, both peers' handlers are checked to receive the same messages,
and the seed adapter's classification is checked per stream.

Usage: python bench/seed_bench.py [--messages N] [--rounds R] [--per-stream P]
       python bench/seed_bench.py --callgrind [--kinds K ...]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
from typing import Any, Callable

import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import binance_bench  # noqa: E402
from bench.binance_payloads import KINDS, MIX, build_payloads  # noqa: E402
from bench.binance_peers import Recorder, StreamCounter, binance_server, feed_all, frames_of  # noqa: E402
from bench.detached import DETACHED_URL, open_detached_core  # noqa: E402
from bench.seed_adapter import SEED_PEERS, RawSeedListener, seed_client  # noqa: E402
from fastws import StreamType  # noqa: E402

__all__ = ["BASE", "SEED", "callgrind_per_message", "check_in_process", "loopback", "table"]

SEED = "seed adapter"
BASE = "raw picows"
Results = dict[str, dict[str, float]]     # kind -> peer -> seconds per message

_IN_PROCESS: dict[str, Callable[[StreamCounter], Callable[[Any, Any], Any]]] = {
    SEED: lambda sink: open_detached_core(seed_client(DETACHED_URL, sink)).on_ws_frame,
    BASE: lambda sink: RawSeedListener(sink).on_ws_frame,
}


class _Recorder(Recorder):
    """Keeps what the handlers got, the async handler included."""

    async def on_message_async(self, message: Any) -> None:
        self.messages.append(message)


async def loopback(url: str, messages: int, rounds: int) -> Results:
    """Seconds per message of both peers and every kind, rounds interleaved."""
    return await binance_bench.loopback(url, messages, rounds, [make(url) for make in SEED_PEERS.values()])


def check_in_process(payloads: list[bytes]) -> None:
    """Both peers hand their handlers the same messages; the seed adapter classifies each stream."""
    frames = frames_of(payloads, len(payloads))
    got = {}
    for name, make in _IN_PROCESS.items():
        recorder = _Recorder()
        feed = make(recorder)
        feed_all(feed, frames)
        got[name] = recorder.messages
        if name == SEED:
            core = feed.__self__  # type: ignore[attr-defined]
            for stream, stats in core.stream_stats().items():
                kind = stats.stream_type
                expected = (StreamType.ORDERBOOK if "@depth" in stream else
                            StreamType.TRADES if "@trade" in stream else StreamType.OTHER)
                assert kind is expected, f"{stream}: {kind}"
    assert got[SEED] == got[BASE] and len(got[SEED]) == len(payloads), "the peers' handlers got different messages"


def _feed(peer: str, kind: str, count: int, per_stream: int) -> None:
    """Hand ``count`` frames of ``kind`` to ``peer`` (what runs under valgrind)."""
    frames = frames_of(build_payloads(per_stream)[kind], count)
    sink = StreamCounter()
    feed = _IN_PROCESS[peer](sink)
    feed_all(feed, frames)
    assert sink.count == count, f"{peer}: {sink.count} of {count}"


def callgrind_per_message(peer: str, kind: str, low: int = 2000, high: int = 12000, per_stream: int = 8) -> float:
    """Machine instructions per message of ``peer`` in-process, by valgrind's callgrind.

    Two runs that differ only in the number of frames fed (``low``, ``high``);
    the difference over ``high - low`` leaves out start-up and warm-up.
    """
    counts = []
    for count in (low, high):
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
             "--feed", peer, kind, str(count), str(per_stream)],
            capture_output=True, text=True, check=True, cwd=ROOT)
        match = re.search(r"refs:\s*([\d,]+)", result.stderr)
        assert match is not None, result.stderr[-2000:]
        counts.append(int(match.group(1).replace(",", "")))
    return (counts[1] - counts[0]) / (high - low)


def table(results: Results, payloads: dict[str, list[bytes]]) -> str:
    """Markdown: ns/message of each peer per kind, and seed / raw."""
    lines = [f"| stream type | bytes (median) | {SEED} ns | {BASE} ns | {SEED} / {BASE} |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for kind, row in results.items():
        size = statistics.median(len(p) for p in payloads[kind])
        lines.append(f"| {kind} | {size:.0f} | {row[SEED] * 1e9:.0f} | {row[BASE] * 1e9:.0f} | "
                     f"{row[SEED] / row[BASE]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--feed"]:
        peer, kind, count, per_stream = sys.argv[2:6]
        _feed(peer, kind, int(count), int(per_stream))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages per round, peer and kind")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--per-stream", type=int, default=64, help="distinct payloads per stream (8 symbols per type)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per message in-process instead")
    parser.add_argument("--kinds", nargs="*", default=["depthUpdate", "trade", MIX], choices=KINDS,
                        help="kinds counted with --callgrind")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    payloads = build_payloads(args.per_stream)
    check_in_process(payloads[MIX])
    if args.callgrind:
        print("| stream type | " + " | ".join(f"{name} instructions/message" for name in _IN_PROCESS)
              + f" | {SEED} - {BASE} |\n| --- |" + " ---: |" * (len(_IN_PROCESS) + 1))
        for kind in args.kinds:
            counts = [callgrind_per_message(name, kind) for name in _IN_PROCESS]
            print(f"| {kind} | " + " | ".join(f"{c:.0f}" for c in counts) + f" | {counts[0] - counts[1]:+.0f} |")
        return
    with binance_server(args.per_stream) as url:
        results = uvloop.run(loopback(url, args.messages, args.rounds))
    print(f"## Seed-style adapter vs raw picows, loopback: ns/message "
          f"(median of {args.rounds} interleaved rounds x {args.messages} messages)\n")
    print(table(results, payloads))


if __name__ == "__main__":
    main()

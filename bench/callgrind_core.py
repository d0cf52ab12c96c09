"""A deterministic in-process driver of the frame core, for callgrind.

Feeds pre-built frames to the ``FrameHandler`` an adapter's connection runs
(built without a socket, see ``bench/detached.py``): nothing else happens per
frame, so ``valgrind --tool=callgrind`` counts the instructions the core, the
decoder and the handler spend per message. Instruction counts do not depend on
the machine's load, which wall-clock times on a shared machine do.

Cases:
    typed: a ``BinanceWebSocket(typed=True)`` connection, the mix of every
        stream kind (diff depth, partial depth, trades, tickers, klines).
    dict: the same frames through a dict-route ``BinanceWebSocket``.
    mexc: MEXC aggregated-deals pushes through a ``MexcWebSocket``.

Instructions per message = (total with N messages - total with 0) / N, both
runs building the same frames and core:

    python bench/callgrind_core.py --measure typed dict mexc --messages 20000

runs callgrind twice per case and prints the table. One run by hand:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/callgrind_core.py --case typed --messages 20000
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = ("typed", "dict", "mexc")
"""What can be measured, in the table's order."""

_PAYLOADS_PER_STREAM = 16


def _binance(typed: bool) -> tuple[Callable[[Any, Any], Any], list[Any], Callable[[], int]]:
    from bench.binance_payloads import MIX, build_payloads
    from bench.binance_peers import StreamCounter, detached_core, frames_of

    sink = StreamCounter()
    payloads = build_payloads(_PAYLOADS_PER_STREAM)[MIX]
    frames = frames_of(payloads, len(payloads))
    return detached_core(sink, typed).on_ws_frame, frames, lambda: sink.count


def _mexc() -> tuple[Callable[[Any, Any], Any], list[Any], Callable[[], int]]:
    from picows import WSMsgType
    from picows.picows import _make_test_ws_frame

    from bench.detached import DETACHED_URL, open_detached_core
    from bench.mexc_bench import Count, deals_push
    from exchanges.mexc import MexcWebSocket, mexc_config
    from fastws import ExchangeName

    sink = Count()
    ws = MexcWebSocket(ExchangeName("mexc"), mexc_config(DETACHED_URL, stale_timeout=None), sink)
    frames = [_make_test_ws_frame(WSMsgType.BINARY, deals_push(3), True, False)]
    return open_detached_core(ws).on_ws_frame, frames, lambda: sink.count


def run(case: str, messages: int) -> None:
    """Build ``case``'s core and frames, then feed ``messages`` frames in turn."""
    if case == "mexc":
        feed, frames, delivered = _mexc()
    else:
        feed, frames, delivered = _binance(case == "typed")
    # One pass over the frames before counting starts, in both runs: the
    # first message of each stream creates its stats, later ones do not.
    for frame in frames:
        feed(None, frame)
    before = delivered()
    count = len(frames)
    for i in range(messages):
        feed(None, frames[i % count])
    if delivered() - before != messages:
        raise SystemExit(f"{case}: {delivered() - before} of {messages} messages reached the handler")


def _instructions(case: str, messages: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, os.path.abspath(__file__), "--case", case, "--messages", str(messages)],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(result.stdout + result.stderr)
        found = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
        if found is None:
            raise SystemExit(f"no instruction count in callgrind's output:\n{result.stderr}")
        return int(found.group(1))


def measure(cases: list[str], messages: int) -> dict[str, float]:
    """Instructions per message of each case, from two callgrind runs."""
    return {case: (_instructions(case, messages) - _instructions(case, 0)) / messages for case in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=CASES, help="run one case (under callgrind by hand)")
    parser.add_argument("--measure", nargs="+", choices=CASES, help="run callgrind on these cases")
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    if args.case:
        run(args.case, args.messages)
    else:
        for case, per_message in measure(args.measure or list(CASES), args.messages).items():
            print(f"{case:6s} {per_message:10.0f} instructions/message")


if __name__ == "__main__":
    main()

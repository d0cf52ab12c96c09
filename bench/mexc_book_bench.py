"""MEXC order book cost in process: an aggregated depth push into a book, fastws beside its peers.

The stream is ``bench/book_bench.py``'s (a snapshot of ``--levels`` levels per
side and ``--updates`` updates of ~20 levels per side, most near the top),
written as MEXC writes it: a REST snapshot ``{"lastUpdateId", "bids", "asks"}``
and serialized ``PushDataV3ApiWrapper`` pushes with ``publicAggreDepths``
(``fromVersion``/``toVersion``, price and quantity strings without trailing
zeros). Every peer starts each round from the snapshot (untimed) and applies
every push:

- ``fastws book``: ``MexcBookReader.apply_diff`` on the wire bytes (parse,
  stage and commit in one call, as ``book_bench``'s ``JsonBookReader.apply_diff``);
- ``fastws stage+commit``: ``MexcBookReader.stage_diff`` then
  ``commit_staged`` (what the sync does per push, less its version check);
- ``fastws BookSync``: the whole per-push path of ``subscribe_books`` after
  the frame core: ``BookSync.on_frame`` (stage, check the versions, commit,
  check the book is not crossed);
- ``protobuf + Decimal dict``: ``ParseFromString`` (``exchanges.mexc.pb``),
  then a dict of ``Decimal`` per side;
- ``protobuf + order-book``: ``ParseFromString``, then cryptofeed's author's C
  ``order-book`` (PyPI) fed float levels;
- ``protobuf only``: ``ParseFromString`` and nothing else, for reference.

Rounds are interleaved (the order rotates); each figure is the median round
divided by the pushes. Rounds are timed in the thread's CPU time
(``time.thread_time``): on a shared machine a long round (a slow peer's) is
preempted more often than a short one, which wall time would charge to it.
Every book peer is checked against a Decimal reference at the end of the
stream first.

``--callgrind`` also counts, with valgrind, the instructions of the compiled
path per push and per level (``MexcBookReader.read_push`` + ``commit_diff``):
a figure the machine's load does not move.

Usage: python bench/mexc_book_bench.py [--levels N] [--updates N] [--rounds R] [--json] [--callgrind]
``figures()`` returns the same numbers for a report.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.book_bench import DecimalDictBook, OrderBookPackage, Peer, build_stream  # noqa: E402
from exchanges.mexc._fastpb import MexcBookReader  # noqa: E402
from exchanges.mexc.pb import PushDataV3ApiWrapper  # noqa: E402
from fastws.book import BookSync, OrderBook  # noqa: E402

try:
    import order_book
except ImportError:      # the bench extra brings it
    order_book = None

SYMBOL = "BTCUSDT"
CHANNEL = f"spot@public.aggre.depth.v3.api.pb@10ms@{SYMBOL}"
GOAL = 30.0
"""fastws book vs protobuf + Decimal dict: the issue's goal."""


def _mexc_decimal(text: str) -> str:
    """MEXC writes decimals unpadded: ``"1.50000000"`` -> ``"1.5"``, ``"2.00"`` -> ``"2"``."""
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass
class MexcStream:
    """A REST snapshot and the aggregated depth pushes that follow it (``diffs``, as ``book_bench`` names them)."""

    snapshot: bytes
    diffs: list[bytes]
    levels_per_push: float


def build_mexc_stream(levels: int = 2000, updates: int = 2000, seed: int = 1) -> MexcStream:
    """``book_bench``'s stream (~20 levels per side per update) as MEXC's snapshot and pushes."""
    stream = build_stream(levels, updates, seed=seed)
    body = msgspec.json.decode(stream.snapshot)
    snapshot = msgspec.json.encode({
        "lastUpdateId": body["lastUpdateId"],
        "bids": [[_mexc_decimal(p), _mexc_decimal(q)] for p, q in body["bids"]],
        "asks": [[_mexc_decimal(p), _mexc_decimal(q)] for p, q in body["asks"]]})
    pushes = []
    for diff in stream.diffs:
        event = msgspec.json.decode(diff)
        msg = PushDataV3ApiWrapper(channel=CHANNEL, symbol=SYMBOL, sendTime=event["E"])
        depth = msg.publicAggreDepths
        depth.eventType = CHANNEL.rsplit("@", 1)[0]
        depth.fromVersion = str(event["U"])
        depth.toVersion = str(event["u"])
        for side, items in ((depth.bids, event["b"]), (depth.asks, event["a"])):
            for price, qty in items:
                item = side.add()
                item.price = _mexc_decimal(price)
                item.quantity = _mexc_decimal(qty)
        pushes.append(msg.SerializeToString())
    return MexcStream(snapshot, pushes, stream.levels_per_diff)


# ---------------------------------------------------------------- peers

# The peers are ``book_bench.Peer``s: ``reset(snapshot)`` (untimed), ``run(pushes)``, ``top(n)``.
Top = tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]


class FastwsBook(Peer):
    name = "fastws book"

    def __init__(self) -> None:
        self.reader = MexcBookReader()
        self.book = OrderBook(SYMBOL)

    def reset(self, snapshot: bytes) -> None:
        self.book = OrderBook(SYMBOL)
        self.reader.apply_snapshot(self.book, snapshot)

    def run(self, pushes: list[bytes]) -> None:
        apply, book = self.reader.apply_diff, self.book
        for data in pushes:
            apply(book, data)

    def top(self, n: int) -> Optional[Top]:
        return ([(Decimal(p), Decimal(q)) for p, q in self.book.bids_exact(n)],
                [(Decimal(p), Decimal(q)) for p, q in self.book.asks_exact(n)])


class FastwsStageCommit(FastwsBook):
    """``stage_diff`` then ``commit_staged``: two calls per push, as ``BookSync`` makes them."""

    name = "fastws stage+commit"

    def run(self, pushes: list[bytes]) -> None:
        stage, book = self.reader.stage_diff, self.book
        commit = book.commit_staged
        for data in pushes:
            _, last, event_time = stage(book, data)
            commit(last, event_time)


class FastwsSync(Peer):
    """``BookSync.on_frame`` on a live sync: versions checked, crossing checked."""

    name = "fastws BookSync"

    def __init__(self) -> None:
        self.reader = MexcBookReader()
        self.sync: Optional[BookSync] = None
        self.loop = asyncio.new_event_loop()

    def reset(self, snapshot: bytes) -> None:
        async def fetch() -> bytes:
            return snapshot
        if self.sync is not None:
            self.loop.run_until_complete(self.sync.stop())
        sync = BookSync(OrderBook(SYMBOL), self.reader, fetch, on_update=lambda book: None,
                        on_error=self._error)
        self.sync = sync
        self.loop.run_until_complete(self._install(sync, snapshot))

    async def _install(self, sync: BookSync, snapshot: bytes) -> None:
        # Live at the snapshot: its id is where the stream's first push starts.
        self.reader.apply_snapshot(sync.book, snapshot)
        sync._go_live()

    @staticmethod
    def _error(error: Exception) -> None:
        raise AssertionError(f"the sync reported {error}")

    def run(self, pushes: list[bytes]) -> None:
        assert self.sync is not None
        on_frame = self.sync.on_frame
        for data in pushes:
            on_frame(data)

    def top(self, n: int) -> Optional[Top]:
        assert self.sync is not None
        book = self.sync.book
        return ([(Decimal(p), Decimal(q)) for p, q in book.bids_exact(n)],
                [(Decimal(p), Decimal(q)) for p, q in book.asks_exact(n)])

    def close(self) -> None:
        """Stop the sync and close its loop."""
        if self.sync is not None:
            self.loop.run_until_complete(self.sync.stop())
        self.loop.close()


class ProtobufDecimalDict(DecimalDictBook):
    """``book_bench``'s Decimal dict book (the same snapshot), fed from ``ParseFromString``."""

    name = "protobuf + Decimal dict"

    def run(self, pushes: list[bytes]) -> None:
        parse, bids, asks = PushDataV3ApiWrapper.FromString, self.bids, self.asks
        for data in pushes:
            depth = parse(data).publicAggreDepths
            for side, items in ((bids, depth.bids), (asks, depth.asks)):
                for item in items:
                    price, qty = Decimal(item.price), Decimal(item.quantity)
                    if qty == 0:
                        side.pop(price, None)
                    else:
                        side[price] = qty


class ProtobufOrderBook(OrderBookPackage):
    """``book_bench``'s ``order-book`` peer (the same snapshot), fed from ``ParseFromString``."""

    name = "protobuf + order-book"

    def run(self, pushes: list[bytes]) -> None:
        parse, bids, asks = PushDataV3ApiWrapper.FromString, self.book.bids, self.book.asks
        for data in pushes:
            depth = parse(data).publicAggreDepths
            for side, items in ((bids, depth.bids), (asks, depth.asks)):
                for item in items:
                    price, qty = float(item.price), float(item.quantity)
                    if qty == 0:
                        if price in side:
                            del side[price]
                    else:
                        side[price] = qty


class ProtobufOnly(Peer):
    name = "protobuf only"

    def run(self, pushes: list[bytes]) -> None:
        parse = PushDataV3ApiWrapper.FromString
        for data in pushes:
            parse(data)

    def top(self, n: int) -> Optional[Top]:
        return None             # keeps no book


def make_peers() -> list[Peer]:
    """Every peer available here (``order-book`` only when installed)."""
    peers: list[Peer] = [FastwsBook(), FastwsStageCommit(), FastwsSync(), ProtobufDecimalDict()]
    if order_book is not None:
        peers.append(ProtobufOrderBook())
    peers.append(ProtobufOnly())
    return peers


def _normal(top: Top) -> Top:
    return ([(p.normalize(), q.normalize()) for p, q in top[0]], [(p.normalize(), q.normalize()) for p, q in top[1]])


def check(peers: list[Peer], stream: MexcStream, depth: int = 50) -> None:
    """Every book peer ends the stream with the reference's top ``depth`` levels."""
    reference = ProtobufDecimalDict()
    reference.reset(stream.snapshot)
    reference.run(stream.diffs)
    want = _normal(reference.top(depth))
    for peer in peers:
        peer.reset(stream.snapshot)
        peer.run(stream.diffs)
        got = peer.top(depth)
        if got is not None and _normal(got) != want:
            raise AssertionError(f"{peer.name}: book differs from the reference after the stream")


def measure(peers: list[Peer], stream: MexcStream, rounds: int) -> dict[str, float]:
    """Median CPU seconds per push of each peer; each round runs every peer once, in a rotating order."""
    samples: dict[str, list[float]] = {p.name: [] for p in peers}
    for r in range(rounds):
        for peer in peers[r % len(peers):] + peers[:r % len(peers)]:
            peer.reset(stream.snapshot)
            started = time.thread_time()
            peer.run(stream.diffs)
            samples[peer.name].append((time.thread_time() - started) / len(stream.diffs))
    return {name: statistics.median(values) for name, values in samples.items()}


def figures(levels: int = 2000, updates: int = 300, rounds: int = 31) -> dict[str, Any]:
    """Run the benchmark; the figures as a dict (for a report).

    Returns:
        ``{"levels_per_push", "pushes", "rounds", "goal", "peers": {name: {"ns_per_push",
        "ns_per_level", "vs_fastws"}}}``; ``vs_fastws`` is the peer's time over
        the ``fastws book`` time (the goal is on ``protobuf + Decimal dict``).
    """
    stream = build_mexc_stream(levels, updates)
    peers = make_peers()
    try:
        check(peers, stream)
        per_push = measure(peers, stream, rounds)
    finally:
        for peer in peers:
            if isinstance(peer, FastwsSync):
                peer.close()
    base = per_push[FastwsBook.name]
    return {
        "levels_per_push": stream.levels_per_push, "pushes": len(stream.diffs), "rounds": rounds, "goal": GOAL,
        "peers": {name: {"ns_per_push": t * 1e9, "ns_per_level": t * 1e9 / stream.levels_per_push,
                         "vs_fastws": t / base} for name, t in per_push.items()},
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a text table."""
    lines = [f"{result['pushes']} aggregated depth pushes of {result['levels_per_push']:.1f} levels (both sides), "
             f"{result['rounds']} interleaved rounds, medians of CPU time",
             f"{'peer':<26}{'ns/push':>10}{'ns/level':>10}{'vs fastws':>11}"]
    for name, row in result["peers"].items():
        lines.append(f"{name:<26}{row['ns_per_push']:>10.0f}{row['ns_per_level']:>10.1f}{row['vs_fastws']:>10.2f}x")
    ratio = result["peers"][ProtobufDecimalDict.name]["vs_fastws"]
    lines.append(f"goal: protobuf + Decimal dict >= {result['goal']:.0f}x fastws book: {ratio:.1f}x "
                 f"({'met' if ratio >= result['goal'] else 'not met'})")
    return "\n".join(lines)


_COMPILED_PATH = ("*MexcBookReader_read_push*", "*OrderBook_commit_diff*")


def callgrind(levels: int = 2000, updates: int = 300) -> dict[str, float]:
    """Instructions of ``read_push`` + ``commit_diff`` (inclusive) per push and per level, under callgrind."""
    stream = build_mexc_stream(levels, updates)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [f"--toggle-collect={name}" for name in _COMPILED_PATH]
        command += [sys.executable, os.path.abspath(__file__), "--callgrind-child", str(levels), str(updates)]
        subprocess.run(command, check=True, capture_output=True)
        with open(out) as f:
            found = re.search(r"^(?:summary|totals):\s+(\d+)", f.read(), re.M)
    if found is None:
        raise RuntimeError("no totals in the callgrind output")
    total = int(found.group(1))
    return {"instructions_per_push": total / len(stream.diffs),
            "instructions_per_level": total / (stream.levels_per_push * len(stream.diffs))}


def _callgrind_child(levels: int, updates: int) -> None:
    stream = build_mexc_stream(levels, updates)
    peer = FastwsBook()
    peer.reset(stream.snapshot)
    peer.run(stream.diffs)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=2000, help="levels per side in the snapshot")
    parser.add_argument("--updates", type=int, default=300, help="pushes per round")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per push and level")
    parser.add_argument("--callgrind-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.callgrind_child:
        _callgrind_child(*args.callgrind_child)
        return
    result = figures(args.levels, args.updates, args.rounds)
    if args.callgrind:
        result["callgrind"] = callgrind(args.levels, args.updates)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(table(result))
    if args.callgrind:
        counts = result["callgrind"]
        print(f"callgrind: {counts['instructions_per_push']:.0f} instructions per push, "
              f"{counts['instructions_per_level']:.0f} per level (read_push + commit_diff)")


if __name__ == "__main__":
    main()

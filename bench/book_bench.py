"""Order book cost in process: fastws's compiled book beside its peers, one run.

A synthetic but realistic Binance stream: a REST snapshot of ``--levels``
levels per side (tick 0.01, 8-decimal strings as Binance writes them) and
``--updates`` ``depthUpdate`` frames, each changing ~20 levels per side, most
near the top (changes, deletes, new levels, the top moving), a few deep. Every
peer starts each round from the snapshot (untimed) and applies every frame:

- ``fastws book``: ``JsonBookReader.apply_diff`` on the raw bytes (compiled
  fixed-point book, no Python object per level);
- ``msgspec dicts``: ``msgspec.json.decode`` to dicts, no book at all;
- ``msgspec + Decimal dict``: decode, then a dict of ``Decimal`` per side, the
  way cryptofeed keeps levels;
- ``msgspec + order-book``: decode, then cryptofeed's author's C ``order-book``
  (PyPI) fed float levels.

Rounds are interleaved (the peer order rotates); each figure is the median
round divided by the frames. Before timing, every peer's book is checked
against the Decimal reference at the end of the stream. ``--callgrind`` also
counts the instructions of the compiled apply (parse + commit) per level.

Usage: python bench/book_bench.py [--levels N] [--updates N] [--rounds R] [--callgrind]
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import msgspec

from fastws.book import JsonBookReader, OrderBook

try:
    import order_book
except ImportError:      # the bench extra brings it
    order_book = None

SYMBOL = "BTCUSDT"
MID_TICK = 6_000_000          # 60000.00 at a tick of 0.01
QTY_UNIT = 10**8              # quantities in 1e-8


def _price(tick: int) -> str:
    return f"{tick // 100}.{tick % 100:02d}000000"


def _qty(units: int) -> str:
    return f"{units // QTY_UNIT}.{units % QTY_UNIT:08d}"


@dataclass
class Stream:
    """A snapshot and the diffs that follow it, as raw bytes."""

    snapshot: bytes
    diffs: list[bytes]
    levels_per_diff: float
    empty_diff: bytes = b""
    last_id: int = 0


@dataclass
class _Side:
    ticks: dict[int, int] = field(default_factory=dict)   # tick -> qty units
    is_bid: bool = True

    def ranked(self) -> list[int]:
        return sorted(self.ticks, reverse=self.is_bid)


def build_stream(levels: int = 2000, updates: int = 2000, per_side: int = 20, seed: int = 1,
                 deep: float = 0.05) -> Stream:
    """A snapshot of ``levels`` per side and ``updates`` diffs of ~``per_side`` levels per side.

    Levels are 1 to 3 ticks apart. Depths of the changes are exponential from
    the top (mean 8 levels), a fraction ``deep`` (5 %) anywhere in the book; about a quarter of
    the changes delete a level, a quarter add one in a gap nearby (balanced so
    the book keeps its size), the rest change a quantity; one diff in ten moves
    the top (the best level goes or a better one comes).
    """
    rng = random.Random(seed)
    bids, asks = _Side(is_bid=True), _Side(is_bid=False)
    for side, step in ((bids, -1), (asks, 1)):
        tick = MID_TICK + step
        for _ in range(levels):
            side.ticks[tick] = rng.randint(1, 50 * QTY_UNIT)
            tick += step * rng.choice((1, 2, 2, 3))
    update_id = 1_000_000
    snapshot = msgspec.json.encode({
        "lastUpdateId": update_id,
        "bids": [[_price(t), _qty(bids.ticks[t])] for t in bids.ranked()],
        "asks": [[_price(t), _qty(asks.ticks[t])] for t in asks.ranked()]})
    diffs = []
    total = 0
    for _ in range(updates):
        changes: dict[bool, dict[int, int]] = {True: {}, False: {}}
        for side, other in ((bids, asks), (asks, bids)):
            ranked = side.ranked()
            best_other = min(other.ticks) if side.is_bid else max(other.ticks)
            out = changes[side.is_bid]
            if rng.random() < 0.1:           # the top moves
                if rng.random() < 0.5 and len(ranked) > 1:
                    out[ranked[0]] = 0
                else:
                    better = ranked[0] + (1 if side.is_bid else -1)
                    if better != best_other:
                        out[better] = rng.randint(1, 5 * QTY_UNIT)
            count = per_side + rng.randint(-4, 4)
            # Deletes and new levels balance around the snapshot's size.
            delete = 0.25 if len(ranked) > levels else 0.15
            attempts = 0
            while len(out) < count and attempts < 10 * count:
                attempts += 1
                if rng.random() < deep:
                    depth = rng.randrange(len(ranked))
                else:
                    depth = min(int(rng.expovariate(1 / 8)), len(ranked) - 1)
                tick = ranked[depth]
                roll = rng.random()
                if roll < delete:
                    out[tick] = 0
                elif roll < 0.5:
                    # a new level in a gap near that depth, never across the other side
                    new = tick + rng.randint(-3, 3)
                    if new not in side.ticks and (new < best_other if side.is_bid else new > best_other):
                        out[new] = rng.randint(1, 20 * QTY_UNIT)
                else:
                    out[tick] = rng.randint(1, 50 * QTY_UNIT)
            for tick, qty in out.items():
                if qty:
                    side.ticks[tick] = qty
                else:
                    side.ticks.pop(tick, None)
        first = update_id + 1
        update_id += rng.randint(1, 30)
        total += len(changes[True]) + len(changes[False])
        diffs.append(msgspec.json.encode({
            "e": "depthUpdate", "E": 1_700_000_000_000 + update_id, "s": SYMBOL, "U": first, "u": update_id,
            "b": [[_price(t), _qty(q)] for t, q in sorted(changes[True].items(), reverse=True)],
            "a": [[_price(t), _qty(q)] for t, q in sorted(changes[False].items())]}))
    empty = msgspec.json.encode({"e": "depthUpdate", "E": 1, "s": SYMBOL, "U": 1, "u": 1, "b": [], "a": []})
    return Stream(snapshot, diffs, total / updates, empty, update_id)


# ---------------------------------------------------------------- peers

class Peer:
    """Something that keeps (or does not keep) a book from the stream's frames."""

    name = ""

    def reset(self, snapshot: bytes) -> None:
        """Start again from the snapshot (untimed)."""

    def run(self, frames: list[bytes]) -> None:
        """Apply every frame."""
        raise NotImplementedError

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The top ``n`` levels per side, for the correctness check."""
        raise NotImplementedError


class FastwsBook(Peer):
    name = "fastws book"

    def __init__(self) -> None:
        self.reader = JsonBookReader()
        self.book = OrderBook(SYMBOL)

    def reset(self, snapshot: bytes) -> None:
        self.book = OrderBook(SYMBOL)
        self.reader.apply_snapshot(self.book, snapshot)

    def run(self, frames: list[bytes]) -> None:
        apply, book = self.reader.apply_diff, self.book
        for frame in frames:
            apply(book, frame)

    def top(self, n: int) -> tuple[list, list]:
        return ([(Decimal(p), Decimal(q)) for p, q in self.book.bids_exact(n)],
                [(Decimal(p), Decimal(q)) for p, q in self.book.asks_exact(n)])


class MsgspecDicts(Peer):
    name = "msgspec dicts"

    def run(self, frames: list[bytes]) -> None:
        decode = msgspec.json.decode
        for frame in frames:
            decode(frame)

    def top(self, n: int) -> tuple[list, list]:
        raise NotImplementedError("keeps no book")


class DecimalDictBook(Peer):
    name = "msgspec + Decimal dict"

    def reset(self, snapshot: bytes) -> None:
        body = msgspec.json.decode(snapshot)
        self.bids = {Decimal(p): Decimal(q) for p, q in body["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in body["asks"]}

    def run(self, frames: list[bytes]) -> None:
        decode, bids, asks = msgspec.json.decode, self.bids, self.asks
        for frame in frames:
            msg = decode(frame)
            for side, levels in ((bids, msg["b"]), (asks, msg["a"])):
                for p, q in levels:
                    price, qty = Decimal(p), Decimal(q)
                    if qty == 0:
                        side.pop(price, None)
                    else:
                        side[price] = qty

    def top(self, n: int) -> tuple[list, list]:
        return sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n]


class OrderBookPackage(Peer):
    name = "msgspec + order-book"

    def reset(self, snapshot: bytes) -> None:
        body = msgspec.json.decode(snapshot)
        self.book = order_book.OrderBook()
        for p, q in body["bids"]:
            self.book.bids[float(p)] = float(q)
        for p, q in body["asks"]:
            self.book.asks[float(p)] = float(q)

    def run(self, frames: list[bytes]) -> None:
        decode, bids, asks = msgspec.json.decode, self.book.bids, self.book.asks
        for frame in frames:
            msg = decode(frame)
            for side, levels in ((bids, msg["b"]), (asks, msg["a"])):
                for p, q in levels:
                    price, qty = float(p), float(q)
                    if qty == 0:
                        if price in side:
                            del side[price]
                    else:
                        side[price] = qty

    def top(self, n: int) -> tuple[list, list]:
        bids = list(self.book.bids.to_dict().items())[:n]
        asks = list(self.book.asks.to_dict().items())[:n]
        # floats back to exact decimals at the stream's 8 places (its values are such)
        return ([(Decimal(f"{p:.8f}"), Decimal(f"{q:.8f}")) for p, q in bids],
                [(Decimal(f"{p:.8f}"), Decimal(f"{q:.8f}")) for p, q in asks])


class EmptyDiffs(Peer):
    """The fixed cost of one ``apply_diff`` call (an empty diff), to isolate the levels."""

    name = "fastws empty diff"

    def __init__(self, empty: bytes) -> None:
        self.reader = JsonBookReader()
        self.empty = empty
        self.book = OrderBook(SYMBOL, 8, 8)

    def reset(self, snapshot: bytes) -> None:
        self.reader.apply_snapshot(self.book, snapshot)

    def run(self, frames: list[bytes]) -> None:
        apply, book, empty = self.reader.apply_diff, self.book, self.empty
        for _ in frames:
            apply(book, empty)


def make_peers(stream: Stream) -> list[Peer]:
    """Every peer available here (``order-book`` only when installed)."""
    peers: list[Peer] = [FastwsBook(), MsgspecDicts(), DecimalDictBook()]
    if order_book is not None:
        peers.append(OrderBookPackage())
    peers.append(EmptyDiffs(stream.empty_diff))
    return peers


def check(peers: list[Peer], stream: Stream, depth: int = 50) -> None:
    """Every book peer ends the stream with the reference's top ``depth`` levels."""
    reference = DecimalDictBook()
    reference.reset(stream.snapshot)
    reference.run(stream.diffs)
    want = reference.top(depth)
    for peer in peers:
        if isinstance(peer, (MsgspecDicts, EmptyDiffs, DecimalDictBook)):
            continue
        peer.reset(stream.snapshot)
        peer.run(stream.diffs)
        got = peer.top(depth)
        if got != want:
            raise AssertionError(f"{peer.name}: book differs from the reference after the stream")


def measure(peers: list[Peer], stream: Stream, rounds: int,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per frame of each peer, rounds interleaved (order rotates).

    ``clock``: ``time.process_time`` counts this process's CPU time only (the
    benchmark report's choice on a shared machine).
    """
    times: dict[str, list[float]] = {p.name: [] for p in peers}
    for r in range(rounds):
        order = peers[r % len(peers):] + peers[:r % len(peers)]
        for peer in order:
            peer.reset(stream.snapshot)
            start = clock()
            peer.run(stream.diffs)
            times[peer.name].append(clock() - start)
    return {name: statistics.median(t) / len(stream.diffs) for name, t in times.items()}


def table(per_frame: dict[str, float], levels: float) -> str:
    """The benchmark table: ns per update, ns per level, each peer / fastws."""
    base = per_frame[FastwsBook.name]
    empty = per_frame.get(EmptyDiffs.name, 0.0)
    lines = [f"{'peer':<26}{'ns/update':>11}{'ns/level':>10}{'vs fastws':>11}"]
    for name, t in per_frame.items():
        if name == EmptyDiffs.name:
            continue
        lines.append(f"{name:<26}{t * 1e9:>11.0f}{t * 1e9 / levels:>10.1f}{t / base:>10.2f}x")
    lines.append(f"{'fastws, levels only':<26}{'':>11}{(base - empty) * 1e9 / levels:>10.1f}"
                 f"   (update minus an empty diff's {empty * 1e9:.0f} ns)")
    return "\n".join(lines)


# ---------------------------------------------------------------- callgrind

_APPLY_FUNCTIONS = ("*JsonBookReader_read_diff*", "*OrderBook_commit_diff*")


def callgrind_per_level(stream: Stream) -> tuple[float, int]:
    """Instructions of the compiled apply (read_diff + commit_diff, inclusive) per level.

    Returns:
        ``(instructions per level, total instructions)``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        data = os.path.join(tmp, "stream.bin")
        with open(data, "wb") as f:
            f.write(msgspec.msgpack.encode([stream.snapshot, stream.diffs]))
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [f"--toggle-collect={name}" for name in _APPLY_FUNCTIONS]
        command += [sys.executable, os.path.abspath(__file__), "--callgrind-child", data]
        subprocess.run(command, check=True, capture_output=True)
        with open(out) as f:
            totals = re.search(r"^(?:summary|totals):\s+(\d+)", f.read(), re.M)
        assert totals, "no totals in the callgrind output"
        total = int(totals.group(1))
    levels = stream.levels_per_diff * len(stream.diffs)
    return total / levels, total


def _callgrind_child(path: str) -> None:
    with open(path, "rb") as f:
        snapshot, diffs = msgspec.msgpack.decode(f.read())
    peer = FastwsBook()
    peer.reset(snapshot)
    peer.run(diffs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=2000, help="levels per side in the snapshot")
    parser.add_argument("--updates", type=int, default=2000, help="depthUpdate frames per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--deep", type=float, default=0.05, help="fraction of changes anywhere in the book")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per level")
    parser.add_argument("--callgrind-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.callgrind_child:
        _callgrind_child(args.callgrind_child)
        return
    stream = build_stream(args.levels, args.updates, deep=args.deep)
    peers = make_peers(stream)
    check(peers, stream)
    print(f"{args.levels} levels per side ({args.deep:.0%} of changes deep), {args.updates} depthUpdate frames of "
          f"{stream.levels_per_diff:.1f} levels (both sides), {args.rounds} interleaved rounds, medians")
    print(table(measure(peers, stream, args.rounds), stream.levels_per_diff))
    if args.callgrind:
        per_level, total = callgrind_per_level(stream)
        print(f"callgrind: {per_level:.0f} instructions per level of read_diff + commit_diff "
              f"({total} in all)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

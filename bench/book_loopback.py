"""Order books over loopback: per ``depthUpdate`` frame, until the book is updated and the handler called.

A server in its own process (``python bench/book_loopback.py --serve``)
streams Binance combined-stream ``btcusdt@depth@100ms`` frames, ~20 changed
levels per side each (``bench/book_bench.py``'s generator: changes, deletes,
new levels, the top moving), and serves the REST snapshot
(``GET /api/v3/depth``) on a second port. A round is one ``BLAST`` command: the
server writes the connection's next round of frames in one write and the
peer's handler must have seen every update.

The rounds walk a cycle: the generated diffs, then their inverses in reverse
order (each sets the levels it touches back to what they were), so the book
returns to the snapshot at the end of every round and every state in between
is a real, uncrossed book; the update ids go on increasing from round to
round, as a live stream's do. Peers:

- ``fastws book``: ``BinanceWebSocket.subscribe_books`` (the diff stream's own
  route, levels read from the frame's bytes into the compiled book, the sync's
  ``U``/``u`` check), ``handler(book)``;
- ``picows + msgspec + order-book``: a raw picows listener, ``msgspec`` to
  dicts, the ``U``/``u`` check, each level as floats into cryptofeed's
  author's C ``order-book``, ``handler(book)``;
- ``picows + msgspec dicts``: the same listener decoding to dicts, no book,
  ``handler(message)``;
- ``websockets + json + dict book``: the ``websockets`` client (a reader
  task), ``json.loads``, the ``U``/``u`` check, a dict per side (float
  price -> float quantity), ``handler(book)``.

The float peers apply their levels through one small function
(``apply_float_levels``), a Python call per side and frame (~0.1 µs of
their 10-20 µs).

Rounds are interleaved (the peer order rotates); each figure is the median
round over its frames. After the rounds every book peer's top levels must
equal the snapshot's (the cycle's end).

Usage: python bench/book_loopback.py [--levels N] [--updates N] [--rounds R]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator, Optional

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.binance_peers import _ReaderTaskPeer  # noqa: E402
from bench.book_bench import build_stream  # noqa: E402
from bench.peers import Counter  # noqa: E402

SYMBOL = "BTCUSDT"
STREAM = "btcusdt@depth@100ms"
CHECK_LEVELS = 20

PEER_NAMES = ("fastws book", "picows + msgspec + order-book", "picows + msgspec dicts",
              "websockets + json + dict book")
"""The peers, fastws first (the ratios' base)."""


# ------------------------------------------------------------------ the stream
def _levels(side: dict[str, str], changes: list[list[str]]) -> list[list[str]]:
    """Apply ``changes`` (absolute, ``"0"``-ish removes) to ``side``; return the inverse changes."""
    inverse = []
    for price, qty in changes:
        inverse.append([price, side.get(price, "0.00000000")])
        if Decimal(qty) == 0:
            side.pop(price, None)
        else:
            side[price] = qty
    return inverse


def build_cycle(levels: int, updates: int, seed: int = 1) -> tuple[bytes, list[dict[str, Any]], int]:
    """A snapshot and a cycle of ``updates`` diffs (half generated, half their inverses) back to it.

    Returns:
        ``(snapshot bytes, the cycle's diff payloads as dicts, the snapshot's lastUpdateId)``.
    """
    half = max(1, updates // 2)
    stream = build_stream(levels, half, seed=seed)
    snapshot = msgspec.json.decode(stream.snapshot)
    bids = {p: q for p, q in snapshot["bids"]}
    asks = {p: q for p, q in snapshot["asks"]}
    forward = [msgspec.json.decode(diff) for diff in stream.diffs]
    inverses = []
    for diff in forward:
        inverses.append((_levels(bids, diff["b"]), _levels(asks, diff["a"]), diff["u"] - diff["U"]))
    cycle = list(forward)
    last = forward[-1]["u"]
    for inverse_bids, inverse_asks, width in reversed(inverses):
        first, last = last + 1, last + 1 + width
        cycle.append({"e": "depthUpdate", "E": 1_700_000_000_000 + last, "s": SYMBOL, "U": first, "u": last,
                      "b": sorted(inverse_bids, key=lambda level: -float(level[0])),
                      "a": sorted(inverse_asks, key=lambda level: float(level[0]))})
    return stream.snapshot, cycle, snapshot["lastUpdateId"]


def round_frames(cycle: list[dict[str, Any]], snapshot_id: int, index: int) -> list[bytes]:
    """Round ``index``'s combined-stream payloads: the cycle with its ids moved on ``index`` cycles."""
    shift = index * (cycle[-1]["u"] - snapshot_id)
    encode = msgspec.json.Encoder().encode
    frames = []
    for diff in cycle:
        data = dict(diff, U=diff["U"] + shift, u=diff["u"] + shift, E=diff["E"] + shift)
        frames.append(encode({"stream": STREAM, "data": data}))
    return frames


# ------------------------------------------------------------------ the server
async def _serve(levels: int, updates: int, rounds: int) -> None:
    import logging

    import uvloop  # noqa: F401  (the loop is uvloop's: main() runs it)
    from aiohttp import web
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    from bench.server import server_frame
    from exchanges.binance.control import BinanceControl, StreamSet, encode_reply
    from fastws.testing.feed import text_request

    logging.basicConfig(level=logging.ERROR)
    snapshot, cycle, snapshot_id = build_cycle(levels, updates)
    blobs = [b"".join(server_frame(p) for p in round_frames(cycle, snapshot_id, index)) for index in range(rounds)]
    last_ids = [cycle[-1]["u"] + index * (cycle[-1]["u"] - snapshot_id) for index in range(rounds)]
    levels_per_frame = statistics.mean(len(diff["b"]) + len(diff["a"]) for diff in cycle)
    control = BinanceControl(validate=False)

    class Listener(WSListener):
        def __init__(self) -> None:
            super().__init__()
            self.next_round = 0
            self.session = StreamSet()

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            text = text_request(transport, frame)
            if text is None:
                return
            if text == b"BLAST":
                if self.next_round < len(blobs):
                    transport.underlying_transport.write(blobs[self.next_round])
                self.next_round += 1
            else:
                transport.send(WSMsgType.TEXT, encode_reply(control.handle(self.session, text)))

    async def depth(request: web.Request) -> web.Response:
        return web.Response(body=snapshot, content_type="application/json")

    async def ids(request: web.Request) -> web.Response:
        return web.json_response({"snapshot": snapshot_id, "rounds": last_ids, "frames": len(cycle),
                                  "levels_per_frame": levels_per_frame})

    app = web.Application()
    app.router.add_get("/api/v3/depth", depth)
    app.router.add_get("/bench/ids", ids)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = await ws_create_server(lambda request: Listener(), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


@contextmanager
def book_server(levels: int, updates: int, rounds: int) -> Iterator[tuple[str, str]]:
    """Start the server in its own process for ``rounds`` rounds; yield ``(ws_url, rest_url)``."""
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--levels", str(levels),
                                "--updates", str(updates), "--rounds", str(rounds)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2:
            raise RuntimeError("the book server did not start")
        yield f"ws://127.0.0.1:{line[0]}", f"http://127.0.0.1:{line[1]}"
    finally:
        process.kill()
        process.wait()


# ------------------------------------------------------------------ the peers
class FastwsBookPeer:
    """``BinanceWebSocket.subscribe_books``: the client's own sync and compiled book."""

    name = PEER_NAMES[0]

    def __init__(self, url: str, rest_url: str) -> None:
        from exchanges.binance import BinanceWebSocket, binance_config
        from fastws import ExchangeName

        self.sink = Counter()
        self.errors: list[Any] = []
        config = binance_config(url, rest_url=rest_url, book_depth=1000, stale_timeout=None)
        self.ws = BinanceWebSocket(ExchangeName("binance"), config, lambda message: None, self.errors.append)
        self.book: Any = None

    async def open(self) -> None:
        await self.ws.start()
        self.book = (await self.ws.subscribe_books([SYMBOL], self.sink.on_message))[SYMBOL]

    def blast(self) -> None:
        # The core's own send: a benchmark command is not paced like Binance's control messages.
        self.ws._core.send_text(b"BLAST")  # type: ignore[union-attr]

    def last_id(self) -> int:
        return int(self.book.update_id) if self.book.valid else -1

    def top(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return ([(Decimal(p), Decimal(q)) for p, q in self.book.bids_exact(CHECK_LEVELS)],
                [(Decimal(p), Decimal(q)) for p, q in self.book.asks_exact(CHECK_LEVELS)])

    def check(self) -> None:
        assert not self.errors, f"{self.name}: {self.errors[:3]}"

    async def close(self) -> None:
        await self.ws.stop()


def _float_top(bids: Any, asks: Any) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """The top levels of float books as exact decimals at the stream's 8 places."""
    def exact(levels: list[tuple[float, float]]) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(f"{p:.8f}"), Decimal(f"{q:.8f}")) for p, q in levels[:CHECK_LEVELS]]
    return exact(bids), exact(asks)


def apply_float_levels(side: Any, levels: list[list[str]]) -> None:
    """Absolute levels as floats into a side (an ``order-book`` side or a dict): quantity 0 removes."""
    for p, q in levels:
        price, qty = float(p), float(q)
        if qty == 0:
            if price in side:
                del side[price]
        else:
            side[price] = qty


class _RawPeer:
    """A raw picows connection to the combined stream; ``listener`` does the per-frame work."""

    name = ""

    def __init__(self, url: str, snapshot: bytes) -> None:
        self.url = f"{url}/stream?streams={STREAM}"
        self.snapshot = snapshot
        self.sink = Counter()
        self.transport: Any = None
        self.listener: Any = None

    def make_listener(self) -> Any:
        raise NotImplementedError

    async def open(self) -> None:
        from picows import ws_connect
        self.transport, self.listener = await ws_connect(self.make_listener, self.url)

    def blast(self) -> None:
        from picows import WSMsgType
        self.transport.send(WSMsgType.TEXT, b"BLAST")

    def last_id(self) -> int:
        return int(self.listener.last)

    def check(self) -> None:
        assert not self.listener.gaps, f"{self.name}: {self.listener.gaps} gaps"

    async def close(self) -> None:
        self.transport.disconnect()
        await self.transport.wait_disconnected()


def _order_book_listener(sink: Counter, snapshot: bytes) -> Any:
    import order_book
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    text = WSMsgType.TEXT

    class OrderBookListener(WSListener):
        """msgspec to dicts, the ``U``/``u`` check, float levels into ``order-book``."""

        def __init__(self) -> None:
            super().__init__()
            body = msgspec.json.decode(snapshot)
            self.book = order_book.OrderBook()
            for p, q in body["bids"]:
                self.book.bids[float(p)] = float(q)
            for p, q in body["asks"]:
                self.book.asks[float(p)] = float(q)
            self.last = body["lastUpdateId"]
            self.gaps = 0
            self.decode = msgspec.json.Decoder().decode

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != text:
                return
            data = self.decode(frame.get_payload_as_memoryview()).get("data")
            if data is None:
                return
            if data["U"] != self.last + 1:
                self.gaps += 1
            self.last = data["u"]
            book = self.book
            apply_float_levels(book.bids, data["b"])
            apply_float_levels(book.asks, data["a"])
            sink.on_message(book)

    return OrderBookListener()


class OrderBookPeer(_RawPeer):
    """picows + msgspec + the ``order-book`` package, float levels."""

    name = PEER_NAMES[1]

    def make_listener(self) -> Any:
        return _order_book_listener(self.sink, self.snapshot)

    def top(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        book = self.listener.book
        return _float_top(list(book.bids.to_dict().items()), list(book.asks.to_dict().items()))


def _dict_listener(sink: Counter, snapshot: bytes) -> Any:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    text = WSMsgType.TEXT

    class DictListener(WSListener):
        """msgspec to dicts, handed on: no book."""

        def __init__(self) -> None:
            super().__init__()
            self.last = msgspec.json.decode(snapshot)["lastUpdateId"]
            self.gaps = 0
            self.decode = msgspec.json.Decoder().decode

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != text:
                return
            message = self.decode(frame.get_payload_as_memoryview())
            data = message.get("data")
            if data is not None:
                self.last = data["u"]
                sink.on_message(message)

    return DictListener()


class DictsPeer(_RawPeer):
    """picows + msgspec to dicts, no book."""

    name = PEER_NAMES[2]

    def make_listener(self) -> Any:
        return _dict_listener(self.sink, self.snapshot)

    top = None      # keeps no book


class WebsocketsPeer(_ReaderTaskPeer):
    """The ``websockets`` client: a reader task, ``json.loads``, a dict per side."""

    name = PEER_NAMES[3]

    def __init__(self, url: str, snapshot: bytes) -> None:
        self.url = f"{url}/stream?streams={STREAM}"
        body = json.loads(snapshot)
        self.bids = {float(p): float(q) for p, q in body["bids"]}
        self.asks = {float(p): float(q) for p, q in body["asks"]}
        self.last = body["lastUpdateId"]
        self.gaps = 0
        self.sink = Counter()
        self.ws: Any = None
        self.reader: Optional[asyncio.Task[None]] = None

    async def open(self) -> None:
        import websockets
        self.ws = await websockets.connect(self.url, compression=None, max_size=2**24, max_queue=None)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        loads, handler = json.loads, self.sink.on_message
        bids, asks = self.bids, self.asks
        async for text in self.ws:
            data = loads(text).get("data")
            if data is None:
                continue
            if data["U"] != self.last + 1:
                self.gaps += 1
            self.last = data["u"]
            apply_float_levels(bids, data["b"])
            apply_float_levels(asks, data["a"])
            handler(self)

    async def blast(self) -> None:
        await self.ws.send("BLAST")

    def last_id(self) -> int:
        return int(self.last)

    def top(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return _float_top(sorted(self.bids.items(), reverse=True), sorted(self.asks.items()))

    def check(self) -> None:
        assert not self.gaps, f"{self.name}: {self.gaps} gaps"


def make_peers(url: str, rest_url: str, snapshot: bytes) -> list[Any]:
    """One of each peer, fastws first (``order-book`` only when installed)."""
    peers: list[Any] = [FastwsBookPeer(url, rest_url)]
    try:
        import order_book  # noqa: F401
        peers.append(OrderBookPeer(url, snapshot))
    except ImportError:     # the bench extra brings it
        pass
    peers += [DictsPeer(url, snapshot), WebsocketsPeer(url, snapshot)]
    return peers


# ------------------------------------------------------------------ the rounds
async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.005)


async def _round(peer: Any, frames: int, last_id: int, timeout: float = 60.0) -> tuple[float, float]:
    """One ``BLAST``: wall and CPU seconds until the handler has seen all ``frames``; the peer ends at ``last_id``.

    The CPU time is this process's (user + system): on a shared machine it
    leaves out the time other processes held the cores.
    """
    done = peer.sink.arm(frames)
    cpu, start = time.process_time(), time.perf_counter()
    sent = peer.blast()
    if sent is not None:
        await sent
    await asyncio.wait_for(done, timeout)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert peer.last_id() == last_id, f"{peer.name}: at {peer.last_id()}, expected {last_id}"
    peer.check()
    return elapsed, cpu


async def _fetch(url: str) -> bytes:
    import aiohttp
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.read()


@dataclass
class BookLoopback:
    """What one run measured: per peer, median seconds per frame.

    Attributes:
        wall: Wall-clock seconds per frame (send ``BLAST`` to the last handler call).
        cpu: This process's CPU seconds per frame over the same rounds.
        levels_per_frame: Levels per frame, both sides.
        rounds: Rounds measured per peer.
        frames: Frames per round.
    """

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    levels_per_frame: float = 0.0
    rounds: int = 0
    frames: int = 0


@dataclass
class Session:
    """Peers connected and warmed up on a server: what a round needs.

    Attributes:
        peers: The peers, fastws first; each has had its warm-up round.
        frames: Frames per round.
        last_ids: The last update id of each of the server's rounds.
        levels_per_frame: Levels per frame, both sides (mean).
    """

    peers: list[Any]
    frames: int
    last_ids: list[int]
    levels_per_frame: float
    rounds_done: dict[str, int] = field(default_factory=dict)

    async def round(self, peer: Any) -> tuple[float, float]:
        """``peer``'s next round (the server's next for its connection): wall and CPU seconds per frame."""
        index = self.rounds_done.get(peer.name, 1)
        if index >= len(self.last_ids):
            raise RuntimeError(f"the server was started for {len(self.last_ids)} rounds")
        self.rounds_done[peer.name] = index + 1
        elapsed, used = await _round(peer, self.frames, self.last_ids[index])
        return elapsed / self.frames, used / self.frames


async def open_session(url: str, rest_url: str, names: Optional[list[str]] = None) -> Session:
    """Connect the peers (``names``: some of ``PEER_NAMES``, default all) and give each its warm-up round."""
    ids = json.loads(await _fetch(f"{rest_url}/bench/ids"))
    snapshot = await _fetch(f"{rest_url}/api/v3/depth?symbol={SYMBOL}&limit=1000")
    peers = [peer for peer in make_peers(url, rest_url, snapshot) if names is None or peer.name in names]
    session = Session(peers, ids["frames"], ids["rounds"], ids["levels_per_frame"])
    for peer in peers:
        await peer.open()
    for peer in peers:      # warm-up; fastws syncs (its first diff fetches the snapshot)
        peer.sink.arm(-1)
        sent = peer.blast()
        if sent is not None:
            await sent
        await _until(lambda: peer.last_id() == session.last_ids[0], 60.0, f"{peer.name} warm-up")
    return session


async def close_session(session: Session) -> None:
    """Close every peer of ``session``."""
    for peer in session.peers:
        await peer.close()


async def measure(url: str, rest_url: str, rounds: int) -> BookLoopback:
    """Median seconds per frame of every peer over ``rounds`` interleaved rounds (after a warm-up one).

    The server must have been started for ``rounds + 1`` rounds.
    """
    session = await open_session(url, rest_url)
    peers = session.peers
    try:
        wall: dict[str, list[float]] = {peer.name: [] for peer in peers}
        cpu: dict[str, list[float]] = {peer.name: [] for peer in peers}
        for index in range(rounds):
            shift = index % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                elapsed, used = await session.round(peer)
                wall[peer.name].append(elapsed)
                cpu[peer.name].append(used)
        check(peers)
        return BookLoopback({name: statistics.median(values) for name, values in wall.items()},
                            {name: statistics.median(values) for name, values in cpu.items()},
                            session.levels_per_frame, rounds, session.frames)
    finally:
        await close_session(session)


def check(peers: list[Any]) -> None:
    """Every book peer ends a round with the same top levels as fastws's exact book."""
    books = [peer for peer in peers if peer.top is not None]
    want = books[0].top()
    assert len(want[0]) == CHECK_LEVELS and len(want[1]) == CHECK_LEVELS
    for peer in books[1:]:
        assert peer.top() == want, f"{peer.name}: book differs from fastws's"


def run(levels: int, updates: int, rounds: int) -> BookLoopback:
    """Start the server for ``rounds`` (+ a warm-up) and measure every peer."""
    import uvloop
    with book_server(levels, updates, rounds + 1) as (url, rest_url):
        return uvloop.run(measure(url, rest_url, rounds))


def table(result: BookLoopback) -> str:
    """ns per frame of each peer (wall and CPU) and how many times fastws is faster."""
    wall_base, cpu_base = result.wall[PEER_NAMES[0]], result.cpu[PEER_NAMES[0]]
    lines = [f"{'peer':<34}{'wall ns':>9}{'fastws faster':>15}{'cpu ns':>9}{'fastws faster':>15}"]
    for name, seconds in result.wall.items():
        used = result.cpu[name]
        lines.append(f"{name:<34}{seconds * 1e9:>9.0f}{seconds / wall_base:>14.2f}x"
                     f"{used * 1e9:>9.0f}{used / cpu_base:>14.2f}x")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=1000, help="levels per side of the snapshot")
    parser.add_argument("--updates", type=int, default=2000, help="depthUpdate frames per round")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import uvloop
        uvloop.run(_serve(args.levels, args.updates, args.rounds))
        return
    result = run(args.levels, args.updates, args.rounds)
    print(f"{args.levels} levels per side, {result.frames} depthUpdate frames per round "
          f"(~{result.levels_per_frame:.0f} levels each, both sides), {args.rounds} interleaved rounds, medians")
    print(table(result))


if __name__ == "__main__":
    main()

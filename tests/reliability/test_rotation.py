"""Make before break: a planned replacement of the connection loses and repeats nothing.

The simulators close every connection after a few seconds (their
``max_connection_age``); the client's own ``max_connection_age`` is shorter,
so it replaces each connection before the server cuts it, while the market
moves. Every message carries the step it belongs to (update ids, trade ids),
so the test checks from the delivered messages alone that each stream got
every step exactly once, in order.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import msgspec
import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from exchanges.mexc import MexcWebSocket, mexc_config
from exchanges.mexc.simulator import MexcSimulator
from fastws import ExchangeAPIError, ExchangeName
from tests.conftest import open_fds, other_tasks, until

SYMBOLS = ("btcusdt", "ethusdt")
# One message per stream per market step (trades: one per trade).
PER_STEP = ("depth", "bookTicker", "depth5", "ticker", "kline_1m")
BINANCE_STREAMS = [f"{s}@{kind}" for s in SYMBOLS for kind in (*PER_STEP, "trade", "aggTrade")]


class Recorder:
    """Remembers every delivered message's payload (as builtins) per stream, and every error."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[ExchangeAPIError] = []

    def on_dict(self, message: dict[str, Any]) -> None:
        self.data.setdefault(message["stream"], []).append(message["data"])

    def on_typed(self, stream: str, message: Any) -> None:
        self.data.setdefault(stream, []).append(msgspec.to_builtins(message))

    def on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(error)

    def count(self) -> int:
        return sum(len(v) for v in self.data.values())


async def drive(sim: Any, seconds: float, period: float = 0.004) -> int:
    """Step the market every ``period`` s for ``seconds``; return the steps taken."""
    steps = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sim.step(1)
        steps += 1
        await asyncio.sleep(period)
    return steps


async def settle(recorder: Recorder, timeout: float = 15.0, quiet: float = 0.3) -> None:
    """Wait until no more messages arrive (the last step's frames are in): none for ``quiet`` s.

    Generous for a loaded machine, where a pause of 0.1 s may come between
    two frames.
    """
    deadline = time.monotonic() + timeout
    last, since = recorder.count(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if recorder.count() != last:
            last, since = recorder.count(), time.monotonic()


async def nothing_left(tasks_before: set[asyncio.Task[Any]], fds_before: int) -> None:
    """Every task the test started has ended and every socket is closed (within a bound for a loaded machine)."""
    await until(lambda: other_tasks() - tasks_before == set() and open_fds() <= fds_before, 10.0,
                "every task ended and every socket closed")


def assert_consecutive(ids: list[int], what: str) -> None:
    assert ids, f"{what}: nothing delivered"
    assert ids == list(range(ids[0], ids[0] + len(ids))), f"{what}: not every id exactly once, in order"


def check_binance(recorder: Recorder) -> None:
    for symbol in SYMBOLS:
        depth = recorder.data[f"{symbol}@depth"]
        for before, after in zip(depth, depth[1:]):
            assert after["U"] == before["u"] + 1, f"{symbol}@depth: updates lost or repeated"
        steps = [d["u"] for d in depth]
        # Snapshot streams: one message per step, the same steps as the depth stream.
        assert [m["u"] for m in recorder.data[f"{symbol}@bookTicker"]] == steps
        assert [m["lastUpdateId"] for m in recorder.data[f"{symbol}@depth5"]] == steps
        assert len(recorder.data[f"{symbol}@ticker"]) == len(steps)
        # Klines: one open kline per step, plus the closed one when a minute ends.
        klines = [(m["E"], m["k"]["t"]) for m in recorder.data[f"{symbol}@kline_1m"]]
        assert len(set(klines)) == len(klines), f"{symbol}@kline_1m: repeated"
        assert sum(not m["k"]["x"] for m in recorder.data[f"{symbol}@kline_1m"]) == len(steps)
        assert_consecutive([m["t"] for m in recorder.data[f"{symbol}@trade"]], f"{symbol}@trade")
        assert_consecutive([m["a"] for m in recorder.data[f"{symbol}@aggTrade"]], f"{symbol}@aggTrade")


@pytest.mark.parametrize("typed", [False, True], ids=["dict", "typed"])
async def test_binance_rotation_loses_and_repeats_nothing(binance_simulator_factory: Any, typed: bool) -> None:
    sim: BinanceSimulator = await binance_simulator_factory(rate=0, max_connection_age=1.5)
    recorder = Recorder()
    tasks_before, fds_before = other_tasks(), open_fds()
    config = binance_config(sim.url, max_connection_age=0.5, healthy_after=0.05, reconnect_delay=0.05)
    handler: Callable[..., None] = recorder.on_typed if typed else recorder.on_dict
    ws = BinanceWebSocket(ExchangeName("binance"), config, handler, recorder.on_error, typed=typed)
    async with ws:
        await ws.subscribe(BINANCE_STREAMS)
        await drive(sim, 2.6)
        await settle(recorder)
        metrics = ws.metrics
        health = await ws.health_check()
    assert recorder.errors == []
    check_binance(recorder)
    assert metrics["rotations"] >= 3
    assert sim.connection_count == metrics["rotations"] + 1
    assert metrics["overlap_dropped"] > 0          # the connections did overlap
    assert ws.gaps == [] and ws.sequence_gaps == []
    assert health["gaps"] == []
    await nothing_left(tasks_before, fds_before)


async def test_shutdown_notice_replaces_the_connection_without_a_gap(binance_simulator_factory: Any) -> None:
    sim: BinanceSimulator = await binance_simulator_factory(rate=0)
    recorder = Recorder()
    config = binance_config(sim.url, healthy_after=0.05, reconnect_delay=0.05)
    async with BinanceWebSocket(ExchangeName("binance"), config, recorder.on_dict, recorder.on_error) as ws:
        await ws.subscribe(BINANCE_STREAMS)
        driver = asyncio.ensure_future(drive(sim, 1.5))
        await asyncio.sleep(0.3)
        sim.server_shutdown(delay=0.5, connection=sim.connections[0])
        await driver
        await settle(recorder)
        assert ws.metrics["rotations"] == 1
        assert sim.connection_count == 2
    assert recorder.errors == []
    check_binance(recorder)
    assert ws.gaps == []


async def test_without_make_before_break_the_gap_is_reported(binance_simulator_factory: Any) -> None:
    sim: BinanceSimulator = await binance_simulator_factory(rate=0, max_connection_age=1.5)
    recorder = Recorder()
    config = binance_config(sim.url, max_connection_age=0.5, healthy_after=0.05, reconnect_delay=0.05,
                            make_before_break=False)
    async with BinanceWebSocket(ExchangeName("binance"), config, recorder.on_dict, recorder.on_error) as ws:
        await ws.subscribe(["btcusdt@depth"])
        await drive(sim, 1.2)
        await settle(recorder)
        assert ws.metrics["rotations"] == 0
    assert ws.gaps and all("max_connection_age" in g.reason for g in ws.gaps)


async def test_a_replacement_that_cannot_connect_falls_back_to_reconnecting(
        binance_simulator: BinanceSimulator, fault_proxy: Any) -> None:
    """New connections are refused when the replacement is due: the old one closes, the client reconnects."""
    sim = binance_simulator
    proxy = await fault_proxy("127.0.0.1", sim.port)
    recorder = Recorder()
    config = binance_config(proxy.url(), max_connection_age=0.4, healthy_after=0.05, reconnect_delay=0.05)
    async with BinanceWebSocket(ExchangeName("binance"), config, recorder.on_dict, recorder.on_error) as ws:
        await ws.subscribe(["btcusdt@depth"])
        proxy.refuse(0.6)
        await until(lambda: bool(ws.gaps) and ws.gaps[-1].end is not None and ws.is_connected, 20.0,
                    "reconnected")
        assert ws.metrics["rotations"] == 0
        sim.step(1)
        await until(lambda: len(recorder.data.get("btcusdt@depth", [])) == 1, 10.0)
    assert recorder.errors and all("connection lost during the WebSocket handshake" in e.message
                                   for e in recorder.errors)
    assert "max_connection_age" in ws.gaps[0].reason


async def test_stop_during_a_replacement_leaves_nothing_behind(binance_simulator_factory: Any) -> None:
    sim: BinanceSimulator = await binance_simulator_factory(rate=0)
    recorder = Recorder()
    tasks_before, fds_before = other_tasks(), open_fds()
    config = binance_config(sim.url, max_connection_age=0.2, healthy_after=0.05, overlap_timeout=10.0)
    ws = BinanceWebSocket(ExchangeName("binance"), config, recorder.on_dict, recorder.on_error)
    await ws.start()
    await ws.subscribe(["btcusdt@depth"])
    sim.step(2)
    await sim.wait_connections(2, timeout=10.0)     # the replacement is open; the overlap lasts
    await ws.stop()
    await nothing_left(tasks_before, fds_before)
    await until(lambda: all(not c.is_open for c in sim.connections), 10.0, "the server saw every connection close")


async def test_mexc_rotation_loses_and_repeats_nothing(mexc_simulator_factory: Any) -> None:
    """A witness client that never rotates sees every push: the rotating one must see the same ones."""
    sim: MexcSimulator = await mexc_simulator_factory(rate=0)
    channels = [f"spot@public.aggre.{kind}.v3.api.pb@100ms@{s.upper()}"
                for s in SYMBOLS for kind in ("depth", "deals", "bookTicker")]
    rotating, witness = Recorder(), Recorder()

    def on_push(recorder: Recorder) -> Callable[[dict[str, Any]], None]:
        return lambda push: recorder.data.setdefault(push["channel"], []).append(push)

    fast = mexc_config(sim.ws_url(), max_connection_age=0.5, healthy_after=0.05, reconnect_delay=0.05)
    async with MexcWebSocket(ExchangeName("mexc"), mexc_config(sim.ws_url()), on_push(witness),
                             witness.on_error) as reference, \
            MexcWebSocket(ExchangeName("mexc"), fast, on_push(rotating), rotating.on_error) as ws:
        await reference.subscribe(channels)
        await ws.subscribe(channels)
        await drive(sim, 2.6)
        await settle(rotating)
        await settle(witness)
        metrics = ws.metrics
    assert rotating.errors == [] and witness.errors == []
    assert metrics["rotations"] >= 3 and metrics["overlap_dropped"] > 0
    assert ws.gaps == [] and ws.sequence_gaps == []
    for channel in channels:
        got, seen = rotating.data[channel], witness.data[channel]
        assert len(got) > 100
        start = seen.index(got[0])
        assert got == seen[start:], f"{channel}: pushes lost, repeated or reordered"
    for symbol in SYMBOLS:
        depth = [m["publicAggreDepths"] for m in rotating.data[f"spot@public.aggre.depth.v3.api.pb@100ms@{symbol.upper()}"]]
        for before, after in zip(depth, depth[1:]):
            assert int(after["fromVersion"]) == int(before["toVersion"]) + 1

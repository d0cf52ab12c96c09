"""Redundant connections (``redundancy=2``): first arrival wins, one path's faults cost nothing.

Each test runs a BinanceWebSocket with two paths to one BinanceSimulator, each
path through a FaultProxy of its own, and checks what the handler received:
every depth update id range continues the previous one (``U == previous u + 1``)
and every trade id follows the previous one, so a message lost or delivered
twice fails the test, whatever the path that brought it.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ConnectionState, ExchangeName
from fastws.errors import ExchangeTimeoutError, SequenceGapError
from fastws.testing import FaultProxy
from tests.conftest import until
from tests.integration.test_binance import Sink
from tests.integration.test_binance_book import Books, agrees, stepping
from tests.reliability.test_proxy_faults import nothing_left_behind

pytestmark = pytest.mark.asyncio

STREAMS = ["btcusdt@depth", "ethusdt@trade", "bnbusdt@depth"]
BOUND = 10.0


def check_continuity(messages: list[Any]) -> dict[str, int]:
    """Every depth diff continues the previous one and trade ids follow each other; counts per stream."""
    last: dict[str, int] = {}
    counts: dict[str, int] = {}
    for message in messages:
        stream, data = message["stream"], message["data"]
        counts[stream] = counts.get(stream, 0) + 1
        if data.get("e") == "depthUpdate":
            first, final = data["U"], data["u"]
        elif data.get("e") == "trade":
            first = final = data["t"]
        else:
            continue
        if stream in last:
            assert first == last[stream] + 1, f"{stream}: {first} after {last[stream]} (lost or repeated)"
        last[stream] = final
    return counts


@contextlib.asynccontextmanager
async def redundant(sim: BinanceSimulator, **overrides: Any) -> AsyncIterator[tuple[BinanceWebSocket, Sink,
                                                                                     list[FaultProxy]]]:
    """A client with two paths, each through its own FaultProxy, subscribed to STREAMS."""
    async with nothing_left_behind(sim), FaultProxy("127.0.0.1", sim.port) as p0, \
            FaultProxy("127.0.0.1", sim.port) as p1:
        overrides.setdefault("reconnect_delay", 0.05)
        overrides.setdefault("max_reconnect_delay", 0.25)
        overrides.setdefault("healthy_after", 0.05)
        overrides.setdefault("timeout", 2.0)
        sink = Sink()
        config = binance_config(p0.url(), urls=[p1.url()], redundancy=2, **overrides)
        ws = BinanceWebSocket(ExchangeName("binance"), config, sink.on_message, sink.on_error)
        try:
            await ws.start()
            await asyncio.wait_for(ws.subscribe(STREAMS), BOUND)
            await until(lambda: sum(len(c.streams) for c in sim.connections if c.is_open) >= 2 * len(STREAMS),
                        BOUND, "both paths subscribed")
            yield ws, sink, [p0, p1]
        finally:
            await ws.stop()


async def paths(ws: BinanceWebSocket) -> list[dict[str, Any]]:
    health = await ws.health_check()
    return list(health["redundancy"][0]["paths"])


async def test_both_paths_deliver_each_message_once_in_order(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=0)
    async with redundant(sim) as (ws, sink, _):
        for _ in range(20):
            sim.step(1)
            await asyncio.sleep(0.002)
        sent = sum(sim.connections[0].sent_counts.values())
        await until(lambda: len(sink.messages) >= sent, BOUND, "every update delivered")
        await asyncio.sleep(0.1)
        assert len(sink.messages) == sent          # once each, not twice
        check_continuity(sink.messages)
        health = await paths(ws)
        assert [p["path"] for p in health] == [0, 1]
        assert sum(p["first_arrivals"] for p in health) == sent
        # Each copy was either first or late: both paths carried everything.
        assert all(p["first_arrivals"] + p["late_copies"] == sent for p in health)
        assert all(p["state"] == "connected" and p["live"] for p in health)
        assert ws.metrics["redundant_dropped"] == sent
        assert ws.gaps == [] and not sink.errors


@pytest.mark.parametrize("fault", ["cut", "reset", "blackhole"])
async def test_one_path_lost_loses_and_repeats_nothing(fault: str, binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=100)
    keepalive = {"ping_interval": 0.3, "pong_timeout": 0.3, "stale_timeout": None} if fault == "blackhole" else {}
    async with redundant(sim, **keepalive) as (ws, sink, proxies):
        await until(lambda: len(sink.messages) > 30, BOUND)
        accepted = proxies[0].connections_accepted
        getattr(proxies[0], fault)()
        if fault == "blackhole":
            # Detected by the keepalive, then a new connection through the same proxy.
            await until(lambda: proxies[0].connections_accepted > accepted, BOUND, "path 0 reconnected")
            proxies[0].restore()
        else:
            await until(lambda: proxies[0].connections_accepted > accepted, BOUND, "path 0 reconnected")
        count = len(sink.messages)
        await until(lambda: len(sink.messages) > count + 50, BOUND, "the feed goes on")
        await until(lambda: ws.state is ConnectionState.CONNECTED, BOUND)
        counts = check_continuity(sink.messages)
        assert set(counts) == set(STREAMS)
        # The handler saw no gap: no feed gap, no sequence gap, no lost update.
        assert ws.gaps == []
        assert ws.sequence_gaps == []
        assert not [e for e in sink.errors if isinstance(e, SequenceGapError)]
        health = await paths(ws)
        assert health[1]["first_arrivals"] > 0            # path 1 carried the feed meanwhile
        assert ws.metrics["reconnections"] >= 1


async def test_a_delayed_path_leaves_the_first_arrivals_to_the_fast_one(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=50)
    async with redundant(sim) as (ws, sink, proxies):
        proxies[1].delay(0.02, jitter=0.01)
        await until(lambda: len(sink.messages) > 20, BOUND)
        before = await paths(ws)
        count = len(sink.messages)
        await until(lambda: len(sink.messages) > count + 100, BOUND)
        after = await paths(ws)
        check_continuity(sink.messages)
        fast = after[0]["first_arrivals"] - before[0]["first_arrivals"]
        slow = after[1]["first_arrivals"] - before[1]["first_arrivals"]
        assert fast >= 0.9 * (fast + slow), (fast, slow)
        assert after[1]["lag_p50_us"] is not None and after[1]["lag_p50_us"] > 10_000     # >= ~20 ms behind
        assert ws.gaps == []


async def test_a_path_more_than_the_ring_behind_repeats_nothing(binance_simulator_factory: Any) -> None:
    # Trades and book tickers carry no sequence the core checks: only the
    # path's place in the stream tells a copy 200 messages old from a new one.
    sim = await binance_simulator_factory(rate=0)
    streams = ["ethusdt@trade", "bnbusdt@bookTicker"]
    async with redundant(sim, redundancy_check_interval=60.0) as (ws, sink, proxies):
        await ws.unsubscribe(["btcusdt@depth", "bnbusdt@depth"])
        await ws.subscribe(streams)
        sim.step(2)
        await until(lambda: len(sink.messages) > 0, BOUND)
        proxies[1].delay(0.5)
        for _ in range(30):
            sim.step(10)
            await asyncio.sleep(0.001)
        sent = sum(c.sent_counts.get(s, 0) for c in sim.connections[:1] for s in streams)
        await asyncio.sleep(1.0)       # every delayed copy arrived
        await until(lambda: len(sink.messages) >= sent, BOUND)
        await asyncio.sleep(0.1)
        assert len(sink.messages) == sent
        check_continuity(sink.messages)
        health = await paths(ws)
        # Path 1's first copies came more than the ring behind: it waited, never delivered them.
        assert health[1]["first_arrivals"] == 0 and health[1]["takeovers"] == 0
        assert health[1]["dropped_catching_up"] + health[1]["late_copies"] + health[1]["behind_copies"] == sent
        assert health[0]["first_arrivals"] == sent


async def test_a_path_far_behind_is_replaced_without_a_gap(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=100)
    async with redundant(sim, redundancy_max_lag=0.05, redundancy_check_interval=0.2) as (ws, sink, proxies):
        await until(lambda: len(sink.messages) > 20, BOUND)
        accepted = proxies[1].connections_accepted
        proxies[1].delay(0.3)
        await until(lambda: proxies[1].connections_accepted > accepted, BOUND, "path 1 replaced")
        proxies[1].delay(0.0)
        health = await paths(ws)
        assert health[1]["replaced"] >= 1
        count = len(sink.messages)
        await until(lambda: len(sink.messages) > count + 50, BOUND)
        check_continuity(sink.messages)
        assert ws.gaps == [] and ws.sequence_gaps == []


async def test_both_paths_lost_is_a_gap_reported_as_today(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=0)
    # A direct client keeps the streams published while both paths are down.
    witness_sink = Sink()
    witness = BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url), witness_sink.on_message)
    await witness.start()
    await witness.subscribe(STREAMS)
    try:
        async with redundant(sim) as (ws, sink, proxies):
            sim.step(3)
            await until(lambda: len(sink.messages) >= len(witness_sink.messages) > 0, BOUND)
            for proxy in proxies:
                proxy.refuse(0.5)
                proxy.cut()
            await until(lambda: bool(ws.gaps), BOUND, "a gap opened")
            # Updates published while both paths are down are lost: the depth streams say so.
            for _ in range(5):
                sim.step(1)
                await asyncio.sleep(0.01)
            await until(lambda: ws.gaps[-1].end is not None and ws.state is ConnectionState.CONNECTED, BOUND,
                        "the gap closed")
            gap = ws.gaps[-1]
            assert "every redundant connection is down" in gap.reason
            assert len(ws.gaps) == 1
            await until(lambda: sum(len(c.streams) for c in sim.connections if c.is_open) == 3 * len(STREAMS),
                        BOUND, "both paths subscribed again")
            sim.step(3)
            await until(lambda: {g.stream for g in ws.sequence_gaps} >= {"btcusdt@depth", "bnbusdt@depth"}, BOUND,
                        "the lost depth updates reported")
            # Reported once per stream, by whichever path delivered first after the gap.
            assert len([g for g in ws.sequence_gaps if g.stream == "btcusdt@depth"]) == 1
    finally:
        await witness.stop()


async def test_unsubscribe_and_stop_reach_every_path(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=0)
    async with redundant(sim) as (ws, sink, _):
        await ws.unsubscribe(["ethusdt@trade"])
        open_connections = [c for c in sim.connections if c.is_open]
        assert len(open_connections) == 2
        assert all(set(c.streams) == {"btcusdt@depth", "bnbusdt@depth"} for c in open_connections)
    await until(lambda: not any(c.is_open for c in sim.connections), BOUND, "every path closed")


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_the_config_refuses_what_the_core_cannot_carry() -> None:
    with pytest.raises(ValueError, match="redundancy"):
        binance_config("ws://127.0.0.1:1", redundancy=9)
    with pytest.raises(ValueError, match="redundancy"):
        binance_config("ws://127.0.0.1:1", redundancy=0)
    with pytest.raises(ValueError, match="url"):
        binance_config("ws://127.0.0.1:1", redundancy=2, urls=["http://x"])
    config = binance_config("ws://127.0.0.1:1", redundancy=3, urls=["ws://127.0.0.1:2"])
    assert config.urls == ("ws://127.0.0.1:2",)


async def test_a_message_that_does_not_parse_is_reported_once(binance_simulator_factory: Any) -> None:
    # Every path receives the same bad frame: the first to bring it reports it,
    # like any other message; the copies are dropped as copies.
    sim = await binance_simulator_factory(rate=0)
    async with redundant(sim) as (ws, sink, _):
        sim.step(1)
        await until(lambda: len(sink.messages) > 0, BOUND)
        sim.send_malformed()
        await until(lambda: len(sink.errors) > 0, BOUND, "the bad frame reported")
        sim.step(1)
        count = sum(c.sent_counts.get(s, 0) for c in sim.connections[:1] for s in STREAMS)
        await until(lambda: len(sink.messages) >= count, BOUND, "the next updates")
        await asyncio.sleep(0.1)
        assert [type(e).__name__ for e in sink.errors] == ["InvalidMessageError"], sink.errors
        check_continuity(sink.messages)
        # Every copy is accounted for: the first reported, the other dropped as a copy.
        metrics = ws.metrics
        assert metrics["parse_errors"] == 1, metrics
        assert metrics["redundant_dropped"] == len(sink.messages) + 1


class HeldTrades:
    """An async trade handler whose first call waits until released; it records what it got, and overlaps."""

    def __init__(self) -> None:
        self.trades: list[int] = []
        self.release = asyncio.Event()
        self.inside = 0
        self.overlaps = 0

    async def on_trade(self, message: dict[str, Any]) -> None:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        try:
            self.trades.append(message["data"]["t"])
            if len(self.trades) == 1:
                await self.release.wait()
        finally:
            self.inside -= 1


def owner_path(ws: BinanceWebSocket) -> int:
    """The path whose core runs the held handler's Task."""
    group = ws._redundancy
    assert group is not None
    owners = [i for i, c in enumerate(group.clients) if c._core is not None and c._core.pending_tasks()]
    assert len(owners) == 1, owners
    return owners[0]


async def hold_first_trade(ws: BinanceWebSocket, sim: BinanceSimulator, held: HeldTrades) -> int:
    """Subscribe btcusdt@trade to ``held`` on both paths, publish one trade; the path holding it."""
    await ws.subscribe(["btcusdt@trade"], handler=held.on_trade)
    await until(lambda: sum(len(c.streams) for c in sim.connections if c.is_open) >= 2 * (len(STREAMS) + 1),
                BOUND, "both paths subscribed")
    sim.step(1)
    await until(lambda: len(held.trades) == 1, BOUND, "the first trade")
    return owner_path(ws)


async def step(sim: BinanceSimulator, steps: int) -> None:
    for _ in range(steps):
        sim.step(1)
        await asyncio.sleep(0.002)


async def test_a_stream_behind_its_handler_waits_on_every_path(binance_simulator_factory: Any) -> None:
    # The handler of btcusdt@trade is held on its first trade: the later trades
    # wait for it whichever path brings them first (lossless: in order, once
    # each, never a second call while the first is suspended).
    sim = await binance_simulator_factory(rate=0)
    held = HeldTrades()
    async with redundant(sim) as (ws, sink, proxies):
        owner = await hold_first_trade(ws, sim, held)
        # The other path brings the next trades first.
        proxies[owner].delay(0.03)
        await step(sim, 40)
        await asyncio.sleep(0.1)
        assert held.trades[1:] == [] and held.overlaps == 0
        held.release.set()
        last = sim.market.symbol("BTCUSDT").last_trade_id
        await until(lambda: bool(held.trades) and held.trades[-1] == last, BOUND, "every trade")
        await asyncio.sleep(0.05)
        assert held.trades == list(range(held.trades[0], last + 1)) and held.overlaps == 0
        check_continuity(sink.messages)
        assert ws.gaps == []


async def test_a_path_lost_while_its_stream_waits_loses_nothing(binance_simulator_factory: Any) -> None:
    # The path whose Task holds the handler is cut: the trades waiting behind
    # the handler were delivered by that path (the other's copies dropped), so
    # they must still reach the handler, in order, once each.
    sim = await binance_simulator_factory(rate=0)
    held = HeldTrades()
    async with redundant(sim) as (ws, sink, proxies):
        await hold_first_trade(ws, sim, held)
        await step(sim, 20)
        await asyncio.sleep(0.1)
        owner = owner_path(ws)
        accepted = proxies[owner].connections_accepted
        proxies[owner].cut()
        await until(lambda: proxies[owner].connections_accepted > accepted, BOUND, "the path reconnected")
        await step(sim, 10)
        held.release.set()
        last = sim.market.symbol("BTCUSDT").last_trade_id
        await until(lambda: bool(held.trades) and held.trades[-1] == last, BOUND, "every trade")
        await asyncio.sleep(0.05)
        assert held.trades == list(range(held.trades[0], last + 1)) and held.overlaps == 0
        assert ws.gaps == []


async def test_paths_replaced_at_max_connection_age_leave_no_gap(binance_simulator_factory: Any) -> None:
    # Both paths connect together, so they come of age together: one waits
    # until the other is back and subscribed, so that one always delivers.
    sim = await binance_simulator_factory(rate=100)
    async with redundant(sim, max_connection_age=1.0) as (ws, sink, proxies):
        await until(lambda: all(p.connections_accepted >= 3 for p in proxies), BOUND * 2,
                    "each path replaced twice")
        count = len(sink.messages)
        await until(lambda: len(sink.messages) > count + 20, BOUND, "the feed goes on")
        check_continuity(sink.messages)
        assert ws.gaps == [] and ws.sequence_gaps == []
        assert not [e for e in sink.errors if isinstance(e, SequenceGapError)]


async def test_a_stream_muted_on_every_path_is_reported_once_and_flows_again(
        binance_simulator_factory: Any) -> None:
    # The simulator mutes ethusdt@depth@100ms on every connection: the cadence
    # watchdog sees it silent (the paths share its counts); one report, the
    # stream flows again on both paths, its missed updates one sequence gap,
    # and no path is replaced for it.
    sim = await binance_simulator_factory(rate=50)
    async with redundant(sim, cadence_floor=0.5, redundancy_check_interval=0.2) as (ws, sink, proxies):
        muted = "ethusdt@depth@100ms"
        await ws.subscribe([muted])
        await until(lambda: sum(1 for m in sink.messages if m["stream"] == muted) >= 25, BOUND)
        sim.mute_stream(muted)
        await until(lambda: muted not in sim.muted_streams, BOUND, "the muted stream resubscribed")
        count = sum(1 for m in sink.messages if m["stream"] == muted)
        await until(lambda: sum(1 for m in sink.messages if m["stream"] == muted) > count + 100, BOUND,
                    "the muted stream flowing again")
        await asyncio.sleep(1.0)       # a second watchdog, or the path checker, would have acted by now
        reports = [e for e in sink.errors if isinstance(e, ExchangeTimeoutError)]
        assert len(reports) == 1 and muted in reports[0].message, reports
        assert [g.stream for g in ws.sequence_gaps] == [muted]
        health = await paths(ws)
        assert [p["replaced"] for p in health] == [0, 0]
        assert all(p["first_arrivals"] + p["late_copies"] > 0 for p in health)
        assert ws.gaps == [] and [p.connections_accepted for p in proxies] == [1, 1]
        # Resubscribed alone on each path, once.
        for server in [c for c in sim.connections if c.is_open]:
            assert [(r["method"], r["params"]) for r in server.requests if muted in r.get("params", [])] == [
                ("SUBSCRIBE", [muted]), ("UNSUBSCRIBE", [muted]), ("SUBSCRIBE", [muted])]
        depth = [m for m in sink.messages if m["stream"] == muted]
        after = depth[-100:]
        assert all(b["data"]["U"] == a["data"]["u"] + 1 for a, b in zip(after, after[1:]))


class TwoPerConnection(BinanceWebSocket):
    """A pool of connections of two streams each."""

    max_streams_per_connection = 2

    def _new_member(self) -> "TwoPerConnection":
        member = TwoPerConnection(self.exchange, self.config, self._message_handler, self._error_handler)
        member._url = self._url
        member.add_state_listener(self._on_connection_state)
        return member


async def test_a_pool_of_redundant_shards_delivers_once_and_retires_a_shard_with_its_paths(
        binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=0)
    sink = Sink()
    streams = ["btcusdt@depth", "ethusdt@trade", "bnbusdt@depth", "btcusdt@trade"]
    async with nothing_left_behind(sim):
        config = binance_config(sim.url, redundancy=2, reconnect_delay=0.05, healthy_after=0.05)
        ws = TwoPerConnection(ExchangeName("binance"), config, sink.on_message, sink.on_error)
        async with ws:
            await ws.subscribe(streams)
            await until(lambda: sum(len(c.streams) for c in sim.connections if c.is_open) == 2 * len(streams),
                        BOUND, "two shards, each on two paths")
            assert len([c for c in sim.connections if c.is_open]) == 4
            for _ in range(20):
                sim.step(1)
                await asyncio.sleep(0.002)
            sent = sum(c.sent_counts.get(s, 0) for c in sim.connections for s in streams) // 2
            await until(lambda: len(sink.messages) >= sent, BOUND, "every update")
            await asyncio.sleep(0.1)
            assert len(sink.messages) == sent
            check_continuity(sink.messages)
            health = await ws.health_check()
            assert [len(g["paths"]) for g in health["redundancy"]] == [2, 2]
            # The second shard's streams unsubscribed: it is retired, both its paths closed.
            member_streams = ws._members[0].subscriptions
            await ws.unsubscribe(member_streams)
            await until(lambda: len([c for c in sim.connections if c.is_open]) == 2, BOUND,
                        "the retired shard's two connections closed")
            assert not ws._members
        assert not sink.errors and ws.gaps == []
    await until(lambda: not any(c.is_open for c in sim.connections), BOUND, "every path closed")


async def test_binance_books_over_redundant_paths(binance_simulator_factory: Any) -> None:
    # Path 0 20 ms behind path 1: each book update applied and handed to the
    # book handler once, whichever path brought it; the books equal the
    # simulator's; path 0 cut: the books stay valid (no resync).
    sim = await binance_simulator_factory(rate=0)
    books = Books()
    symbols = ["BTCUSDT", "ETHUSDT"]
    async with redundant(sim, rest_url=sim.rest_url, book_depth=100) as (ws, sink, proxies), \
            stepping(sim) as stepper:
        proxies[0].delay(0.02)
        await ws.subscribe_books(symbols, books.on_book)
        for _ in range(2):
            await asyncio.sleep(0.1)
            await agrees(sim, stepper, ws, symbols)
        accepted = proxies[0].connections_accepted
        proxies[0].cut()
        await until(lambda: proxies[0].connections_accepted > accepted, BOUND, "path 0 reconnected")
        await agrees(sim, stepper, ws, symbols)
        health = await ws.health_check()
        for symbol in symbols:
            ids = [i for s, i, _ in books.updates if s == symbol]
            assert len(ids) > 10 and ids == sorted(set(ids)), f"{symbol}: an update applied twice"
            assert health["books"][symbol]["resyncs"] == 0
        assert all(valid for _, _, valid in books.updates), "a book invalidated by one path's loss"
        assert health["redundancy"][0]["paths"][1]["first_arrivals"] > 0
    assert books.errors == []

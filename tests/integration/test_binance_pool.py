"""Pooling, pacing and sequence edge cases of BinanceWebSocket against BinanceSimulator."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from exchanges.binance import BinanceWebSocket, ConnectionAttemptLimiter, DepthUpdate, binance_config
from exchanges.binance import client as binance_client
from exchanges.binance.simulator import BinanceSimulator
from fastws import (ConnectionFailedError, ConnectionState, ExchangeName, SequenceGapError,
                    SubscriptionRejectedError)
from tests.conftest import other_tasks
from tests.integration.test_binance import Sink, client


class SmallPool(BinanceWebSocket):
    """Two streams per connection, so that pools grow with a handful of streams."""

    max_streams_per_connection = 2


def small(sim: BinanceSimulator, sink: Sink, **overrides: Any) -> SmallPool:
    overrides.setdefault("reconnect_delay", 0.05)
    return SmallPool(ExchangeName("binance"), binance_config(sim.url, **overrides), sink.on_message, sink.on_error)


def server_loads(sim: BinanceSimulator) -> list[int]:
    return sorted(len(c.streams) for c in sim.connections)


async def test_concurrent_subscribes_never_overfill_a_connection(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with small(sim, sink) as ws:
        await asyncio.gather(ws.subscribe(["a@trade", "b@trade", "c@trade"]),
                             ws.subscribe(["d@trade", "e@trade", "f@trade"]))
        assert server_loads(sim) == [2, 2, 2]
        assert sorted(ws.subscriptions) == sorted(sim.subscribed())
        assert sink.errors == []


async def test_a_rejected_batch_leaves_the_accepted_batches_tracked(binance_simulator: BinanceSimulator) -> None:
    sink = Sink()
    async with client(binance_simulator, sink, subscription_batch_size=1) as ws:
        with pytest.raises(SubscriptionRejectedError):
            await ws.subscribe(["btcusdt@trade", "btcusdt@nonsense", "ethusdt@trade"])
        assert ws.subscriptions == ["btcusdt@trade", "ethusdt@trade"]
        assert binance_simulator.subscribed() == {"btcusdt@trade", "ethusdt@trade"}
        await ws.unsubscribe(["btcusdt@trade", "ethusdt@trade"])
        assert binance_simulator.subscribed() == set()


async def test_pacing_holds_across_a_reconnection(binance_simulator: BinanceSimulator) -> None:
    """Subscribes queued behind the rate limit when the connection drops must not
    add to the new connection's resubscribe."""
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe(["btcusdt@trade"])
        queued = [asyncio.ensure_future(ws.subscribe([f"q{i}usdt@trade"])) for i in range(6)]
        await asyncio.sleep(0.5)
        sim.drop(1001)
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
        # Each queued subscribe succeeded or was cut by the drop; nothing else
        # (no timeout, no rate-limit error), and every stream is tracked and
        # restored on the new connection.
        assert all(o is None or isinstance(o, ConnectionFailedError) for o in outcomes), outcomes
        assert set(ws.subscriptions) == {"btcusdt@trade", *(f"q{i}usdt@trade" for i in range(6))}
        await sim.wait_subscribed(ws.subscriptions)
        await asyncio.sleep(1.0)
    assert sim.violations == [] and sim.max_incoming_in_window <= 5


async def test_stop_during_a_growing_subscribe_leaves_nothing(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    tasks_before = other_tasks()
    ws = small(sim, sink)
    await ws.start()
    await ws.subscribe(["a@trade", "b@trade"])
    growing = asyncio.ensure_future(ws.subscribe(["c@trade", "d@trade", "e@trade"]))
    await asyncio.sleep(0)
    await ws.stop()
    await asyncio.gather(growing, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert ws.state is ConnectionState.CLOSED and ws._members == []
    assert [c for c in sim.connections if c.is_open] == []
    assert other_tasks() - tasks_before == set()


async def test_a_member_that_cannot_connect_is_reported_and_dropped(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    ws = small(sim, sink, max_reconnect_attempts=1, timeout=1.0)
    make_member = ws._new_member

    def unreachable_member() -> BinanceWebSocket:
        member = make_member()
        member._url = "ws://127.0.0.1:1/stream"      # nothing listens there
        return member

    ws._new_member = unreachable_member  # type: ignore[method-assign]
    async with ws:
        with pytest.raises(ConnectionFailedError):
            await ws.subscribe(["a@trade", "b@trade", "c@trade"])
        assert ws._members == []
        assert ws.subscriptions == ["a@trade", "b@trade"] == sorted(sim.subscribed())


async def test_pool_totals_keep_a_retired_members_counts(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with small(sim, sink) as ws:
        await ws.subscribe(["a@trade", "b@trade", "c@trade"])
        sim.step(5)
        await sink.wait(lambda: len(sink.messages) >= 5)
        await asyncio.sleep(0.05)
        before = ws.metrics
        await ws.unsubscribe(["c@trade"])
        after = ws.metrics
        assert ws._members == []
        assert after["messages_delivered"] >= before["messages_delivered"]
        assert after["latency_us"]["p50"] is not None


class RecordingLimiter(ConnectionAttemptLimiter):
    """A limiter that notes when it let each attempt through."""

    def __init__(self, limit: int, window: float) -> None:
        super().__init__(limit, window)
        self.granted: list[float] = []

    async def acquire(self) -> None:
        await super().acquire()
        self.granted.append(time.monotonic())


async def test_the_attempt_limit_waits_without_failing_the_connection(binance_simulator: BinanceSimulator,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sim = binance_simulator
    sink = Sink()
    ws = client(sim, sink, timeout=0.3, max_reconnect_attempts=2)
    # One attempt per second, for this simulator's endpoint only; the module's table is restored after.
    limiter = RecordingLimiter(limit=1, window=1.0)
    monkeypatch.setitem(binance_client._ATTEMPTS, f"127.0.0.1:{sim.port}", limiter)
    async with ws:
        await ws.subscribe(["btcusdt@trade"])
        sim.drop(1001)
        await sim.wait_connections(2, timeout=5.0)
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=5.0)
        # Both attempts went through the limiter, the second a whole window after
        # the first: longer than the 0.3 s connect timeout, which did not count the wait.
        assert len(limiter.granted) == 2
        assert limiter.granted[1] - limiter.granted[0] >= 1.0 - 0.002
        assert [e for e in sink.errors if e.code == 408] == []
        assert ws.metrics["reconnections"] == 1


async def test_unsubscribe_then_subscribe_again_reports_no_gap(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe(["btcusdt@depth", "btcusdt@trade"])   # the trade stream keeps btc moving
        sim.step(3)
        await ws.unsubscribe(["btcusdt@depth"])
        sim.step(5)
        await ws.subscribe(["btcusdt@depth"])
        sim.step(3)
        await sink.wait(lambda: sum(1 for m in sink.messages if m["stream"] == "btcusdt@depth") == 6)
        assert [e for e in sink.errors if isinstance(e, SequenceGapError)] == []


async def test_a_routed_stream_in_another_layout_still_reaches_its_handler_typed(
        binance_simulator: BinanceSimulator) -> None:
    sink, depth = Sink(), Sink()
    async with client(binance_simulator, sink, typed=True) as ws:
        await ws.subscribe(["btcusdt@depth"], handler=depth.on_message)
        # Not Binance's compact layout (a space): misses the fast route.
        binance_simulator.send_raw(b'{"stream": "btcusdt@depth", "data": {"e":"depthUpdate","E":1,"s":"BTCUSDT",'
                                   b'"U":1,"u":2,"b":[],"a":[]}}')
        await depth.wait(lambda: len(depth.messages) == 1)
        stream, message = depth.messages[0]
        assert stream == "btcusdt@depth" and isinstance(message, DepthUpdate) and message.final_update_id == 2
        assert sink.messages == []

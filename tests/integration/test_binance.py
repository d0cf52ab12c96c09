"""BinanceWebSocket end to end against BinanceSimulator on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import msgspec
import pytest

from exchanges.binance import BinanceWebSocket, DepthUpdate, binance_config
from exchanges.binance.messages import AggTrade, BookTicker, Kline, MiniTicker, PartialDepth, Ticker24h, Trade
from exchanges.binance.simulator import BinanceSimulator
from fastws import (ConnectionState, ExchangeAPIError, ExchangeName, SequenceGapError, StreamType,
                    SubscriptionRejectedError)
from tests.conftest import open_fds, other_tasks, until

DEPTH = ["btcusdt@depth", "ethusdt@depth@100ms"]
TYPES = {
    "btcusdt@depth": (StreamType.ORDERBOOK, DepthUpdate),
    "btcusdt@depth5": (StreamType.ORDERBOOK, PartialDepth),
    "btcusdt@depth10@100ms": (StreamType.ORDERBOOK, PartialDepth),
    "btcusdt@trade": (StreamType.TRADES, Trade),
    "btcusdt@aggTrade": (StreamType.TRADES, AggTrade),
    "btcusdt@bookTicker": (StreamType.TICKER, BookTicker),
    "btcusdt@ticker": (StreamType.TICKER, Ticker24h),
    "btcusdt@miniTicker": (StreamType.TICKER, MiniTicker),
    "btcusdt@kline_1m": (StreamType.KLINE, Kline),
}


class Sink:
    """Message and error handlers that remember what they got."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[ExchangeAPIError] = []

    def on_message(self, *args: Any) -> None:
        self.messages.append(args if len(args) > 1 else args[0])

    def on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(error)

    async def wait(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"condition not met after {timeout} s"
            await asyncio.sleep(0.005)


def client(sim: BinanceSimulator, sink: Sink, typed: bool = False, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("healthy_after", 0.05)
    config = binance_config(sim.url, **overrides)
    return BinanceWebSocket(ExchangeName("binance"), config, sink.on_message, sink.on_error, typed=typed)


async def test_subscribe_ack_receive_and_unsubscribe(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe(DEPTH)
        assert sim.subscribed() == set(DEPTH)
        assert sim.connections[0].path.startswith("/stream")
        sim.step(20)
        await sink.wait(lambda: len(sink.messages) == 40)
        assert {m["stream"] for m in sink.messages} == set(DEPTH)
        assert all(m["data"]["e"] == "depthUpdate" for m in sink.messages)
        await ws.unsubscribe(DEPTH[:1])
        assert sim.subscribed() == set(DEPTH[1:])
        assert ws.subscriptions == DEPTH[1:]
        health = await ws.health_check()
        stream = health["streams"]["ethusdt@depth@100ms"]
        assert stream["messages"] == 20 and stream["type"] == "orderbook"
        assert stream["last_sequence"] > 0 and stream["sequence_gaps"] == 0
        assert stream["event_latency_ms"]["p50"] is not None and stream["messages_per_second"] > 0
        # acks are control messages, never handed to the handler
        assert health["metrics"]["control_messages"] >= 2
    assert sink.errors == []


async def test_rejection_carries_binance_code_and_text(binance_simulator: BinanceSimulator) -> None:
    sink = Sink()
    async with client(binance_simulator, sink) as ws:
        # A name Binance does not serve is refused by name before it is sent
        # (issue 17); what Binance itself refuses carries its code and text.
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe(["btcusdt@nonsense"])
        assert info.value.code == 403 and info.value.rejected_streams == ["btcusdt@nonsense"]
        assert info.value.exchange_code is None and "btcusdt@nonsense" in info.value.message
        binance_simulator.reject_next_subscription(code=2, msg="Invalid request: rejected by test")
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe(["btcusdt@trade"])
        assert info.value.exchange_message == "Invalid request: rejected by test"
        assert ws.subscriptions == [] and binance_simulator.subscribed() == set()
        await ws.subscribe(["btcusdt@trade"])
        assert ws.subscriptions == ["btcusdt@trade"]


@pytest.mark.parametrize("typed", [False, True])
async def test_every_stream_type_is_classified(binance_simulator: BinanceSimulator, typed: bool) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink, typed=typed) as ws:
        await ws.subscribe(list(TYPES))
        sim.step(30)
        await sink.wait(lambda: ws._core is not None and set(ws._core.stream_stats()) >= set(TYPES))
        stats = ws._core.stream_stats()  # type: ignore[union-attr]
        for name, (stream_type, struct) in TYPES.items():
            assert stats[name].stream_type is stream_type, name
        if typed:
            by_stream = {s: type(m) for s, m in sink.messages}
            assert by_stream == {name: struct for name, (_, struct) in TYPES.items()}


async def test_typed_and_dict_routes_give_the_same_content(binance_simulator: BinanceSimulator) -> None:
    """Two clients on one simulator get the same frames: one decodes dicts, one structs."""
    sim = binance_simulator
    dict_sink, typed_sink = Sink(), Sink()
    async with client(sim, dict_sink) as plain, client(sim, typed_sink, typed=True) as typed:
        await plain.subscribe(list(TYPES))
        await typed.subscribe(list(TYPES))
        sim.step(25)
        total = sum(sim.sent_counts.values())
        assert total > 0 and total % 2 == 0
        await dict_sink.wait(lambda: len(dict_sink.messages) == total // 2)
        await typed_sink.wait(lambda: len(typed_sink.messages) == total // 2)
    dicts = [(m["stream"], m["data"]) for m in dict_sink.messages]
    typed_as_dicts = [(s, msgspec.to_builtins(m)) for s, m in typed_sink.messages]
    assert {s for s, _ in dicts} == set(TYPES)
    assert typed_as_dicts == dicts


async def test_typed_route_per_stream_handler(binance_simulator: BinanceSimulator) -> None:
    sink, depth_sink = Sink(), Sink()
    async with client(binance_simulator, sink, typed=True) as ws:
        await ws.subscribe(["btcusdt@depth"], handler=depth_sink.on_message)
        await ws.subscribe(["btcusdt@trade"])
        binance_simulator.step(10)
        await depth_sink.wait(lambda: len(depth_sink.messages) == 10)
        assert all(s == "btcusdt@depth" and isinstance(m, DepthUpdate) for s, m in depth_sink.messages)
        assert all(s == "btcusdt@trade" for s, _ in sink.messages)
        # A frame of a stream without a typed payload takes the dict route,
        # and reaches the handler with the same (stream, message) signature.
        count = len(sink.messages)
        binance_simulator.send_raw(b'{"stream":"btcusdt@avgPrice","data":{"e":"avgPrice","E":1,"p":"1"}}')
        await sink.wait(lambda: len(sink.messages) == count + 1)
        assert sink.messages[-1] == ("btcusdt@avgPrice", {"stream": "btcusdt@avgPrice",
                                                         "data": {"e": "avgPrice", "E": 1, "p": "1"}})


async def test_sequence_gaps_are_reported(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink, typed=True) as ws:
        await ws.subscribe(["btcusdt@depth"])
        sim.step(5)
        sim.skip_sequence(3)
        sim.step(8)
        await sink.wait(lambda: len(sink.messages) == 10)
        updates = [m for _, m in sink.messages]
        jumps = [b.first_update_id - a.final_update_id - 1 for a, b in zip(updates, updates[1:])]
        assert sorted(jumps)[-1] > 0 and jumps.count(0) == len(jumps) - 1
        (gap,) = ws.sequence_gaps
        assert gap.stream == "btcusdt@depth" and gap.missing == max(jumps)
        errors = [e for e in sink.errors if isinstance(e, SequenceGapError)]
        assert len(errors) == 1 and errors[0].code == 409 and errors[0].missing == gap.missing
        health = await ws.health_check()
        assert health["streams"]["btcusdt@depth"]["missing_sequences"] == gap.missing
        assert health["sequence_gaps"][0]["missing"] == gap.missing


async def test_limits_are_kept_even_if_the_config_asks_for_more(binance_simulator: BinanceSimulator) -> None:
    sink = Sink()
    ws = client(binance_simulator, sink, max_messages_per_second=50.0, max_connection_age=None)
    assert ws.config.max_messages_per_second <= 3.0
    assert ws.config.max_connection_age is not None and ws.config.max_connection_age < 24 * 3600
    await ws.stop()


async def test_pooling_and_pacing_with_3000_streams(binance_simulator_factory: Any) -> None:
    """3000 streams at once: three connections, and no connection ever breaks 5 msg/s."""
    # The server pings every second here (Binance: every 20 s); each pong counts.
    sim = await binance_simulator_factory(rate=0, ping_interval=1.0, pong_timeout=2.0)
    sink = Sink()
    names = [f"s{i:04d}usdt@trade" for i in range(3000)]
    before_fds = open_fds()
    async with client(sim, sink, subscription_timeout=15.0) as ws:
        await asyncio.wait_for(ws.subscribe(names), 30)
        assert len(sim.connections) == 3
        assert sorted(len(c.streams) for c in sim.connections) == [952, 1024, 1024]
        assert sim.subscribed() == set(names)
        assert ws.subscriptions == names
        health = await ws.health_check()
        assert len(health["connections"]) == 3 and health["is_connected"]
        assert health["metrics"]["pool_connections"] == 3
        await asyncio.sleep(1.2)    # server pings answered by the auto-pong
        assert sim.pongs_received > 0 and sim.pong_timeouts == 0
    assert sim.violations == []
    assert sim.max_incoming_in_window <= 5
    assert ws.state is ConnectionState.CLOSED
    await asyncio.sleep(0.05)
    assert open_fds() <= before_fds


async def test_server_pings_are_answered_and_the_connection_lives(binance_simulator_factory: Any) -> None:
    # Pings 50 times as often as Binance's (each pong counts toward the 5/s limit).
    sim = await binance_simulator_factory(rate=0, ping_interval=0.4, pong_timeout=0.3)
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe(["btcusdt@trade"])
        await asyncio.sleep(2.0)
        assert sim.pings_sent >= 4 and sim.pongs_received >= sim.pings_sent - 1
        assert sim.pong_timeouts == 0 and sim.connection_count == 1
        assert ws.metrics["reconnections"] == 0


FAULTS: dict[str, Callable[[BinanceSimulator], None]] = {
    "drop 1001": lambda sim: sim.drop(1001),
    "close 1011": lambda sim: sim.close_with(1011, "internal"),
    "close 1008": lambda sim: sim.close_with(1008, "policy"),
    "reset": lambda sim: sim.reset(),
    # A shutdown notice replaces the connection without a gap:
    # tests/reliability/test_rotation.py.
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_resubscribes_after_each_fault(binance_simulator: BinanceSimulator, fault: str) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe(DEPTH)
        FAULTS[fault](sim)
        await sim.wait_connections(2)
        await sim.wait_subscribed(DEPTH)
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=5)
        sim.step(3)
        await sink.wait(lambda: len(sink.messages) >= 6)
        assert ws.metrics["reconnections"] >= 1
        assert ws.gaps and ws.gaps[0].end is not None


async def test_mute_is_detected_as_stale_and_healed(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink, stale_timeout=0.3) as ws:
        await ws.subscribe(DEPTH)
        sim.mute()
        await sim.wait_connections(2)
        await sim.wait_subscribed(DEPTH)
        assert "stale" in ws.gaps[0].reason


async def test_malformed_and_oversized_frames(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink, max_frame_size=64 * 1024) as ws:
        await ws.subscribe(DEPTH)
        sim.send_malformed()
        sim.step(1)
        await sink.wait(lambda: len(sink.messages) == 2)
        assert ws.metrics["parse_errors"] == 1
        assert [e.code for e in sink.errors] == [400]
        (first,) = sim.connections
        sim.send_oversized(128 * 1024)
        await sim.wait_connections(2)
        await sim.wait_subscribed(DEPTH)
        # The client closed the connection as too big (1009), and its gap says so.
        await until(lambda: first.close_code is not None, 5, "the client's close frame")
        assert first.close_code == 1009
        assert "client closed (1009)" in ws.gaps[0].reason


async def test_max_connection_age_rotates_before_the_server_cuts(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=0, max_connection_age=1.0)
    sink = Sink()
    async with client(sim, sink, max_connection_age=0.4) as ws:
        await ws.subscribe(DEPTH)
        await sim.wait_connections(3, timeout=5)
        await sim.wait_subscribed(DEPTH)
        await sink.wait(lambda: ws.metrics["rotations"] >= 2)
        assert ws.gaps == [] and ws.is_connected


async def test_stop_leaves_nothing_behind(binance_simulator: BinanceSimulator) -> None:
    sink = Sink()
    tasks_before, fds_before = other_tasks(), open_fds()
    ws = client(binance_simulator, sink)
    await ws.start()
    await ws.subscribe(DEPTH)
    await ws.stop()
    await asyncio.sleep(0.05)
    assert other_tasks() - tasks_before == set()
    assert open_fds() <= fds_before


async def test_updates_lost_during_a_reconnection_are_reported(binance_simulator: BinanceSimulator) -> None:
    """A second client keeps the market moving while the first one reconnects."""
    sim = binance_simulator
    lossy, witness = Sink(), Sink()
    async with client(sim, lossy, typed=True) as ws, client(sim, witness, typed=True) as other:
        await ws.subscribe(["btcusdt@depth"])
        await other.subscribe(["btcusdt@depth"])
        sim.step(3)
        await lossy.wait(lambda: len(lossy.messages) == 3)
        sim.drop(1001, connection=sim.connections[0])
        sim.step(5)                       # reaches only the witness
        await sim.wait_connections(3)
        await sim.wait_subscribed(["btcusdt@depth"])
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=5)
        while len(sim.connections) < 2 or "btcusdt@depth" not in sim.connections[-1].streams:
            await asyncio.sleep(0.005)
        sim.step(2)
        await lossy.wait(lambda: len(lossy.messages) == 5)
        await witness.wait(lambda: len(witness.messages) == 10)
    missed = witness.messages[3:8]
    expected_missing = sum(m.final_update_id - m.first_update_id + 1 for _, m in missed)
    (gap,) = ws.sequence_gaps
    assert gap.expected == missed[0][1].first_update_id
    assert gap.missing == expected_missing
    assert other.sequence_gaps == []


async def test_a_pool_recovers_every_connection_after_a_drop(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    names = [f"p{i:04d}usdt@depth" for i in range(1100)]
    async with client(sim, sink, subscription_batch_size=1024) as ws:
        await ws.subscribe(names)
        assert len(sim.connections) == 2
        sim.drop(1001)
        await sim.wait_connections(4)
        await sim.wait_subscribed(names, timeout=10)
        # A gap closes once its connection has resubscribed and had the acks.
        await sink.wait(lambda: len(ws.gaps) == 2 and all(g.end is not None for g in ws.gaps))
        health = await ws.health_check()
        assert health["is_connected"] and len(health["gaps"]) == 2
        sim.step(1)
        await sink.wait(lambda: len(sink.messages) == 1100)
    assert sim.violations == []


async def test_a_rejected_resubscription_is_reported_and_the_rest_restored(
        binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim, sink, subscription_batch_size=1) as ws:
        await ws.subscribe(DEPTH)
        sim.reject_next_subscription(code=2, msg="Invalid request: rejected after reconnect")
        sim.drop(1001)
        await sim.wait_connections(2)
        await sim.wait_subscribed(DEPTH[1:])
        await sink.wait(lambda: any(isinstance(e, SubscriptionRejectedError) for e in sink.errors))
        (rejection,) = [e for e in sink.errors if isinstance(e, SubscriptionRejectedError)]
        assert rejection.exchange_message == "Invalid request: rejected after reconnect"
        assert ws.subscriptions == DEPTH[1:] and sim.subscribed() == set(DEPTH[1:])

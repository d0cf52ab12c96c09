"""MexcWebSocket end to end against MexcSimulator on 127.0.0.1."""
from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from exchanges.mexc import MexcWebSocket, mexc_config
from exchanges.mexc.reference import decode_reference
from exchanges.mexc.simulator import MexcSimulator
from fastws import (BaseWebSocketInterface, ConnectionState, ExchangeName, InvalidMessageError, SequenceGapError, StreamType,
                    SubscriptionRejectedError)
from tests.conftest import open_fds, other_tasks
from tests.integration.test_binance import Sink

DEPTH = "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"
DEALS = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"
RETIRED = "spot@public.miniTicker.v3.api.pb@BTCUSDT@UTC+8"   # well formed, refused by MEXC
CHANNELS = {
    DEPTH: StreamType.ORDERBOOK,
    "spot@public.increase.depth.v3.api.pb@ETHUSDT": StreamType.ORDERBOOK,
    "spot@public.limit.depth.v3.api.pb@BTCUSDT@5": StreamType.ORDERBOOK,
    DEALS: StreamType.TRADES,
    "spot@public.deals.v3.api.pb@ETHUSDT": StreamType.TRADES,
    "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT": StreamType.TICKER,
    "spot@public.bookTicker.v3.api.pb@ETHUSDT": StreamType.TICKER,
    "spot@public.bookTicker.batch.v3.api.pb@BTCUSDT": StreamType.TICKER,
    "spot@public.kline.v3.api.pb@BTCUSDT@Min1": StreamType.KLINE,
}


def client(sim: MexcSimulator, sink: Sink, **overrides: Any) -> MexcWebSocket:
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("healthy_after", 0.05)
    return MexcWebSocket(ExchangeName("mexc"), mexc_config(sim.ws_url(), **overrides), sink.on_message, sink.on_error)


async def test_subscribe_receive_classify_and_unsubscribe(mexc_simulator: MexcSimulator) -> None:
    sim = mexc_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe(list(CHANNELS))
        assert sim.subscribed() == set(CHANNELS)
        sim.step(20)
        await sink.wait(lambda: {m["channel"] for m in sink.messages} == set(CHANNELS))
        stats = ws._core.stream_stats()  # type: ignore[union-attr]
        for channel, stream_type in CHANNELS.items():
            assert stats[channel].stream_type is stream_type, channel
        # Acks and PONGs are control messages: only pushes reach the handler.
        assert all("channel" in m for m in sink.messages)
        health = await ws.health_check()
        deals = health["streams"][DEALS]
        assert deals["event_latency_ms"]["p50"] is not None and deals["messages_per_second"] > 0
        assert health["streams"][DEPTH]["last_sequence"] > 0
        await ws.unsubscribe([DEALS])
        assert DEALS not in sim.subscribed() and DEALS not in ws.subscriptions
    assert sink.errors == []


class RawListener(WSListener):
    """A plain picows client: keeps every binary payload it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            self.payloads.append(frame.get_payload_as_bytes())


async def test_pushes_equal_the_reference_decoding(mexc_simulator: MexcSimulator) -> None:
    """A raw client on the same simulator gets the same bytes; the adapter's dicts match them."""
    sim = mexc_simulator
    sink = Sink()
    transport, raw = await ws_connect(RawListener, sim.ws_url())
    try:
        transport.send(WSMsgType.TEXT, msgspec.json.encode({"method": "SUBSCRIPTION", "params": list(CHANNELS)}))
        async with client(sim, sink) as ws:
            await ws.subscribe(list(CHANNELS))
            await sim.wait_subscribed(list(CHANNELS))
            sim.step(10)
            await sink.wait(lambda: len(raw.payloads) == len(sink.messages) > 0
                            and sum(sim.sent_counts.values()) == 2 * len(sink.messages))
    finally:
        transport.disconnect()
    assert sink.messages == [decode_reference(p) for p in raw.payloads]


async def test_a_rejection_carries_mexc_text(mexc_simulator: MexcSimulator) -> None:
    sink = Sink()
    async with client(mexc_simulator, sink) as ws:
        # A retired channel is well formed: MEXC itself refuses it, in its own words.
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe([RETIRED])
        assert info.value.code == 403 and "Not Subscribed successfully" in info.value.exchange_message
        assert ws.subscriptions == []
        mexc_simulator.reject_next_subscription()
        with pytest.raises(SubscriptionRejectedError):
            await ws.subscribe([DEALS])
        await ws.subscribe([DEALS])
        assert ws.subscriptions == [DEALS]


async def test_pooling_never_puts_more_than_30_channels_on_a_connection(mexc_simulator: MexcSimulator) -> None:
    sim = mexc_simulator
    sink = Sink()
    names = [f"spot@public.aggre.deals.v3.api.pb@100ms@S{i:03d}USDT" for i in range(70)]
    async with client(sim, sink) as ws:
        await ws.subscribe(names)
        assert sorted(len(c.channels) for c in sim.connections) == [10, 30, 30]
        assert sim.subscribed() == set(names) and ws.subscriptions == names
        health = await ws.health_check()
        assert health["is_connected"] and len(health["connections"]) == 3
    assert sim.violations == []


async def test_pings_keep_an_idle_connection_open(mexc_simulator_factory: Any) -> None:
    sim = await mexc_simulator_factory(rate=0, idle_timeout=0.6)
    sink = Sink()
    async with client(sim, sink, ping_interval=0.2, pong_timeout=0.2) as ws:
        await ws.subscribe([DEALS])
        await asyncio.sleep(1.5)
        assert sim.connection_count == 1 and sim.idle_closes == 0
        assert sim.pings_received >= 4 and ws.pongs_received >= 4
        assert ws.metrics["reconnections"] == 0


async def test_depth_version_gaps_are_reported(mexc_simulator: MexcSimulator) -> None:
    sim = mexc_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe([DEPTH])
        sim.step(4)
        sim.skip_sequence(2)
        sim.step(4)
        await sink.wait(lambda: any(isinstance(e, SequenceGapError) for e in sink.errors))
        (gap,) = ws.sequence_gaps
        versions = [(int(m["publicAggreDepths"]["fromVersion"]), int(m["publicAggreDepths"]["toVersion"]))
                    for m in sink.messages]
        jumps = [b[0] - a[1] - 1 for a, b in zip(versions, versions[1:])]
        assert gap.stream == DEPTH and gap.missing == max(jumps) > 0
        assert sorted(jumps)[:-1] == [0] * (len(jumps) - 1)


@pytest.mark.parametrize("fault", ["drop", "reset", "close 1011"])
async def test_resubscribes_after_a_fault(mexc_simulator: MexcSimulator, fault: str) -> None:
    sim = mexc_simulator
    sink = Sink()
    async with client(sim, sink) as ws:
        await ws.subscribe([DEPTH, DEALS])
        {"drop": lambda: sim.drop(1001), "reset": sim.reset,
         "close 1011": lambda: sim.close_with(1011, "internal")}[fault]()
        await sim.wait_connections(2)
        await sim.wait_subscribed([DEPTH, DEALS])
        await sink.wait(lambda: bool(ws.gaps) and ws.gaps[-1].end is not None)
        sim.step(3)
        await sink.wait(lambda: any(m["channel"] == DEPTH for m in sink.messages))
        assert ws.state is ConnectionState.CONNECTED


async def test_malformed_pushes_are_counted_and_the_feed_goes_on(mexc_simulator: MexcSimulator) -> None:
    sim = mexc_simulator
    sink = Sink()
    async with client(sim, sink, stale_timeout=0.5) as ws:
        await ws.subscribe([DEALS])
        sim.send_malformed()
        sim.step(5)
        await sink.wait(lambda: len(sink.messages) > 0 and bool(sink.errors))
        assert isinstance(sink.errors[0], InvalidMessageError) and sink.errors[0].code == 400
        assert ws.metrics["parse_errors"] == 1
        sim.mute()                                   # then a mute connection: stale, healed
        await sim.wait_connections(2)
        await sim.wait_subscribed([DEALS])


async def test_stop_leaves_nothing_behind(mexc_simulator: MexcSimulator) -> None:
    sink = Sink()
    tasks, fds = other_tasks(), open_fds()
    ws = client(mexc_simulator, sink, ping_interval=0.1, pong_timeout=0.1)
    await ws.start()
    await ws.subscribe([DEALS])
    await asyncio.sleep(0.3)
    await ws.stop()
    await asyncio.sleep(0.05)
    assert other_tasks() - tasks == set() and open_fds() <= fds


async def test_a_partly_refused_request_keeps_the_accepted_channels(mexc_simulator: MexcSimulator) -> None:
    sim = mexc_simulator
    sink = Sink()
    good = [f"spot@public.aggre.deals.v3.api.pb@100ms@G{i:02d}USDT" for i in range(29)]
    bad = "spot@public.bogus.v3.api.pb@BTCUSDT"
    async with client(sim, sink) as ws:
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe(good[:10] + [bad] + good[10:])
        assert info.value.rejected_streams == [bad]
        assert ws.subscriptions == good and sim.subscribed() == set(good)
        # The pool counts the accepted ones: 30 more go to a second connection.
        more = [f"spot@public.aggre.deals.v3.api.pb@100ms@M{i:02d}USDT" for i in range(30)]
        await ws.subscribe(more)
        assert sorted(len(c.channels) for c in sim.connections) == [29, 30]
        sim.drop(1001)
        await sim.wait_subscribed(good + more)
    assert sim.violations == []


async def test_an_unsubscribe_overlapping_a_subscribe_of_the_same_channel(mexc_simulator: MexcSimulator) -> None:
    """Acks echo the channel for both methods: each goes to the oldest request waiting."""
    sim = mexc_simulator
    sink = Sink()
    async with client(sim, sink, subscription_timeout=2.0) as ws:
        await ws.subscribe([DEALS])
        # The pool serializes a user's calls; a resubscribe after a reconnect
        # does not take its lock. The connection's own methods overlap here.
        await asyncio.gather(BaseWebSocketInterface.unsubscribe(ws, [DEALS]),
                             BaseWebSocketInterface.subscribe(ws, [DEPTH, DEALS]))
        assert sim.subscribed() == {DEPTH, DEALS} and ws.subscriptions == [DEPTH, DEALS]
        assert sink.errors == []

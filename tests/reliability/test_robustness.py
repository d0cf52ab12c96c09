"""What a user trying to break fastws found (issue 17): each case failed before its fix."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance import client as binance_client
from fastws import (ConnectionState, ExchangeAPIError, ExchangeName, SequenceGapError,
                    SubscriptionRejectedError, create_websocket_config)
from exchanges.binance.simulator import BinanceSimulator
from tests.conftest import until

TRADE = "btcusdt@trade"
DEPTH = "btcusdt@depth"


class Sink:
    """Message and error handlers that remember what they got."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[ExchangeAPIError] = []

    def on_message(self, message: Any) -> None:
        self.messages.append(message)

    def on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(error)


def binance(sim: BinanceSimulator, sink: Sink, **overrides: Any) -> BinanceWebSocket:
    return BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, **overrides),
                            sink.on_message, sink.on_error)


def reconnect_delays(records: list[logging.LogRecord]) -> list[float]:
    """The delays the supervisor chose before reconnecting, from its log records."""
    return [r.delay for r in records if hasattr(r, "delay")]


# ---------------------------------------------------------------- item 4
async def test_drops_of_delivering_connections_neither_back_off_nor_exhaust_the_attempts(
        binance_simulator: BinanceSimulator, caplog: pytest.LogCaptureFixture) -> None:
    """A connection that subscribed and delivered data was a success: the next attempt is immediate."""
    sim = binance_simulator
    sink = Sink()
    caplog.set_level(logging.INFO, logger="fastws")
    # Default backoff (1 s, doubling); 3 attempts allowed, 6 drops to come.
    ws = binance(sim, sink, max_reconnect_attempts=3, stale_timeout=None)
    async with ws:
        await ws.subscribe([TRADE])
        for drop in range(6):
            count = len(sink.messages)
            sim.step(2)
            await until(lambda: len(sink.messages) > count, 5, "data on the connection")
            sim.drop()
            await until(lambda: sim.connection_count == drop + 2 and TRADE in sim.subscribed()
                        and ws.is_connected, 15, f"reconnected after drop {drop + 1}")
        assert ws.state is ConnectionState.CONNECTED
        assert (await ws.health_check())["reconnect_attempts"] == 0
    assert reconnect_delays(caplog.records) == []
    assert len(ws.gaps) == 6 and all(g.end is not None for g in ws.gaps)


async def test_connections_that_die_before_delivering_still_count_as_failures(
        binance_simulator: BinanceSimulator) -> None:
    """The storm protection stays: connections closed before any data grow the delay and fail."""
    sim = binance_simulator
    sink = Sink()
    ws = binance(sim, sink, max_reconnect_attempts=2, reconnect_delay=0.05, reconnect_jitter=0.0,
                 stale_timeout=None)
    async with ws:
        await ws.subscribe([TRADE])

        def drop_new(old: ConnectionState, new: ConnectionState, reason: Any) -> None:
            if new is ConnectionState.CONNECTED:
                asyncio.get_running_loop().call_soon(sim.drop)
        ws.add_state_listener(drop_new)
        sim.drop()
        await ws.wait_for_state(ConnectionState.FAILED, timeout=15)
    assert any("2 attempt" in str(e) or "3 times" in str(e) or "gave up" in str(e) for e in sink.errors)


# ---------------------------------------------------------------- item 5
@pytest.mark.parametrize("typed", [False, True])
async def test_unsubscribe_then_resubscribe_reports_no_false_gap(
        binance_simulator: BinanceSimulator, typed: bool) -> None:
    """Frames that arrive while UNSUBSCRIBE waits on the rate limit must not bring old numbers back."""
    sim = binance_simulator
    sink = Sink()
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, stale_timeout=None),
                          lambda *m: sink.on_message(m), sink.on_error, typed=typed)
    async with ws:
        await ws.subscribe([DEPTH, TRADE])
        sim.step(3)
        await until(lambda: len(sink.messages) >= 6, 5, "first updates")
        # Another control message just before: the UNSUBSCRIBE waits ~0.4 s
        # on the outgoing rate limit while depth updates keep arriving.
        await ws.send_message({"method": "LIST_SUBSCRIPTIONS", "id": 999})
        unsubscribing = asyncio.ensure_future(ws.unsubscribe([DEPTH]))
        for _ in range(5):
            await asyncio.sleep(0.02)
            sim.step(1)
        await unsubscribing
        assert DEPTH not in sim.subscribed()
        sim.step(20)                       # the book moves on while we are away
        await ws.subscribe([DEPTH])
        count = len(sink.messages)
        sim.step(3)
        await until(lambda: len(sink.messages) >= count + 6, 5, "updates after resubscribing")
        assert [e for e in sink.errors if isinstance(e, SequenceGapError)] == []
        assert ws.sequence_gaps == []
        # A real gap is still reported.
        sim.skip_sequence(2)
        sim.step(4)
        await until(lambda: len(ws.sequence_gaps) == 1, 5, "the real gap")
        assert ws.sequence_gaps[0].stream == DEPTH


# ---------------------------------------------------------------- item 6
async def test_waiting_on_the_connection_attempt_budget_is_said(
        binance_simulator: BinanceSimulator, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sim = binance_simulator
    sink = Sink()
    ws = binance(sim, sink)
    # This endpoint's budget: 2 attempts per minute, both spent.
    limiter = binance_client.ConnectionAttemptLimiter(limit=2, window=60.0)
    monkeypatch.setitem(binance_client._ATTEMPTS, sim.url.split("//", 1)[1], limiter)
    assert binance_client.attempt_limiter(ws.config.url) is limiter
    await limiter.acquire()
    await limiter.acquire()
    reasons: list[str] = []
    ws.add_state_listener(lambda old, new, reason: reasons.append(reason or ""))
    caplog.set_level(logging.INFO, logger="fastws")
    starting = asyncio.ensure_future(ws.start())
    try:
        await until(lambda: any(r.levelno == logging.WARNING and "attempt" in r.getMessage()
                                for r in caplog.records), 5, "a warning about the wait")
        warning = next(r for r in caplog.records if r.levelno == logging.WARNING and "attempt" in r.getMessage())
        assert "5" in warning.getMessage() or "6" in warning.getMessage()   # ~59-60 s to wait
        assert any("attempt" in r for r in reasons)
        health = await ws.health_check()
        assert health["state"] == "connecting" and "attempt" in (health.get("waiting") or "")
        assert not starting.done()
    finally:
        starting.cancel()
        await ws.stop()
    with pytest.raises(ExchangeAPIError, match="attempt"):
        await ws.start(timeout=0.5)
    await ws.stop()


# ---------------------------------------------------------------- item 7
async def test_a_single_stream_name_is_one_stream_not_its_characters(
        binance_simulator: BinanceSimulator) -> None:
    sink = Sink()
    async with binance(binance_simulator, sink) as ws:
        await ws.subscribe(TRADE)
        assert ws.subscriptions == [TRADE] and binance_simulator.subscribed() == {TRADE}
        await ws.unsubscribe(TRADE)
        assert ws.subscriptions == [] and binance_simulator.subscribed() == set()


@pytest.mark.parametrize("streams, expected", [
    ([1, None], "str"), ([b"btcusdt@trade"], "bytes"), (None, "iterable"), ([TRADE, 5], "int"),
])
async def test_stream_names_of_the_wrong_type_are_refused_clearly(
        binance_simulator: BinanceSimulator, streams: Any, expected: str) -> None:
    async with binance(binance_simulator, Sink()) as ws:
        with pytest.raises(TypeError, match=expected):
            await ws.subscribe(streams)
        with pytest.raises(TypeError, match=expected):
            await ws.unsubscribe(streams)
        assert ws.subscriptions == []


def test_an_adapter_given_a_dict_for_config_says_what_it_wants() -> None:
    with pytest.raises(TypeError, match="WebSocketConfig"):
        BinanceWebSocket(ExchangeName("binance"), {"url": "ws://127.0.0.1:1"}, print)  # type: ignore[arg-type]


@pytest.mark.parametrize("url, reason", [
    ("ws://", "host"), ("wss://", "host"), ("ws://:80", "host"), ("ws://127.0.0.1:99999", "port"),
    ("ws://127.0.0.1:abc", "port"), ("ws:// 127.0.0.1:1", "space"), ("ws://[::1", "IPv6"),
    ("http://127.0.0.1:1", "ws://"),
])
def test_bad_urls_are_refused_when_the_config_is_made(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        create_websocket_config(url)
    with pytest.raises(ValueError, match=reason):
        binance_config(url)


@pytest.mark.parametrize("headers", ["notamapping", {"X-A": 1}, {1: "a"}, {"Bad Name": "x"},
                                     {"X-A": "line\r\nbreak"}])
def test_bad_headers_are_refused_when_the_config_is_made(headers: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="extra_headers"):
        create_websocket_config("ws://127.0.0.1:1", extra_headers=headers)


async def test_invalid_names_are_refused_by_name_and_the_valid_ones_kept(
        binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with binance(sim, sink) as ws:
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe([TRADE, "btcusdt@nonsense"])
        assert info.value.rejected_streams == ["btcusdt@nonsense"]
        assert "btcusdt@nonsense" in str(info.value)
        assert ws.subscriptions == [TRADE] and sim.subscribed() == {TRADE}


async def test_invalid_names_queued_before_start_are_refused_at_once(
        binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    ws = binance(sim, Sink())
    with pytest.raises(SubscriptionRejectedError) as info:
        await ws.subscribe([TRADE, "not a stream"])
    assert info.value.rejected_streams == ["not a stream"]
    assert ws.subscriptions == [TRADE]
    async with ws:
        await sim.wait_subscribed([TRADE])
        assert ws.subscriptions == [TRADE]
    await ws.stop()


async def test_thousands_of_invalid_names_open_no_connection(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    async with binance(sim, Sink()) as ws:
        names = [f"s{i}usdt@nonsense" for i in range(5000)]
        with pytest.raises(SubscriptionRejectedError) as info:
            await asyncio.wait_for(ws.subscribe(names), 2.0)
        assert len(info.value.rejected_streams or []) == 5000
        assert sim.connection_count == 1 and len(sim.connections) == 1
        health = await ws.health_check()
        assert health.get("connections") is None or len(health["connections"]) == 1


# ---------------------------------------------------------------- item 3
async def test_subscribe_awaited_inside_a_handler_does_not_stall_the_feed(
        binance_simulator: BinanceSimulator) -> None:
    """The ack cannot be read while the handler is suspended: the request goes out, the call returns."""
    sim = binance_simulator
    sink = Sink()
    steps: list[str] = []
    ws: BinanceWebSocket

    async def handler(message: Any) -> None:
        sink.on_message(message)
        if message["stream"] == TRADE and not steps:
            steps.append("asked")
            await ws.subscribe([DEPTH])
            steps.append("returned")
            await ws.subscribe(["btcusdt@nonsense"])

    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url), handler, sink.on_error)
    async with ws:
        await ws.subscribe([TRADE])
        sim.step(1)
        await until(lambda: "returned" in steps, 3, "subscribe() inside the handler returned")
        await sim.wait_subscribed([DEPTH, TRADE])
        assert ws.subscriptions == [TRADE, DEPTH]
        count = len(sink.messages)
        sim.step(2)
        await until(lambda: sum(m["stream"] == DEPTH for m in sink.messages[count:]) == 2, 3, "depth")
        # The invalid one was refused by name, through the error handler.
        await until(lambda: any(isinstance(e, SubscriptionRejectedError) for e in sink.errors), 3, "refusal")
    assert [e.code for e in sink.errors] == [403]


async def test_mexc_config_takes_the_simulators_url_as_its_docstring_says(mexc_simulator: Any) -> None:
    from exchanges.mexc import MexcWebSocket, mexc_config
    sink = Sink()
    channel = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"
    for url in (mexc_simulator.url, mexc_simulator.ws_url()):
        async with MexcWebSocket(ExchangeName("mexc"), mexc_config(url), sink.on_message, sink.on_error) as ws:
            await ws.subscribe([channel])
            assert ws.subscriptions == [channel]
    assert sink.errors == []


async def test_a_retired_channel_beside_good_ones_is_refused_by_mexc_and_the_good_ones_kept(
        mexc_simulator: Any) -> None:
    """Well-formed names pass the client's check; MEXC's own partial refusal still keeps the rest."""
    from exchanges.mexc import MexcWebSocket, mexc_config
    sink = Sink()
    good = ["spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@ETHUSDT"]
    retired = "spot@public.miniTicker.v3.api.pb@BTCUSDT@UTC+8"
    async with MexcWebSocket(ExchangeName("mexc"), mexc_config(mexc_simulator.url), sink.on_message,
                             sink.on_error) as ws:
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe([good[0], retired, good[1]])
        assert info.value.rejected_streams == [retired] and "Not Subscribed successfully" in str(
            info.value.exchange_message)
        assert ws.subscriptions == good and mexc_simulator.subscribed() == set(good)


async def test_a_single_oversized_frame_reaches_the_error_handler(binance_simulator: BinanceSimulator) -> None:
    """picows refuses a frame past max_frame_size itself (close 1009): the error is still reported and counted."""
    sim = binance_simulator
    sink = Sink()
    async with binance(sim, sink, max_frame_size=64 * 1024) as ws:
        await ws.subscribe([TRADE])
        sim.send_oversized(128 * 1024)
        await sim.wait_connections(2)
        await sim.wait_subscribed([TRADE])
        await until(lambda: any(e.code == 400 and "max_frame_size" in str(e) for e in sink.errors), 5,
                    "the oversize error")
        assert ws.metrics["oversize_errors"] == 1


async def test_a_subscribe_whose_connection_drops_while_it_waits_is_not_an_error(
        binance_simulator: BinanceSimulator) -> None:
    """Queued behind the rate limit when the connection drops: no error, and the next connection subscribes it."""
    sim = binance_simulator
    sink = Sink()
    async with binance(sim, sink, stale_timeout=None) as ws:
        await ws.subscribe([TRADE])
        await ws.send_message({"method": "LIST_SUBSCRIPTIONS", "id": 998})   # spend the token
        waiting = asyncio.ensure_future(ws.subscribe([DEPTH]))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        sim.drop()
        await asyncio.wait_for(waiting, 10)          # raised ConnectionFailedError before
        await sim.wait_connections(2)
        await sim.wait_subscribed([TRADE, DEPTH])
        assert ws.subscriptions == [TRADE, DEPTH]

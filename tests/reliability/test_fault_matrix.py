"""Server-side faults the proxy cannot make: close codes, bad UTF-8, a name that does not
resolve, an error handler that raises. Each ends CONNECTED with every stream restored
(or FAILED with a clear error), and leaves no task or fd behind."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ConnectionFailedError, ConnectionState, ExchangeAPIError, ExchangeName, InvalidMessageError
from tests.conftest import open_fds, other_tasks
from tests.integration.test_binance import Sink

STREAMS = ["btcusdt@depth@100ms", "ethusdt@trade"]


def client(url: str, sink: Any, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("healthy_after", 0.05)
    return BinanceWebSocket(ExchangeName("binance"), binance_config(url, **overrides),
                            sink.on_message, getattr(sink, "on_error", None))


async def recovered(ws: BinanceWebSocket, sim: BinanceSimulator, connections: int) -> None:
    await sim.wait_connections(connections)
    await sim.wait_subscribed(STREAMS)
    deadline = time.monotonic() + 5.0
    while not (ws.state is ConnectionState.CONNECTED and ws.gaps and all(g.end is not None for g in ws.gaps)):
        assert time.monotonic() < deadline, (ws.state, ws.gaps)
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1011])
async def test_every_close_code_is_healed(binance_simulator: BinanceSimulator, code: int) -> None:
    sim = binance_simulator
    sink = Sink()
    tasks, fds = other_tasks(), open_fds()
    ws = client(sim.url, sink)
    await ws.start()
    await ws.subscribe(STREAMS)
    sim.close_with(code, "test")
    await recovered(ws, sim, 2)
    assert f"({code})" in ws.gaps[0].reason
    sim.step(3)
    await sink.wait(lambda: len(sink.messages) >= 3)
    await ws.stop()
    await asyncio.sleep(0.05)
    assert other_tasks() - tasks == set() and open_fds() <= fds


async def test_invalid_utf8_in_a_text_frame_is_a_counted_400(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    sink = Sink()
    async with client(sim.url, sink) as ws:
        await ws.subscribe(STREAMS)
        sim.send_raw(b'{"stream":"ethusdt@trade","data":{"e":"trade","s":"\xff\xfe"}}')   # routed
        sim.send_raw(b'{"stream": "x", "data": "\xc3\x28"}')                                  # generic
        sim.step(2)
        await sink.wait(lambda: len(sink.errors) == 2 and len(sink.messages) > 0)
        assert all(isinstance(e, InvalidMessageError) and e.code == 400 for e in sink.errors)
        assert ws.metrics["parse_errors"] == 2 and ws.state is ConnectionState.CONNECTED


async def test_a_name_that_does_not_resolve_fails_clearly() -> None:
    # A name that is not a valid host name is refused by the local resolver
    # itself (no DNS query leaves the machine, unlike "*.invalid").
    sink = Sink()
    tasks, fds = other_tasks(), open_fds()
    ws = client("ws://no-such-exchange!invalid:9443", sink, max_reconnect_attempts=1, timeout=3.0)
    start = time.monotonic()
    with pytest.raises(ConnectionFailedError):
        await ws.start()
    await ws.stop()
    assert time.monotonic() - start < 10.0
    assert ws.state is ConnectionState.CLOSED
    assert any("no-such-exchange!invalid" in str(e) for e in sink.errors)
    await asyncio.sleep(0.05)
    assert other_tasks() - tasks == set() and open_fds() <= fds


async def test_an_error_handler_that_raises_does_not_break_the_supervisor(
        binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    seen: list[ExchangeAPIError] = []
    messages: list[Any] = []

    class Raising:
        def on_message(self, message: Any) -> None:
            messages.append(message)

        def on_error(self, error: ExchangeAPIError) -> None:
            seen.append(error)
            raise RuntimeError("a strategy's error handler that fails")

    async with client(sim.url, Raising()) as ws:
        await ws.subscribe(STREAMS)
        sim.send_malformed()
        sim.reset()
        await recovered(ws, sim, 2)
        sim.reject_next_subscription()
        with pytest.raises(ExchangeAPIError):
            await ws.subscribe(["solusdt@trade"])
        sim.step(3)
        deadline = time.monotonic() + 5.0
        while len(messages) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        # The malformed frame reached the raising handler; the rejection went to the caller.
        assert any(isinstance(e, InvalidMessageError) for e in seen) and ws.state is ConnectionState.CONNECTED

"""The figures of issue 17's scenarios, measured on the simulators (127.0.0.1 only).

    python bench/robustness_figures.py

- slow async handler: ~2,000 msg/s for 4 s to a handler awaiting 3 ms per
  message: the backlog's largest size and age, what was delivered, gaps;
- slow sync handler: the same feed to a handler sleeping 2 ms per message: the
  longest event-loop stall (a 10 ms timer's lateness), every message delivered;
- subscribe() awaited inside a handler: how long the call takes;
- drops of working connections: Binance's simulator drops the connection 8
  times, each after it delivered data, default reconnect settings: how long the
  feed was down each time.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import uvloop

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ExchangeName, create_websocket_config
from fastws.testing import FeedServer, LoopbackFeedClient

STREAM = "btcusdt@depth"


async def _feed(server: FeedServer, seconds: float, per_10ms: int) -> int:
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent += server.publish(per_10ms)
        await asyncio.sleep(0.01)
    return sent


async def slow_async_handler() -> None:
    got: list[Any] = []

    async def handler(message: Any) -> None:
        got.append(message)
        await asyncio.sleep(0.003)

    async with FeedServer() as server:
        config = create_websocket_config(server.url, stale_timeout=3.0, max_messages_per_second=100.0)
        async with LoopbackFeedClient(ExchangeName("slow"), config, handler) as ws:
            await ws.subscribe([STREAM])
            feeding = asyncio.ensure_future(_feed(server, 4.0, 20))
            largest, oldest = 0, 0.0
            while not feeding.done() or len(got) < feeding.result():
                backlog = (await ws.health_check())["backlog"]
                largest = max(largest, backlog["messages"])
                oldest = max(oldest, backlog["oldest_age"] or 0.0)
                if feeding.done():
                    server.publish(1)     # the feed stays alive while the handler catches up
                await asyncio.sleep(0.1)
            print(f"slow async handler (3 ms/message, ~2,000 msg/s for 4 s): backlog up to {largest} "
                  f"messages, oldest {oldest:.2f} s; delivered {len(got)}; gaps {len(ws.gaps)}; "
                  f"connections {server.connection_count}")


async def slow_sync_handler() -> None:
    got: list[Any] = []
    worst = 0.0

    def handler(message: Any) -> None:
        got.append(message)
        time.sleep(0.002)

    async def lag() -> None:
        nonlocal worst
        while True:
            due = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - due)

    async with FeedServer() as server:
        config = create_websocket_config(server.url, stale_timeout=None, max_messages_per_second=100.0)
        async with LoopbackFeedClient(ExchangeName("sync"), config, handler) as ws:
            await ws.subscribe([STREAM])
            probe = asyncio.ensure_future(lag())
            sent = await _feed(server, 2.0, 20)
            while len(got) < sent:
                await asyncio.sleep(0.05)
            health = await ws.health_check()
            probe.cancel()
            print(f"slow sync handler (2 ms/message, ~2,000 msg/s for 2 s): longest loop stall "
                  f"{worst * 1000:.0f} ms; delivered {len(got)} of {sent}; handler busy "
                  f"{health['slow_handler']['handler_seconds_per_second']:.2f} s/s")


async def subscribe_inside_handler() -> None:
    timings: list[float] = []
    ws: BinanceWebSocket

    async def handler(message: Any) -> None:
        if len(timings) < 1:
            start = time.perf_counter()
            await ws.subscribe(["ethusdt@trade"])
            timings.append(time.perf_counter() - start)

    async with BinanceSimulator(rate=0) as sim:
        ws = BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url), handler)
        async with ws:
            await ws.subscribe(["btcusdt@trade"])
            sim.step(1)
            await sim.wait_subscribed(["ethusdt@trade"])
        print(f"subscribe() awaited inside the handler returned in {timings[0] * 1e6:.0f} µs "
              "(the ack is awaited in the background)")


async def drops_of_working_connections() -> None:
    got: list[Any] = []
    async with BinanceSimulator(rate=0) as sim:
        ws = BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, stale_timeout=None), got.append)
        async with ws:
            await ws.subscribe(["btcusdt@trade"])
            for drop in range(8):
                count = len(got)
                sim.step(2)
                while len(got) <= count:
                    await asyncio.sleep(0.002)
                sim.drop()
                while not (sim.connection_count == drop + 2 and ws.is_connected and sim.subscribed()):
                    await asyncio.sleep(0.002)
            durations = [g.duration or 0.0 for g in ws.gaps]
            state = ws.state.value
            attempts = (await ws.health_check())["reconnect_attempts"]
        print(f"8 drops of working connections (default settings): offline median "
              f"{statistics.median(durations) * 1000:.1f} ms, max {max(durations) * 1000:.1f} ms; "
              f"state {state}, failed attempts counted {attempts}")


async def main() -> None:
    await slow_async_handler()
    await slow_sync_handler()
    await subscribe_inside_handler()
    await drops_of_working_connections()


if __name__ == "__main__":
    uvloop.run(main())

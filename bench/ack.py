"""Subscription acknowledgment time: from ``subscribe()`` called to it returning (acked).

Two clients, each subscribing one new stream at a time:

- ``generic``: ``fastws.testing.LoopbackFeedClient`` against ``bench/server.py``
  (its own process), outgoing pacing raised out of the way: the round trip
  and the library's own bookkeeping;
- ``BinanceWebSocket``: the adapter against ``bench/binance_server.py``, with
  its pacing of control messages (``CONTROL_MESSAGES_PER_SECOND``, under
  Binance's 5 a second) kept, subscribes spaced so that the pacing never makes
  one wait: what is measured is the acknowledgment, not the pacing.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.binance_payloads import stream_names
from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.client import CONTROL_MESSAGES_PER_SECOND
from fastws import ExchangeName, create_websocket_config
from fastws.testing import LoopbackFeedClient

__all__ = ["ack_times", "binance_ack_times"]

TIMEOUT = 5.0
"""Seconds one subscribe may take before the measurement fails."""


async def _ignore(message: Any) -> None:
    pass


async def ack_times(url: str, count: int) -> list[float]:
    """Seconds per ``subscribe()`` of ``count`` new streams, one at a time (``bench/server.py`` at ``url``)."""
    config = create_websocket_config(url, max_messages_per_second=10_000.0, stale_timeout=None)
    client = LoopbackFeedClient(ExchangeName("bench-ack"), config, _ignore)
    await client.start()
    times = []
    try:
        for index in range(count):
            start = time.perf_counter()
            await asyncio.wait_for(client.subscribe([f"s{index}usdt@depth"]), TIMEOUT)
            times.append(time.perf_counter() - start)
    finally:
        await client.stop()
    return times


# A subscribe sent sooner than this after the last one would wait for the pacing.
SPACING = 1.0 / CONTROL_MESSAGES_PER_SECOND + 0.05


async def binance_ack_times(url: str, count: int, spacing: float = SPACING) -> list[float]:
    """Seconds per ``BinanceWebSocket.subscribe()`` of up to ``count`` new streams,
    ``spacing`` seconds apart (``bench/binance_server.py`` at base ``url``)."""
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(url, stale_timeout=None), _ignore)
    await ws.start()
    times = []
    try:
        for stream in stream_names()[:count]:
            await asyncio.sleep(spacing)
            start = time.perf_counter()
            await asyncio.wait_for(ws.subscribe([stream]), TIMEOUT)
            times.append(time.perf_counter() - start)
    finally:
        await ws.stop()
    return times

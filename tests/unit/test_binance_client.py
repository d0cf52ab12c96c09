"""BinanceWebSocket's own rules, without a socket: URLs, limits, the attempt limiter."""
from __future__ import annotations

import time

import pytest

from exchanges.binance import BinanceWebSocket, ConnectionAttemptLimiter, binance_config
from exchanges.binance.client import CONTROL_MESSAGES_PER_SECOND, _combined_url, attempt_limiter
from fastws import ExchangeName, create_websocket_config


@pytest.mark.parametrize("url, expected", [
    ("wss://stream.binance.com:9443", "wss://stream.binance.com:9443/stream"),
    ("wss://stream.binance.com:9443/", "wss://stream.binance.com:9443/stream"),
    ("wss://stream.binance.com:9443/stream", "wss://stream.binance.com:9443/stream"),
    ("wss://stream.binance.com:9443/ws/btcusdt@trade", "wss://stream.binance.com:9443/stream"),
    ("ws://127.0.0.1:1234?timeUnit=MICROSECOND", "ws://127.0.0.1:1234/stream?timeUnit=MICROSECOND"),
])
def test_the_adapter_always_speaks_the_combined_endpoint(url: str, expected: str) -> None:
    assert _combined_url(url) == expected


def test_config_beyond_binance_limits_is_brought_within_them() -> None:
    config = create_websocket_config("ws://127.0.0.1:1", max_messages_per_second=100.0)
    ws = BinanceWebSocket(ExchangeName("binance"), config, print)
    assert ws.config.max_messages_per_second == CONTROL_MESSAGES_PER_SECOND
    assert ws.config.max_connection_age is not None and ws.config.max_connection_age < 24 * 3600
    slower = binance_config("ws://127.0.0.1:1", max_messages_per_second=1.0, max_connection_age=60.0)
    kept = BinanceWebSocket(ExchangeName("binance"), slower, print)
    assert kept.config is slower


def test_microsecond_time_unit_scales_event_times() -> None:
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config("ws://127.0.0.1:1?timeUnit=MICROSECOND"), print)
    assert ws._frame_handler_options()["event_time_unit_ns"] == 1_000
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config("ws://127.0.0.1:1"), print)
    assert ws._frame_handler_options()["event_time_unit_ns"] == 1_000_000


async def test_attempt_limiter_waits_for_the_window() -> None:
    limiter = ConnectionAttemptLimiter(limit=3, window=0.2)
    start = time.monotonic()
    for _ in range(3):
        assert limiter.delay() == 0.0      # within the limit: no wait
        await limiter.acquire()
    # The fourth waits until the first leaves the window, however long the three took.
    delay = limiter.delay()
    assert 0.2 - (time.monotonic() - start) <= delay <= 0.2
    await limiter.acquire()
    assert time.monotonic() - start >= 0.2 - 0.002     # uvloop timers have 1 ms granularity


def test_one_attempt_limiter_per_endpoint() -> None:
    assert attempt_limiter("wss://stream.binance.com:9443/stream") is attempt_limiter("wss://stream.binance.com:9443/x")
    assert attempt_limiter("ws://127.0.0.1:1/stream") is not attempt_limiter("ws://127.0.0.1:2/stream")
    assert attempt_limiter("wss://stream.binance.com:9443").limit == 300

"""Binance spot market streams: ``BinanceWebSocket`` and its typed payloads.

``from exchanges.binance import BinanceWebSocket, binance_config``; the loopback
simulator ``BinanceSimulator`` (``exchanges.binance.simulator``) is imported on
first use.
"""
import importlib
from typing import TYPE_CHECKING, Any

from exchanges.binance.client import (CONTROL_MESSAGES_PER_SECOND, DEFAULT_MAX_CONNECTION_AGE,
                                      BinanceWebSocket, ConnectionAttemptLimiter, binance_config)
from exchanges.binance.messages import (AggTrade, BookTicker, DepthUpdate, Kline, KlineData, MiniTicker,
                                        PartialDepth, Ticker24h, Trade, WindowTicker)
from exchanges.binance.streams import StreamKind, is_valid_stream, stream_kind, stream_type

if TYPE_CHECKING:
    from exchanges.binance.simulator import BinanceSimulator

_LAZY = {"BinanceSimulator": "exchanges.binance.simulator"}


def __getattr__(name: str) -> Any:
    """The simulator, imported on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AggTrade",
    "BinanceSimulator",
    "BinanceWebSocket",
    "BookTicker",
    "CONTROL_MESSAGES_PER_SECOND",
    "ConnectionAttemptLimiter",
    "DEFAULT_MAX_CONNECTION_AGE",
    "DepthUpdate",
    "Kline",
    "KlineData",
    "MiniTicker",
    "PartialDepth",
    "StreamKind",
    "Ticker24h",
    "Trade",
    "WindowTicker",
    "binance_config",
    "is_valid_stream",
    "stream_kind",
    "stream_type",
]

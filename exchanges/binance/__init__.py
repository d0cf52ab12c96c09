"""Binance spot market streams: ``BinanceWebSocket`` and its typed payloads.

``from exchanges.binance import BinanceWebSocket, binance_config``.
"""
from exchanges.binance.client import (CONTROL_MESSAGES_PER_SECOND, DEFAULT_MAX_CONNECTION_AGE, BinanceConfig,
                                      BinanceWebSocket, ConnectionAttemptLimiter, binance_config)
from exchanges.binance.messages import (AggTrade, BookTicker, DepthUpdate, Kline, KlineData, MiniTicker,
                                        PartialDepth, Ticker24h, Trade, WindowTicker)
from exchanges.binance.streams import StreamKind, is_valid_stream, stream_kind, stream_type

__all__ = [
    "AggTrade",
    "BinanceConfig",
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

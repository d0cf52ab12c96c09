"""Enumerations and names shared by the base class, the core and the adapters."""
from __future__ import annotations

from enum import Enum
from typing import NewType

__all__ = ["ConnectionState", "ExchangeName", "StreamType", "SubscriptionAction"]

ExchangeName = NewType("ExchangeName", str)
"""The name of an exchange, e.g. ``ExchangeName("binance")``."""


class ConnectionState(str, Enum):
    """Where a connection is in its life cycle."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class SubscriptionAction(str, Enum):
    """What a subscription message asks the exchange to do."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class StreamType(str, Enum):
    """The kind of market data a stream carries."""

    ORDERBOOK = "orderbook"
    TRADES = "trades"
    TICKER = "ticker"
    KLINE = "kline"
    OTHER = "other"

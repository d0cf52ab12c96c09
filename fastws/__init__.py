"""fastws: low-latency exchange market data over WebSocket.

One base class, ``BaseWebSocketInterface``, gives every exchange adapter
connection state tracking, reconnection with backoff, subscription management,
health checks and metrics; a Cython frame core on picows and uvloop carries
each frame from the read buffer to the parser and the handler.
"""
from fastws._core import FrameHandler
from fastws.client import BaseWebSocketInterface, ConnectionGap, SequenceGap
from fastws.compression import CompressionNegotiationError, decompress_message
from fastws.pool import PooledWebSocketInterface
from fastws.config import WebSocketConfig, create_websocket_config
from fastws.errors import (ConnectionFailedError, ExchangeAPIError, ExchangeTimeoutError,
                           InvalidMessageError, MessageHandlerError, ProxyFailedError, RateLimitError,
                           SequenceGapError, SlowConsumerError, SubscriptionRejectedError)
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

__all__ = [
    "BaseWebSocketInterface",
    "CompressionNegotiationError",
    "ConnectionFailedError",
    "ConnectionGap",
    "ConnectionState",
    "ExchangeAPIError",
    "ExchangeName",
    "ExchangeTimeoutError",
    "FrameHandler",
    "InvalidMessageError",
    "MessageHandlerError",
    "PooledWebSocketInterface",
    "ProxyFailedError",
    "SlowConsumerError",
    "SequenceGap",
    "RateLimitError",
    "SequenceGapError",
    "StreamType",
    "SubscriptionAction",
    "SubscriptionRejectedError",
    "WebSocketConfig",
    "create_websocket_config",
    "decompress_message",
]

__version__ = "0.1.0"

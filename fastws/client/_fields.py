"""What every part of a client shares: its fields, the adapter's hooks, handler types.

``BaseWebSocketInterface`` is put together from one mixin per concern
(connection, subscriptions, health, supervisor, rotation). They all read the
same few fields (the live connection, the settings, the counters) and call the
adapter's methods; this class declares those once, for readers and type
checkers. It holds no code: the fields are set in
``BaseWebSocketInterface.__init__``, the methods defined there.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Hashable, Optional, Union

from fastws._core import FrameHandler, FramePublisher, Handover, RouteTable
from fastws.backoff import Reconnection
from fastws.config import WebSocketConfig
from fastws.errors import ExchangeAPIError
from fastws.metrics import ConnectionMetrics
from fastws.ratelimit import TokenBucket
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

if TYPE_CHECKING:
    from fastws.client.health import ConnectionGap, SequenceGap
    from fastws.client.redundancy import RedundantPaths
    from fastws.policy import Policy

__all__ = ["ClientFields", "ErrorHandler", "MessageHandler", "StateListener"]

MessageHandler = Callable[[Any], Union[None, Awaitable[None]]]
ErrorHandler = Callable[[ExchangeAPIError], Union[None, Awaitable[None]]]
StateListener = Callable[[ConnectionState, ConnectionState, Optional[str]], None]


class ClientFields:
    """The fields and adapter hooks the concerns of a client share (declarations only)."""

    exchange: ExchangeName
    config: WebSocketConfig
    logger: logging.Logger
    _message_handler: MessageHandler
    _error_handler: Optional[ErrorHandler]
    _error_handler_async: bool

    # The state machine (health.py).
    _state: ConnectionState
    _state_listeners: list[StateListener]
    _state_waiters: list[tuple[frozenset[ConnectionState], asyncio.Future[ConnectionState]]]

    # The live connection (connection.py): picows's transport, its frame
    # core, the future set when it ends, the outgoing rate limit.
    _ws: Any
    _core: Optional[FrameHandler]
    _disconnected: Optional[asyncio.Future[None]]
    _rate_limiter: TokenBucket
    _connecting_socket: Optional[socket.socket]
    _routes: Optional[RouteTable]
    _frame_tap: Optional[Callable[[bytes, int, int], None]]
    _frame_publisher: Optional[FramePublisher]
    _last_sequences: dict[str, int]

    # Subscriptions (subscriptions.py).
    _subscriptions: dict[str, None]
    _stream_policies: dict[str, "Policy"]
    _pending: deque[str]
    _acks: dict[Hashable, asyncio.Future[None]]

    # The supervisor (supervisor.py) and make before break (rotation.py).
    _supervisor: Optional[asyncio.Task[None]]
    _stopping: bool
    _reconnection: Reconnection
    _handover_next: Optional[Handover]
    _rotation_wanted: Optional[asyncio.Future[str]]
    _rotating: bool
    _handover_end: Optional[asyncio.TimerHandle]
    # Redundancy (redundancy.py): the group this connection is path
    # ``_path_index`` of, or None.
    _redundancy: "Optional[RedundantPaths]"
    _path_index: int

    # Health and errors (health.py).
    _metrics: ConnectionMetrics
    _gaps: "deque[ConnectionGap]"
    _sequence_gaps: "deque[SequenceGap]"
    _open_gap: "Optional[ConnectionGap]"
    _rate_samples: dict[str, tuple[int, int]]
    _last_error_log: dict[str, float]
    _suppressed_errors: dict[str, int]
    _background: set[asyncio.Task[Any]]
    # Why the next connection attempt waits (an exchange's attempt budget), or None.
    _waiting: Optional[str]
    # health_check()'s handler load: (core, monotonic ns, drain busy ns) last seen.
    _load_sample: Optional[tuple[FrameHandler, int, int]]

    # The adapter's methods and hooks, defined in ``BaseWebSocketInterface``.
    _connect: Callable[[], Awaitable[None]]
    _send_subscription_message: Callable[[list[str], SubscriptionAction], Awaitable[Optional[Awaitable[Any]]]]
    _parse_message: Callable[[Any], Any]
    _extract_stream_info: Callable[[Any], Optional[tuple[str, StreamType]]]
    _frame_handler_options: Callable[[], dict[str, Any]]
    _before_connect: Callable[[], Awaitable[None]]
    _stream_problem: Callable[[str], Optional[str]]
    _stream_is_snapshot: Callable[[str], bool]

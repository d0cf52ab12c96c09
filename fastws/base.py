"""``BaseWebSocketInterface``: the life cycle every exchange adapter shares.

An adapter implements four methods (``_connect``, ``_send_subscription_message``,
``_parse_message``, ``_extract_stream_info``). This class does the slow, rare
work around them in plain asyncio: a supervisor task that connects, watches
and reconnects; subscriptions (tracked set, pending queue, acks, rate limit);
state tracking; health check and metrics. Every frame goes through the
compiled core (``fastws._core.FrameHandler``), never through this module.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Hashable, Iterable, Mapping, Optional, Union

import msgspec
from picows import WSCloseCode, WSParsedURL, WSUpgradeRequest, WSUpgradeResponse, ws_connect

from fastws._core import FrameHandler, Handover, RouteTable, is_async_callable, monotonic_time_ns
from fastws.backoff import ReconnectPolicy, is_retryable
from fastws.compression import CompressionNegotiationError, negotiate, offer_header
from fastws.config import WebSocketConfig
from fastws.errors import (ConnectionFailedError, ExchangeAPIError, ExchangeTimeoutError,
                           InvalidMessageError, MessageHandlerError, RateLimitError,
                           SequenceGapError, SubscriptionRejectedError)
from fastws.metrics import ConnectionMetrics, latency_percentiles
from fastws.ratelimit import TokenBucket
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

__all__ = ["BaseWebSocketInterface", "ConnectionGap", "SequenceGap", "MessageHandler", "ErrorHandler"]

MessageHandler = Callable[[Any], Union[None, Awaitable[None]]]
ErrorHandler = Callable[[ExchangeAPIError], Union[None, Awaitable[None]]]
StateListener = Callable[[ConnectionState, ConnectionState, Optional[str]], None]

# Seconds between two log lines about errors of the same kind.
_ERROR_LOG_INTERVAL = 1.0
# Seconds allowed for a closing handshake before the socket is aborted.
_CLOSE_TIMEOUT = 2.0
# How many past gaps health_check() lists.
_GAPS_KEPT = 100
# Seconds the new connection keeps de-duplicating after a make-before-break,
# for the old connection's last messages still in flight on the new one.
_HANDOVER_GRACE = 1.0
# Seconds the two connections overlap at least once the new one is
# subscribed: messages sent on the old one just before the new subscription
# took effect may still be in flight (two TCP connections, possibly two
# servers, do not keep each other's order).
_MIN_OVERLAP = 0.1


@dataclass
class ConnectionGap:
    """A period in which the feed was down: messages in it were not received.

    Attributes:
        start: ``time.time()`` when the connection was lost.
        end: ``time.time()`` when it was back and resubscribed (``None`` while open).
        reason: Why it was lost (``"peer closed (1001)"``, ``"stale"``, ...).
    """

    start: float
    reason: str
    end: Optional[float] = None

    @property
    def duration(self) -> Optional[float]:
        """Seconds the gap lasted, ``None`` while it is open."""
        return None if self.end is None else self.end - self.start


@dataclass
class SequenceGap:
    """Messages of one stream known missing from its sequence numbers.

    Attributes:
        time: ``time.time()`` when the gap was seen.
        stream: The stream.
        expected: The sequence number that should have come next.
        received: The first sequence number that came instead.
        last: The last sequence number of the message that revealed the gap.
    """

    time: float
    stream: str
    expected: int
    received: int
    last: int

    @property
    def missing(self) -> int:
        """How many sequence numbers were skipped."""
        return self.received - self.expected


class BaseWebSocketInterface(ABC):
    """One exchange connection with reconnection, subscriptions and metrics.

    Args:
        exchange: The exchange's name (used in logs and the health check).
        config: Connection settings.
        message_handler: Called with every parsed data message; a plain
            function or an ``async def`` (decided once here).
        error_handler: Called with an ``ExchangeAPIError`` for every parse or
            handler error, rejected subscription, failed attempt and final
            failure; sync or async. Its own exceptions are logged and ignored.

    Use as ``async with Adapter(...) as ws: await ws.subscribe([...])``, or call
    ``start()`` and ``stop()``.
    """

    def __init__(self, exchange: ExchangeName, config: WebSocketConfig,
                 message_handler: MessageHandler,
                 error_handler: Optional[ErrorHandler] = None) -> None:
        if not isinstance(config, WebSocketConfig):
            raise TypeError(f"config must be a WebSocketConfig, got {type(config).__name__}")
        if not callable(message_handler):
            raise TypeError("message_handler must be callable")
        self.exchange = exchange
        self.config = config
        self.logger = logging.getLogger(f"fastws.{exchange}")
        self._message_handler = message_handler
        self._error_handler = error_handler
        self._error_handler_async = error_handler is not None and is_async_callable(error_handler)

        self._state = ConnectionState.DISCONNECTED
        self._state_listeners: list[StateListener] = []
        self._state_waiters: list[tuple[frozenset[ConnectionState], asyncio.Future[ConnectionState]]] = []

        self._ws: Any = None          # picows WSTransport of the live connection
        self._core: Optional[FrameHandler] = None
        self._disconnected: Optional[asyncio.Future[None]] = None
        self._supervisor: Optional[asyncio.Task[None]] = None
        self._stopping = False
        self._connecting_socket: Optional[socket.socket] = None

        self._subscriptions: dict[str, None] = {}   # ordered set of wanted streams
        self._pending: deque[str] = deque()          # asked for while not connected
        self._acks: dict[Hashable, asyncio.Future[None]] = {}
        self._rate_limiter = TokenBucket(config.max_messages_per_second)

        self._policy = ReconnectPolicy(config.reconnect_delay, config.reconnect_backoff,
                                       config.max_reconnect_delay, config.reconnect_jitter)
        self._reconnect_attempts = 0
        self._metrics = ConnectionMetrics()
        self._gaps: deque[ConnectionGap] = deque(maxlen=_GAPS_KEPT)
        self._sequence_gaps: deque[SequenceGap] = deque(maxlen=_GAPS_KEPT)
        # Last sequence number per stream, carried from one connection to the
        # next so that updates lost in a reconnection are reported as well.
        self._last_sequences: dict[str, int] = {}
        # The typed fast route: adapters that offer one fill this table; it
        # outlives connections (each new core is given it).
        self._routes: Optional[RouteTable] = None
        # health_check() rates: per stream, (messages, monotonic ns) last seen.
        self._rate_samples: dict[str, tuple[int, int]] = {}
        self._open_gap: Optional[ConnectionGap] = None
        self._last_error_log: dict[str, float] = {}
        self._suppressed_errors: dict[str, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Make before break: the Handover the next connection opened joins as
        # the new side; a wake-up for the watch loop when an adapter asks for
        # a rotation; the timer that ends de-duplication after one.
        self._handover_next: Optional[Handover] = None
        self._rotation_wanted: Optional[asyncio.Future[str]] = None
        self._rotating = False
        self._handover_end: Optional[asyncio.TimerHandle] = None
        self._frame_tap: Optional[Callable[[bytes, int, int], None]] = None

    # ------------------------------------------------------------------ the four
    @abstractmethod
    async def _connect(self) -> None:
        """Open the connection; usually ``await self._open_websocket()``."""

    @abstractmethod
    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        """Send one (un)subscribe request for ``streams``.

        Returns:
            ``None`` when the exchange sends no ack, else an awaitable that
            completes when the ack arrives (see ``_expect_ack``) and raises
            ``SubscriptionRejectedError`` on rejection.
        """

    @abstractmethod
    async def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:
        """Turn a frame payload into a message, or ``None`` for a control message.

        ``raw_message`` is a ``memoryview`` into the socket's read buffer, valid
        only during this call (until its first ``await``): copy what you keep.
        May be a plain ``def``.
        """

    @abstractmethod
    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        """Return ``(stream_id, stream_type)`` of a parsed message, or ``None``.

        Called for every message: keep it to a few lookups, and hoist enum
        members into module constants (``StreamType.X`` costs ~85 ns on 3.11).
        """

    # ------------------------------------------------------------ for adapters
    def _frame_handler_options(self) -> dict[str, Any]:
        """Extra ``FrameHandler`` arguments for this adapter's connections.

        Override to have the core read the exchange's event time and sequence
        numbers from raw frames (``event_time_key``, ``event_time_unit_ns``,
        ``first_sequence_key``, ``last_sequence_key``, ``scan_window``).
        """
        return {}

    async def _before_connect(self) -> None:
        """Wait, if the exchange requires it, before a connection attempt.

        Runs outside the connect timeout (``config.timeout``); for limits on
        connection attempts.
        """

    def _request_reconnect(self, reason: str) -> None:
        """Replace the live connection: the exchange announced it will close it.

        With ``make_before_break`` the supervisor opens and subscribes the
        replacement before closing this one (no gap); otherwise it closes the
        connection and reconnects. Safe to call from ``_parse_message``;
        ignored while a replacement is already under way.
        """
        if self._ws is None or self._ws.is_disconnected or self._stopping or self._rotating:
            return
        if self.config.make_before_break:
            wanted = self._rotation_wanted
            if wanted is not None and not wanted.done():
                self.logger.info("replacing the connection: %s", reason,
                                 extra={"exchange": self.exchange, "reason": reason})
                wanted.set_result(reason)
            return
        self.logger.warning("reconnecting: %s", reason, extra={"exchange": self.exchange, "reason": reason})
        task = asyncio.get_running_loop().create_task(self._close_transport(WSCloseCode.GOING_AWAY, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _open_websocket(self, url: Optional[str] = None,
                              extra_headers: Optional[Mapping[str, str]] = None) -> None:
        """Open the picows connection with the frame core as its listener.

        Sets ``self._ws``. Auto-ping (``ping_interval``/``pong_timeout``) and
        auto-pong are on; ``max_frame_size`` is enforced by picows and, for
        fragmented messages, by the core.
        """
        handover = self._handover_next
        # A replacement connection checks its sequences against its own first
        # message: the old connection is still delivering up to there.
        core = FrameHandler(self._parse_message, self._extract_stream_info,
                            self._message_handler, self._on_core_error,
                            self._on_core_disconnected,
                            max_message_size=self.config.max_frame_size,
                            routes=self._routes, on_sequence_gap=self._on_sequence_gap,
                            last_sequences=self._last_sequences if handover is None else None,
                            **self._frame_handler_options())
        if handover is not None:
            core.begin_handover(handover, True)
        core.tap = self._frame_tap
        headers = dict(self.config.extra_headers or {})
        headers.update(extra_headers or {})
        cfg = self.config
        if cfg.enable_compression:
            headers["Sec-WebSocket-Extensions"] = offer_header(cfg.compression_client_window_bits,
                                                               cfg.compression_server_window_bits)

        def listener_factory(request: Optional[WSUpgradeRequest] = None,
                             response: Optional[WSUpgradeResponse] = None) -> FrameHandler:
            # Called by picows with the upgrade response, before any frame:
            # the core is set up for the negotiated extension here. An
            # exception fails the attempt (picows drops the socket). Without
            # a response (a harness that opens no socket) nothing is negotiated.
            if response is not None:
                self._negotiate_extensions(core, response)
            return core

        try:
            transport, _ = await ws_connect(
                listener_factory, url or self.config.url,
                socket_factory=self._make_socket,
                websocket_handshake_timeout=self.config.timeout,
                enable_auto_ping=True,
                auto_ping_idle_timeout=self.config.ping_interval,
                auto_ping_reply_timeout=self.config.pong_timeout,
                enable_auto_pong=True,
                max_frame_size=self.config.max_frame_size,
                disconnect_on_exception=False,
                extra_headers=headers or None,
                ssl_context=self.config.ssl_context,
                logger_name=f"{self.exchange}",
                max_redirects=0,
            )
        except BaseException:
            # A cancelled or failed attempt must not leave its socket behind:
            # shutting the socket down makes the transport close itself
            # (and cancel picows's handshake timer) at once.
            if core.transport is not None:
                # The upgrade completed (the core has its transport, picows's
                # auto-ping runs) before the attempt was cancelled: abort it.
                core.transport.disconnect(graceful=False)
            sock = self._connecting_socket
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            raise
        finally:
            self._connecting_socket = None
        if transport.is_disconnected and core.transport is None:
            # picows returns a transport already closed (and never calls the
            # listener) when the peer goes away before the upgrade reply: a
            # failed attempt, not a connection.
            raise ConnectionFailedError(f"{self.exchange}: connection lost during the WebSocket handshake "
                                        f"with {url or self.config.url}")
        self._core = core
        self._ws = transport
        self._disconnected = asyncio.get_running_loop().create_future()
        if transport.is_disconnected:
            # The upgrade succeeded and the peer closed at once (frames and
            # the close came with the 101): a connection that already ended,
            # so its counters and close reason are reported as for any other.
            self._disconnected.set_result(None)
        # Exchanges count control messages per connection: a new connection
        # starts with a fresh bucket, so a resubscribe goes out at once.
        self._rate_limiter = TokenBucket(self.config.max_messages_per_second)

    def _negotiate_extensions(self, core: FrameHandler, response: WSUpgradeResponse) -> None:
        """Read the server's ``Sec-WebSocket-Extensions`` answer and set up the core.

        Raises:
            CompressionNegotiationError: the server accepted an extension that
                was not offered, or answered with parameters not allowed.
        """
        cfg = self.config
        answer = response.headers.getall("Sec-WebSocket-Extensions", [])
        if not cfg.enable_compression:
            if answer:
                raise CompressionNegotiationError(
                    f"{self.exchange}: the server accepted extension(s) {', '.join(answer)!r}, "
                    "but none was offered")
            return
        try:
            params = negotiate(answer, cfg.compression_client_window_bits, cfg.compression_server_window_bits)
        except CompressionNegotiationError as exc:
            raise CompressionNegotiationError(f"{self.exchange}: {exc.message} "
                                              f"(Sec-WebSocket-Extensions: {', '.join(answer)!r})") from exc
        if params is None:
            self.logger.info("server declined permessage-deflate: uncompressed connection",
                             extra={"exchange": self.exchange})
            return
        core.enable_deflate(params.server_no_context_takeover, params.client_no_context_takeover,
                            params.server_max_window_bits, params.client_max_window_bits,
                            cfg.compression_threshold)

    async def _make_socket(self, parsed_url: WSParsedURL) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(parsed_url.host, parsed_url.port, type=socket.SOCK_STREAM)
        if not infos:
            raise ConnectionFailedError(f"cannot resolve {parsed_url.host}")
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._connecting_socket = sock
        try:
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            self._connecting_socket = None
            raise
        return sock

    def _expect_ack(self, key: Hashable) -> asyncio.Future[None]:
        """Register a wait for the ack identified by ``key`` (e.g. a request id).

        Call it before sending the request; return the future from
        ``_send_subscription_message``. Resolve it from ``_parse_message`` with
        ``_resolve_ack`` or ``_reject_ack``.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[key] = future
        return future

    def _resolve_ack(self, key: Hashable) -> bool:
        """Mark the ack ``key`` as received. Returns False if nobody waited for it."""
        future = self._acks.pop(key, None)
        if future is None or future.done():
            return False
        future.set_result(None)
        return True

    def _reject_ack(self, key: Hashable, error: ExchangeAPIError) -> bool:
        """Fail the wait for ack ``key`` with ``error``. False if nobody waited."""
        future = self._acks.pop(key, None)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    # ------------------------------------------------------------------ public
    @property
    def state(self) -> ConnectionState:
        """The current ``ConnectionState``."""
        return self._state

    @property
    def is_connected(self) -> bool:
        """True while the state is CONNECTED."""
        return self._state is ConnectionState.CONNECTED

    @property
    def subscriptions(self) -> list[str]:
        """The streams the user wants, in the order they were asked for."""
        return list(self._subscriptions)

    @property
    def metrics(self) -> dict[str, Any]:
        """A snapshot of the client's metrics (a new dict)."""
        return self._metrics.snapshot(self._core)

    @property
    def gaps(self) -> list[ConnectionGap]:
        """The most recent gaps in the feed, oldest first."""
        return list(self._gaps)

    @property
    def sequence_gaps(self) -> list[SequenceGap]:
        """The most recent sequence gaps (messages known missing), oldest first."""
        return list(self._sequence_gaps)

    def set_frame_tap(self, tap: Optional[Callable[[bytes, int, int], None]]) -> None:
        """Call ``tap(payload, receive_ns, opcode)`` for every whole data message received.

        ``payload`` is a copy of the message (control replies included),
        ``receive_ns`` its wall-clock receive time in Unix nanoseconds,
        ``opcode`` 1 (text) or 2 (binary); for recording a feed. It applies to
        the live connection and every later one; ``None`` removes it. While a
        make-before-break overlap lasts, both connections' messages reach it
        (a recorder that wants one copy of each uses ``make_before_break=False``).
        """
        if tap is not None and not callable(tap):
            raise TypeError("tap must be callable or None")
        self._frame_tap = tap
        if self._core is not None:
            self._core.tap = tap

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(old, new, reason)`` on every state change."""
        self._state_listeners.append(listener)

    async def wait_for_state(self, *states: ConnectionState,
                             timeout: Optional[float] = None) -> ConnectionState:
        """Wait until the state is one of ``states``; return it.

        Raises:
            ExchangeTimeoutError: not reached within ``timeout`` seconds.
        """
        if self._state in states:
            return self._state
        future: asyncio.Future[ConnectionState] = asyncio.get_running_loop().create_future()
        entry = (frozenset(states), future)
        self._state_waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ExchangeTimeoutError(
                f"{self.exchange}: state {', '.join(s.value for s in states)} not reached "
                f"within {timeout} s (now {self._state.value})") from None
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    async def start(self) -> None:
        """Start the supervisor and wait for the first connection.

        Returns once CONNECTED. Raises ``ConnectionFailedError`` if the state
        becomes FAILED first (``max_reconnect_attempts`` spent, or a failure
        that retrying cannot fix).
        """
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._stopping = False
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"fastws-{self.exchange}-supervisor")
        self._supervisor.add_done_callback(self._on_supervisor_done)
        state = await self.wait_for_state(ConnectionState.CONNECTED, ConnectionState.FAILED,
                                          ConnectionState.CLOSED)
        if state is not ConnectionState.CONNECTED:
            raise ConnectionFailedError(f"{self.exchange}: could not connect to {self.config.url} "
                                        f"(state {state.value})")

    async def stop(self) -> None:
        """Close the connection and end every task, socket and timer it owns.

        Safe from any state and safe to call twice. Ends in CLOSED.
        """
        if self._state is ConnectionState.CLOSED and self._supervisor is None:
            return
        self._stopping = True
        if self._state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSING, "stop requested")
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and not supervisor.done():
            supervisor.cancel()
        # Closing the socket first also ends a supervisor whose cancellation
        # was swallowed (asyncio.wait_for before 3.12 can lose one when the
        # awaited ack completes in the same loop iteration).
        await self._close_transport(WSCloseCode.OK, "client stop")
        if supervisor is not None:
            try:
                await supervisor
            except (asyncio.CancelledError, Exception):
                pass
        await self._close_transport(WSCloseCode.OK, "client stop")
        self._fail_acks(ConnectionFailedError(f"{self.exchange}: stopped before the ack arrived"))
        self._cancel_handover_end()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._close_gap()
        self._set_state(ConnectionState.CLOSED, "stopped")

    async def __aenter__(self) -> "BaseWebSocketInterface":
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def subscribe(self, streams: Iterable[str]) -> None:
        """Subscribe to ``streams`` and wait for the exchange's ack.

        Streams asked for while not connected are queued (in order) and sent
        on connect; the call then returns at once, and a later rejection
        reaches the error handler. Every tracked stream is sent again after a
        reconnect.

        Raises:
            ExchangeTimeoutError: no ack within ``subscription_timeout`` (408).
            SubscriptionRejectedError: the exchange refused (403); the streams
                are no longer tracked.
            RateLimitError: the pending queue is full (429).
        """
        new = [s for s in dict.fromkeys(streams) if s not in self._subscriptions]
        if not new:
            return
        if not self.is_connected:
            if len(self._pending) + len(new) > self.config.max_pending_subscriptions:
                raise RateLimitError(
                    f"{self.exchange}: pending subscription queue full "
                    f"({self.config.max_pending_subscriptions} streams) while not connected")
            for stream in new:
                self._subscriptions[stream] = None
            self._pending.extend(new)
            self.logger.info("queued %d subscription(s) until connected", len(new),
                             extra={"exchange": self.exchange, "streams": new})
            return
        for stream in new:
            self._subscriptions[stream] = None
        # A rejected batch's streams are dropped by _request; the batches
        # the exchange accepted stay tracked (and resubscribed).
        await self._request(new, SubscriptionAction.SUBSCRIBE)

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        """Stop receiving ``streams``; waits for the ack when connected."""
        wanted = [s for s in dict.fromkeys(streams) if s in self._subscriptions]
        for stream in wanted:
            self._subscriptions.pop(stream, None)
            # A later subscription starts afresh: no gap against the old numbers.
            self._last_sequences.pop(stream, None)
            if self._core is not None:
                self._core.forget_stream(stream)
        queued = set(wanted).intersection(self._pending)
        if queued:
            self._pending = deque(s for s in self._pending if s not in queued)
        sent = [s for s in wanted if s not in queued]
        if sent and self.is_connected:
            await self._request(sent, SubscriptionAction.UNSUBSCRIBE)

    async def send_message(self, message: Union[dict[str, Any], str, bytes]) -> None:
        """Send a control message: a dict (JSON via msgspec), text, or bytes.

        Waits for the outgoing rate limit. Raises ``ConnectionFailedError``
        when there is no open connection.
        """
        limiter = self._rate_limiter
        await limiter.acquire()
        core = self._core
        if core is None or self._ws is None or self._ws.is_disconnected:
            raise ConnectionFailedError(f"{self.exchange}: cannot send, not connected")
        if limiter is not self._rate_limiter:
            # The connection changed while this message waited: the new one
            # paces its own messages (its resubscribe among them), and this
            # one must not add to them behind the limiter's back.
            raise ConnectionFailedError(f"{self.exchange}: connection replaced before the message was sent")
        if isinstance(message, dict):
            core.send_text(msgspec.json.encode(message))
        elif isinstance(message, str):
            core.send_text(message)
        else:
            core.send_bytes(message)

    async def health_check(self) -> dict[str, Any]:
        """Return the connection's health as a dict.

        Keys: ``exchange``, ``state``, ``is_connected``, ``subscriptions``,
        ``reconnect_attempts``, ``last_message_age`` (seconds, ``None`` before
        the first message), ``metrics``, plus ``pending_subscriptions``,
        ``streams``, ``gaps`` and ``sequence_gaps``.

        Per stream (this connection): ``type``, ``messages``,
        ``messages_per_second`` (since the previous health check, or since
        the stream's first message), ``last_message_age``, and where the
        adapter reads them, ``event_latency_ms`` (exchange event time to
        local receive: ``p50``, ``p99``), ``last_sequence``,
        ``sequence_gaps`` and ``missing_sequences``.
        """
        core = self._core
        now_ns = monotonic_time_ns()
        last_age = None
        streams: dict[str, dict[str, Any]] = {}
        if core is not None and core.frames_received:
            last_age = (now_ns - core.last_receive_ns) / 1e9
            for stream_id, stats in core.stream_stats().items():
                streams[stream_id] = self._stream_health(stream_id, stats, now_ns)
        return {
            "exchange": self.exchange,
            "state": self._state.value,
            "is_connected": self.is_connected,
            "subscriptions": list(self._subscriptions),
            "pending_subscriptions": list(self._pending),
            "reconnect_attempts": self._reconnect_attempts,
            "last_message_age": last_age,
            "streams": streams,
            "gaps": [{"start": g.start, "end": g.end, "reason": g.reason} for g in self._gaps],
            "sequence_gaps": [{"time": g.time, "stream": g.stream, "expected": g.expected,
                               "received": g.received, "missing": g.missing} for g in self._sequence_gaps],
            "metrics": self.metrics,
        }

    def _stream_health(self, stream_id: str, stats: Any, now_ns: int) -> dict[str, Any]:
        previous = self._rate_samples.get(stream_id)
        if previous is None or previous[0] > stats.messages or now_ns - previous[1] < 50_000_000:
            since, count = stats.first_receive_ns, stats.messages
        else:
            since, count = previous[1], stats.messages - previous[0]
        self._rate_samples[stream_id] = (stats.messages, now_ns)
        elapsed = (now_ns - since) / 1e9
        entry: dict[str, Any] = {
            "type": stats.stream_type.value if isinstance(stats.stream_type, StreamType)
            else str(stats.stream_type),
            "messages": stats.messages,
            "messages_per_second": count / elapsed if elapsed > 0 else None,
            "last_message_age": (now_ns - stats.last_receive_ns) / 1e9,
        }
        if stats.last_event_ns:
            # The core's histogram is in microseconds; the helper reports the
            # unit it is given divided by 1000.
            entry["event_latency_ms"] = latency_percentiles(stats.event_latency_histogram(), (0.5, 0.99))
            entry["clock_ahead"] = stats.clock_ahead
        if stats.last_sequence >= 0:
            entry["last_sequence"] = stats.last_sequence
            entry["sequence_gaps"] = stats.sequence_gaps
            entry["missing_sequences"] = stats.missing_sequences
        return entry

    # ---------------------------------------------------------- the supervisor
    async def _supervise(self) -> None:
        """Connect, watch, reconnect: the connection's whole life cycle."""
        cfg = self.config
        first = True
        while not self._stopping:
            delay = self._policy.next_delay() if not first else 0.0
            if delay:
                self.logger.info("reconnecting in %.3f s (attempt %d)", delay, self._reconnect_attempts,
                                 extra={"exchange": self.exchange, "delay": delay})
                await asyncio.sleep(delay)
            self._set_state(ConnectionState.CONNECTING, None)
            await self._before_connect()
            self._metrics.connection_attempts += 1
            try:
                await asyncio.wait_for(self._connect(), cfg.timeout)
                if self._ws is None:
                    raise ConnectionFailedError(f"{self.exchange}: _connect() returned without a connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failed attempt is reported and retried or fatal
                # _connect may have opened the socket and failed after it.
                await self._close_transport(WSCloseCode.GOING_AWAY, "connect failed")
                if self._core is not None:
                    self._metrics.fold(self._core)   # what it received still counts
                self._ws = self._core = self._disconnected = None
                error = self._as_connection_error(exc)
                self._metrics.errors += 1
                self._emit_error(error)
                self.logger.warning("connection attempt failed: %s", error,
                                    extra={"exchange": self.exchange, "url": cfg.url})
                self._reconnect_attempts += 1
                if not is_retryable(exc) or (cfg.max_reconnect_attempts
                                             and self._reconnect_attempts > cfg.max_reconnect_attempts):
                    self._fail(f"gave up after {self._reconnect_attempts} attempt(s): {error.message}")
                    return
                if first:
                    self._policy.next_delay()   # the immediate retry is for drops, not refusals
                first = False
                self._set_state(ConnectionState.RECONNECTING, error.message)
                continue
            first = False
            await self._on_connected()
            if self._stopping:
                return
            reason = await self._watch()
            self._on_disconnected(reason)
            if self._stopping:
                return
            self._reconnect_attempts += 1
            if cfg.max_reconnect_attempts and self._reconnect_attempts > cfg.max_reconnect_attempts:
                self._fail(f"connection lost {self._reconnect_attempts} times without a healthy period")
                return
            self._set_state(ConnectionState.RECONNECTING, reason)

    def _on_supervisor_done(self, task: asyncio.Task[None]) -> None:
        """A supervisor that died of a bug must not leave a silent feed behind."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.logger.error("supervisor failed: %r", exc, exc_info=exc, extra={"exchange": self.exchange})
        if self._ws is not None and not self._ws.is_disconnected:
            self._ws.disconnect(graceful=False)
        self._fail(f"internal error in the supervisor: {type(exc).__name__}: {exc}")

    async def _on_connected(self) -> None:
        was_reconnect = self._metrics.connections > 0
        self._metrics.connections += 1
        if was_reconnect:
            self._metrics.reconnections += 1
        self._metrics.connected_since = time.monotonic()
        self._set_state(ConnectionState.CONNECTED, None)
        await self._resubscribe()
        self._close_gap()

    async def _resubscribe(self, replacing: bool = False) -> None:
        """Send every tracked stream (pending ones included) after connecting.

        A rejection is reported and the other streams go on. Any other
        failure is reported too, or raised when ``replacing`` (the new side of
        a make-before-break, which then gives up and keeps the old one).
        """
        self._pending.clear()
        streams = list(self._subscriptions)
        if not streams:
            return
        self.logger.info("subscribing %d stream(s)", len(streams),
                         extra={"exchange": self.exchange, "streams": len(streams)})
        try:
            await self._request(streams, SubscriptionAction.SUBSCRIBE)
        except SubscriptionRejectedError as exc:
            self._emit_error(exc)
        except ExchangeAPIError as exc:
            if replacing:
                raise
            self._metrics.errors += 1
            self._emit_error(exc)

    async def _request(self, streams: list[str], action: SubscriptionAction) -> None:
        """Send (un)subscribe requests in batches and wait for each ack.

        The adapter sends through ``send_message``, which waits for the
        outgoing rate limit.
        """
        size = self.config.subscription_batch_size
        rejected: list[SubscriptionRejectedError] = []
        for start in range(0, len(streams), size):
            batch = streams[start:start + size]
            if self._ws is None or self._ws.is_disconnected:
                raise ConnectionFailedError(f"{self.exchange}: connection lost before {action.value}")
            ack = await self._send_subscription_message(batch, action)
            if ack is None:
                continue
            try:
                await asyncio.wait_for(ack, self.config.subscription_timeout)
            except asyncio.TimeoutError:
                raise ExchangeTimeoutError(
                    f"{self.exchange}: no ack for {action.value} of {len(batch)} stream(s) within "
                    f"{self.config.subscription_timeout} s: {batch[:5]}") from None
            except SubscriptionRejectedError as exc:
                if action is SubscriptionAction.SUBSCRIBE:
                    # Exchanges that ack channel by channel say which ones
                    # they refused; the others of the batch are subscribed.
                    refused = batch if exc.rejected_streams is None else exc.rejected_streams
                    for stream in refused:
                        self._subscriptions.pop(stream, None)
                rejected.append(exc)
            else:
                self.logger.info("%s acknowledged for %d stream(s)", action.value, len(batch),
                                 extra={"exchange": self.exchange, "streams": batch})
        if rejected:
            raise rejected[0]

    async def _watch(self) -> str:
        """Wait while connected (replacing the connection when due); return why it ended."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        connected_at = time.monotonic()
        healthy = False
        while True:
            core = self._core
            disconnected = self._disconnected
            assert core is not None and disconnected is not None
            wanted: asyncio.Future[str] = loop.create_future()
            self._rotation_wanted = wanted
            try:
                now = time.monotonic()
                deadlines = []
                if cfg.stale_timeout is not None:
                    last = core.last_receive_ns / 1e9
                    deadlines.append(last + cfg.stale_timeout - monotonic_time_ns() / 1e9)
                if cfg.max_connection_age is not None:
                    deadlines.append(connected_at + cfg.max_connection_age - now)
                if not healthy:
                    deadlines.append(connected_at + cfg.healthy_after - now)
                timeout = max(0.0, min(deadlines)) if deadlines else None
                await asyncio.wait((disconnected, wanted), timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._rotation_wanted = None
                wanted.cancel()
            if disconnected.done():
                return self._close_reason()
            now = time.monotonic()
            if not healthy and now - connected_at >= cfg.healthy_after:
                healthy = True
                self._reconnect_attempts = 0
                self._policy.reset()
            if cfg.stale_timeout is not None and \
                    (monotonic_time_ns() - core.last_receive_ns) / 1e9 >= cfg.stale_timeout:
                reason = f"stale: no message for {cfg.stale_timeout} s"
                await self._close_transport(WSCloseCode.GOING_AWAY, "stale")
                return reason
            replace = None
            if wanted.done() and not wanted.cancelled():
                replace = wanted.result()
            elif cfg.max_connection_age is not None and now - connected_at >= cfg.max_connection_age:
                replace = f"max_connection_age {cfg.max_connection_age} s reached"
            if replace is None:
                continue
            if cfg.make_before_break and await self._rotate(replace):
                connected_at = time.monotonic()
                continue
            if self._ws is None or self._ws.is_disconnected:
                return self._close_reason()
            await self._close_transport(WSCloseCode.GOING_AWAY, replace[:100])
            self._policy.reset()
            return replace

    async def _rotate(self, reason: str) -> bool:
        """Make before break: replace the live connection without a gap.

        Opens the new connection and subscribes it while the old one still
        delivers; both cores share a ``Handover`` that lets each message
        through once. When the new connection has caught up on every stream
        (or after ``overlap_timeout``), the old one is closed. Returns False
        when the new connection could not be opened or subscribed: the old one
        is then still live and the caller falls back to close-and-reconnect.
        """
        cfg = self.config
        old_ws, old_core, old_disconnected = self._ws, self._core, self._disconnected
        old_limiter = self._rate_limiter
        assert old_core is not None and old_disconnected is not None
        started = time.time()
        # The grace period of a previous replacement ends here: its timer must
        # not take this overlap's de-duplication away from the old core.
        self._cancel_handover_end()
        handover = Handover()
        old_core.begin_handover(handover, False)
        self._rotating = True
        self.logger.info("replacing the connection (make before break): %s", reason,
                         extra={"exchange": self.exchange, "reason": reason})
        finished = False
        try:
            await self._before_connect()
            self._metrics.connection_attempts += 1
            self._handover_next = handover
            try:
                await asyncio.wait_for(self._connect(), cfg.timeout)
            finally:
                self._handover_next = None
            if self._ws is old_ws or self._ws is None or self._ws.is_disconnected:
                raise ConnectionFailedError(f"{self.exchange}: the replacement connection did not open")
            await self._resubscribe(replacing=True)
            handover.mark_subscribed()
            unaligned = await self._wait_aligned(handover, old_ws)
            finished = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # the new connection failed: the old one is still live
            error = self._as_connection_error(exc)
            self._metrics.errors += 1
            self._emit_error(error)
            self.logger.warning("replacement connection failed, closing and reconnecting instead: %s", error,
                                extra={"exchange": self.exchange})
            return False
        finally:
            self._rotating = False
            if not finished:
                if self._ws is not old_ws:
                    await self._close_transport(WSCloseCode.GOING_AWAY, "replacement failed")
                    if self._core is not None:
                        self._metrics.fold(self._core)
                    self._ws, self._core, self._disconnected = old_ws, old_core, old_disconnected
                    self._rate_limiter = old_limiter
                old_core.end_handover()
        # The new connection carries everything from here: the old one closes.
        self._close_replaced(old_ws, old_core)
        self._metrics.connections += 1
        self._metrics.reconnections += 1
        self._metrics.rotations += 1
        self._metrics.connected_since = time.monotonic()
        new_core = self._core
        assert new_core is not None
        self._handover_end = asyncio.get_running_loop().call_later(_HANDOVER_GRACE, new_core.end_handover)
        if unaligned:
            # Messages of these streams seen first on the new connection
            # before it caught up may be missing: a gap, reported as one.
            gap = ConnectionGap(start=started, end=time.time(),
                                reason=f"make before break: {len(unaligned)} stream(s) not caught up "
                                       f"within {cfg.overlap_timeout} s: {', '.join(unaligned[:10])}")
            self._gaps.append(gap)
            self._emit_error(ConnectionFailedError(f"{self.exchange}: {gap.reason}"))
            self.logger.warning("%s", gap.reason, extra={"exchange": self.exchange})
        self.logger.info("connection replaced in %.3f s (%s)", time.time() - started, reason,
                         extra={"exchange": self.exchange, "reason": reason})
        return True

    async def _wait_aligned(self, handover: Handover, old_ws: Any) -> list[str]:
        """Wait until the new connection has caught up on every stream it has seen.

        Returns the streams not caught up when the overlap ends (timeout, or
        the old connection gone): the handover is finished either way.
        """
        now = time.monotonic()
        earliest = now + min(_MIN_OVERLAP, self.config.overlap_timeout)
        deadline = now + self.config.overlap_timeout
        while True:
            if self._ws is None or self._ws.is_disconnected:
                raise ConnectionFailedError(f"{self.exchange}: the replacement connection closed while "
                                            "catching up")
            now = time.monotonic()
            if (now >= earliest and not handover.unaligned_streams()) or old_ws.is_disconnected or \
                    now >= deadline:
                return list(handover.finish())
            await asyncio.sleep(0.005)

    def _close_replaced(self, ws: Any, core: FrameHandler) -> None:
        """Close a replaced connection in the background; its counters still count."""
        async def close() -> None:
            try:
                await self._close_connection(ws, core, WSCloseCode.OK, "replaced")
            finally:
                ws.disconnect(graceful=False)
                self._metrics.fold(core)
        task = asyncio.get_running_loop().create_task(close(), name=f"fastws-{self.exchange}-retire")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _cancel_handover_end(self) -> None:
        if self._handover_end is not None:
            self._handover_end.cancel()
            self._handover_end = None

    def _close_reason(self) -> str:
        """Say why the live connection ended, from the close handshake."""
        core, ws = self._core, self._ws
        if ws is not None and ws.close_handshake is not None:
            sent = ws.close_handshake.sent
            recv = ws.close_handshake.recv
            if sent is not None and not ws.close_handshake.recv_then_sent:
                return f"client closed ({int(sent.code)}): {sent.reason or ''}".rstrip(": ")
            if recv is not None:
                return f"peer closed ({int(recv.code)}){': ' + recv.reason if recv.reason else ''}"
        if core is not None and core.close_code:
            return f"peer closed ({core.close_code})"
        return "connection lost (no close frame)"

    def _on_disconnected(self, reason: str) -> None:
        self._cancel_handover_end()
        core = self._core
        if core is not None:
            self._metrics.fold(core)
            self._keep_sequences(core)
        self._core = None
        self._ws = None
        self._disconnected = None
        self._metrics.connected_since = None
        self._fail_acks(ConnectionFailedError(f"{self.exchange}: connection lost before the ack: {reason}"))
        if self._open_gap is None:
            self._open_gap = ConnectionGap(start=time.time(), reason=reason)
            self._gaps.append(self._open_gap)
        level = logging.INFO if self._stopping else logging.WARNING
        self.logger.log(level, "disconnected: %s", reason, extra={"exchange": self.exchange, "reason": reason})

    def _keep_sequences(self, core: FrameHandler) -> None:
        for stream_id, stats in core.stream_stats().items():
            if stats.last_sequence >= 0 and stream_id in self._subscriptions:
                self._last_sequences[stream_id] = stats.last_sequence

    def _close_gap(self) -> None:
        if self._open_gap is not None:
            self._open_gap.end = time.time()
            self.logger.info("feed gap closed after %.3f s (%s)", self._open_gap.duration,
                             self._open_gap.reason,
                             extra={"exchange": self.exchange, "gap": self._open_gap.duration})
            self._open_gap = None

    def _on_core_disconnected(self, core: FrameHandler) -> None:
        if core is self._core and self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    async def _close_transport(self, code: WSCloseCode, reason: str) -> None:
        """Close the live connection: closing handshake, then abort if it hangs."""
        ws = self._ws
        await self._close_connection(ws, self._core, code, reason)
        if ws is not None and self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    async def _close_connection(self, ws: Any, core: Optional[FrameHandler], code: WSCloseCode,
                                reason: str) -> None:
        """Close one connection: closing handshake, abort if it hangs, end its pending task."""
        if ws is not None and not ws.is_disconnected:
            ws.send_close(code, reason.encode())
            ws.disconnect()
            try:
                await asyncio.wait_for(ws.wait_disconnected(), _CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, Exception):
                ws.disconnect(graceful=False)
        if core is not None and core.pending_task is not None:
            task = core.pending_task
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    def _fail(self, reason: str) -> None:
        error = ConnectionFailedError(f"{self.exchange}: {reason}")
        self.logger.error("connection failed: %s", reason, extra={"exchange": self.exchange})
        self._emit_error(error)
        self._set_state(ConnectionState.FAILED, reason)

    def _fail_acks(self, error: ExchangeAPIError) -> None:
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(error)
                future.exception()   # retrieved: nobody may be waiting any more

    def _as_connection_error(self, exc: BaseException) -> ExchangeAPIError:
        if isinstance(exc, ExchangeAPIError):
            return exc
        if isinstance(exc, asyncio.TimeoutError):
            error: ExchangeAPIError = ExchangeTimeoutError(
                f"{self.exchange}: no connection within {self.config.timeout} s to {self.config.url}")
        else:
            error = ConnectionFailedError(f"{self.exchange}: cannot connect to {self.config.url}: "
                                          f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    # ------------------------------------------------------------- the state
    def _set_state(self, new: ConnectionState, reason: Optional[str]) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self.logger.info("state %s -> %s%s", old.value, new.value, f" ({reason})" if reason else "",
                         extra={"exchange": self.exchange, "old_state": old.value,
                                "new_state": new.value, "reason": reason})
        for listener in list(self._state_listeners):
            try:
                listener(old, new, reason)
            except Exception:
                self.logger.exception("state listener raised", extra={"exchange": self.exchange})
        for states, future in list(self._state_waiters):
            if new in states and not future.done():
                future.set_result(new)

    # ------------------------------------------------------------------ errors
    def _on_sequence_gap(self, stream: str, expected: int, received: int, last: int) -> None:
        """Called by the core when a stream's sequence numbers skip: record, log, report."""
        gap = SequenceGap(time=time.time(), stream=stream, expected=expected, received=received, last=last)
        self._sequence_gaps.append(gap)
        error = SequenceGapError(f"{self.exchange}: {stream}: {gap.missing} message(s) missing "
                                 f"(expected sequence {expected}, got {received})",
                                 stream, expected, received)
        self._log_error_rate_limited("sequence", error)
        self._emit_error(error)

    def _on_core_error(self, kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        """Called by the core for a parse, classify, handler or size error."""
        self._metrics.errors += 1
        error: ExchangeAPIError
        if isinstance(exc, ExchangeAPIError):
            error = exc
        elif kind == "handler":
            error = MessageHandlerError(f"{self.exchange}: message handler raised "
                                        f"{type(exc).__name__}: {exc}")
        else:
            error = InvalidMessageError(f"{self.exchange}: {kind} error: {type(exc).__name__}: {exc}",
                                        payload)
        if error is not exc:
            error.__cause__ = exc
        self._log_error_rate_limited(kind, error)
        self._emit_error(error)

    def _log_error_rate_limited(self, kind: str, error: ExchangeAPIError) -> None:
        now = time.monotonic()
        last = self._last_error_log.get(kind)
        if last is not None and now - last < _ERROR_LOG_INTERVAL:
            self._suppressed_errors[kind] = self._suppressed_errors.get(kind, 0) + 1
            return
        suppressed = self._suppressed_errors.pop(kind, 0)
        self._last_error_log[kind] = now
        self.logger.warning("%s error: %s%s", kind, error,
                            f" ({suppressed} more in the last second)" if suppressed else "",
                            extra={"exchange": self.exchange, "kind": kind, "suppressed": suppressed})

    def _emit_error(self, error: ExchangeAPIError) -> None:
        """Pass ``error`` to the user's error handler; its failures are logged only."""
        handler = self._error_handler
        if handler is None:
            return
        try:
            result = handler(error)
            if self._error_handler_async and result is not None:
                task = asyncio.get_running_loop().create_task(self._await_error_handler(result))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        except Exception:
            self.logger.exception("error handler raised", extra={"exchange": self.exchange})

    async def _await_error_handler(self, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception:
            self.logger.exception("error handler raised", extra={"exchange": self.exchange})

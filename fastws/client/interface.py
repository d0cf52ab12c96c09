"""``BaseWebSocketInterface``: the life cycle every exchange adapter shares.

An adapter implements four methods (``_connect``, ``_send_subscription_message``,
``_parse_message``, ``_extract_stream_info``). This class does the slow, rare
work around them in plain asyncio, one concern per module of this package:
``connection`` (socket, upgrade, deflate negotiation, the frame core, closing),
``subscriptions`` (tracked set, pending queue, batches, acks), ``health``
(state, gaps, errors, the health check), ``supervisor`` (the connection
attempt, watching, reconnecting) and ``rotation`` (make before break). Every
frame goes through the compiled core (``fastws._core.FrameHandler``), never
through this package.
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Awaitable, Callable, Optional

from picows import WSCloseCode

from fastws._core import FramePublisher, RouteTable, is_async_callable
from fastws.backoff import ReconnectPolicy, Reconnection
from fastws.client._fields import ErrorHandler, MessageHandler
from fastws.client.cadence import CadenceWatch
from fastws.client.health import GAPS_KEPT
from fastws.client.rotation import RotationMixin
from fastws.config import WebSocketConfig
from fastws.errors import ConnectionFailedError, ExchangeTimeoutError
from fastws.metrics import ConnectionMetrics
from fastws.ratelimit import TokenBucket
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

__all__ = ["BaseWebSocketInterface"]

# Seconds stop() waits for the cancelled supervisor before cancelling it again.
_STOP_RECHECK = 0.5


class BaseWebSocketInterface(RotationMixin, ABC):
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
        self._state_listeners = []
        self._state_waiters = []

        self._ws = None   # picows WSTransport of the live connection
        self._core = None
        self._disconnected = None
        self._supervisor = None
        self._stopping = False
        self._redundancy = None
        self._path_index = 0
        self._connecting_socket = None

        self._subscriptions = {}   # ordered set of wanted streams
        self._stream_policies = {}   # stream -> slow-consumer policy (fastws.policy)
        self._pending = deque()    # asked for while not connected
        self._acks = {}
        self._rate_limiter = TokenBucket(config.max_messages_per_second)

        self._reconnection = Reconnection(
            ReconnectPolicy(config.reconnect_delay, config.reconnect_backoff, config.max_reconnect_delay,
                            config.reconnect_jitter),
            config.max_reconnect_attempts)
        self._metrics = ConnectionMetrics()
        self._gaps = deque(maxlen=GAPS_KEPT)
        self._sequence_gaps = deque(maxlen=GAPS_KEPT)
        # Last sequence number per stream, carried from one connection to the
        # next so that updates lost in a reconnection are reported as well.
        self._last_sequences = {}
        # The typed fast route: adapters that offer one fill this table; it
        # outlives connections (each new core is given it).
        self._routes = None
        # health_check() rates: per stream, (messages, monotonic ns) last seen.
        self._rate_samples = {}
        self._open_gap = None
        self._last_error_log = {}
        self._suppressed_errors = {}
        self._background = set()
        # Make before break: the Handover the next connection opened joins as
        # the new side; a wake-up for the watch loop when an adapter asks for
        # a rotation; the timer that ends de-duplication after one.
        self._handover_next = None
        self._rotation_wanted = None
        self._rotating = False
        self._handover_end = None
        self._frame_tap = None
        self._frame_publisher = None
        self._waiting = None
        self._load_sample = None
        # Issue 15: the loop's lag monitor (while the supervisor runs), the
        # per-stream cadence watchdog.
        self._lag_monitor = None
        self._cadence = CadenceWatch(config.cadence_factor or 0.0, config.cadence_floor,
                                     config.cadence_min_messages, self._expected_interval)

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
        connection attempts. Say a wait first with ``_announce_wait``.
        """

    def _stream_problem(self, stream: str) -> Optional[str]:
        """Why ``stream`` is not a valid stream name of this exchange, or ``None``.

        Called for every name given to ``subscribe`` before anything is sent:
        invalid names are refused by name (``SubscriptionRejectedError`` with
        ``rejected_streams``) and the valid ones beside them are subscribed.
        The default accepts every name.
        """
        return None

    def _expected_interval(self, stream: str) -> Optional[float]:
        """The seconds between two messages of ``stream`` the exchange documents, or ``None``.

        For the cadence watchdog: the fastest the exchange pushes the stream
        (Binance: 0.1 for ``<symbol>@depth@100ms``). It is a lower bound of
        the interval learned from the traffic, which takes over once known;
        ``None`` (the default) leaves the interval to the traffic alone.
        Called once per stream.
        """
        return None

    def _stream_is_snapshot(self, stream: str) -> bool:
        """Whether each message of ``stream`` holds the whole state it reports (a snapshot-like stream).

        Only such streams may take a lossy slow-consumer policy
        (``fastws.policy``: ``Latest``, ``DropOldest``): an older message of
        a book ticker, a partial book or a ticker is replaced by the newer
        one, while a lost depth diff or trade is lost. The default is False:
        lossy policies are refused.
        """
        return False

    # ------------------------------------------------------------------ public
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

    def set_frame_publisher(self, publisher: Optional[FramePublisher]) -> None:
        """Write every delivered data message to ``publisher`` (the NATS bus), or stop with None.

        A ``fastws._core.FramePublisher`` (see ``fastws.bus.publisher``); it
        applies to the live connection and every later one.
        """
        self._frame_publisher = publisher
        if self._core is not None:
            self._core.publisher = publisher

    async def start(self, timeout: Optional[float] = None) -> None:
        """Start the supervisor and wait for the first connection.

        Returns once CONNECTED.

        Args:
            timeout: Seconds to wait for the first connection; ``None`` waits
                as long as the reconnection policy keeps trying.

        Raises:
            ConnectionFailedError: the state became FAILED first
                (``max_reconnect_attempts`` spent, or a failure that retrying
                cannot fix).
            ExchangeTimeoutError: not connected within ``timeout``; the client
                is stopped, and the error says what it was waiting for.
        """
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._stopping = False
        if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            # Started again after stop() or a failure: wait for this start's outcome.
            self._set_state(ConnectionState.DISCONNECTED, "started again")
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"fastws-{self.exchange}-supervisor")
        self._supervisor.add_done_callback(self._on_supervisor_done)
        try:
            state = await self.wait_for_state(ConnectionState.CONNECTED, ConnectionState.FAILED,
                                              ConnectionState.CLOSED, timeout=timeout)
        except ExchangeTimeoutError:
            waiting = self._waiting
            await self.stop()
            raise ExchangeTimeoutError(
                f"{self.exchange}: not connected to {self.config.url} within start()'s timeout of "
                f"{timeout} s" + (f" ({waiting})" if waiting else "")) from None
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
            # A cancellation swallowed by wait_for (before 3.12) would leave
            # the supervisor running, and stop() waiting for it for ever: it
            # is cancelled again until it ends (it also checks _stopping).
            while not supervisor.done():
                supervisor.cancel()
                await asyncio.wait({supervisor}, timeout=_STOP_RECHECK)
            if not supervisor.cancelled():
                supervisor.exception()   # retrieved: its failure was reported by _on_supervisor_done
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

    # -------------------------------------------------------------- for a pool
    # What a pool (fastws.pool) needs of its connections beyond the public API.
    def _carries(self, stream: str) -> bool:
        """True if ``stream`` is tracked (subscribed or pending); O(1), unlike ``subscriptions``."""
        return stream in self._subscriptions

    def _latency_histogram(self) -> list[int]:
        """The event-latency histogram over all of this client's connections.

        For a pool, which merges its connections' histograms: percentiles
        (what ``metrics`` reports) do not add up.
        """
        return self._metrics.histogram(self._core)

    def _share_routes(self, routes: Optional[RouteTable]) -> None:
        """Use ``routes`` (another client's route table) from the next connection on.

        For a pool: its connections route the same streams to the same handlers.
        """
        self._routes = routes

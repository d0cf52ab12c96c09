"""``BinanceWebSocket``: Binance spot market streams through the fastws core.

The adapter speaks the combined-stream endpoint (``/stream``): every data
frame is ``{"stream": "<name>", "data": {...}}``. It keeps Binance's limits
itself, whatever the user's config says:

- at most 5 incoming messages per second per connection, counting pings,
  pongs and control messages: subscriptions are paced at
  ``CONTROL_MESSAGES_PER_SECOND`` (2.5/s, so no one-second window holds more
  than 3), which leaves room for a pong to the server's ping and a ping of
  our own;
- at most 1024 streams per connection: more streams open more connections
  (``PooledWebSocketInterface``);
- 300 connection attempts per 5 minutes per IP: every attempt of every
  ``BinanceWebSocket`` in the process waits on one shared limiter;
- 24 h connection lifetime: ``max_connection_age`` is kept below it
  (``DEFAULT_MAX_CONNECTION_AGE``), so the client rotates before the server
  cuts;
- a ``serverShutdown`` event makes the client reconnect at once.

Two routes for data:

- the dict route (default), as the interface standard shows it: the message
  handler gets the decoded ``{"stream": ..., "data": {...}}`` dict;
- the typed route (``typed=True``): frames of a subscribed stream with a
  typed payload are routed by the core on the stream name read from the raw
  bytes, decoded straight into a ``msgspec.Struct`` (``DepthUpdate``,
  ``Trade``, ...) and handed to ``handler(stream, message)``, the stream's own
  handler when ``subscribe(..., handler=...)`` gave one.

Order books: ``subscribe_books(["BTCUSDT"], handler)`` keeps compiled local
books synced from ``<sym>@depth@100ms`` (a route of its own whose decoder
reads the levels from the frame's bytes into the book) and REST snapshots from
the config's ``rest_url`` (``BinanceConfig``; exchanges/binance/book.py).

In both, the core reads the event time (``E``) and the depth update ids
(``U``/``u``) from the raw frame: ``health_check()`` reports per stream the
event-to-receive latency and messages per second, and a depth update whose
``U`` is not the previous ``u`` + 1 is reported as a ``SequenceGapError``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from typing import Any, Awaitable, Callable, Iterable, Optional, Union, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec

from fastws._core import RouteTable, is_async_callable
from fastws.book import OrderBook
from fastws.config import WebSocketConfig, create_websocket_config, limit_changes
from fastws.client.subscriptions import stream_names
from fastws.errors import InvalidMessageError, SubscriptionRejectedError
from fastws.pool import PooledWebSocketInterface
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

from exchanges.binance import streams as _streams
from exchanges.binance.book import DEFAULT_BOOK_DEPTH, REST_URL, BinanceBooks, BookHandler, depth_stream
from exchanges.binance.compliance import COMPLIANCE

__all__ = [
    "BinanceConfig",
    "BinanceWebSocket",
    "CONTROL_MESSAGES_PER_SECOND",
    "ConnectionAttemptLimiter",
    "DEFAULT_MAX_CONNECTION_AGE",
    "attempt_limiter",
    "binance_config",
    "push_interval",
]

CONTROL_MESSAGES_PER_SECOND = 2.5
"""Pace of our own control messages: at most 3 in any second, plus the pong
to a server ping and one ping of ours, stays within Binance's 5."""

DEFAULT_MAX_CONNECTION_AGE = _streams.MAX_CONNECTION_AGE - 30 * 60.0
"""Rotate connections after 23.5 h, before Binance closes them at 24 h."""

DEFAULT_BATCH_SIZE = 200
"""Streams per SUBSCRIBE request in ``binance_config`` (a full connection
resubscribes in 6 requests, about 2 s at the paced rate)."""

TypedHandler = Callable[[str, Any], Union[None, Awaitable[None]]]

_EXCHANGE = ExchangeName("binance")
_SHUTDOWN_STREAM = "!serverShutdown"
_SHUTDOWN_EVENT = "serverShutdown"
# Enum members cost ~85 ns per lookup on CPython 3.11: hoisted.
_DEPTH_UPDATE = _streams.StreamKind.DEPTH_UPDATE

# Binance's documented update speeds (seconds) of the streams it pushes on a
# clock; trades, aggTrades and bookTickers are pushed as they happen (None).
_PUSH_INTERVALS = {
    _streams.StreamKind.TICKER: 1.0, _streams.StreamKind.MINI_TICKER: 1.0,
}


def push_interval(stream: str) -> Optional[float]:
    """The fastest Binance pushes ``stream``, in seconds; ``None`` for streams pushed as events happen.

    Diff and partial depth: 0.1 with ``@100ms``, else 1.0 (pushed only when
    the book changed); tickers 1.0; klines 1.0 for ``kline_1s``, else 2.0.
    The cadence watchdog's lower bound (``BaseWebSocketInterface._expected_interval``).
    """
    kind = _streams.stream_kind(stream)
    if kind is _DEPTH_UPDATE or kind is _streams.StreamKind.PARTIAL_DEPTH:
        return 0.1 if stream.endswith("@100ms") else 1.0
    if kind is _streams.StreamKind.KLINE:
        return 1.0 if "@kline_1s" in stream else 2.0
    return _PUSH_INTERVALS.get(kind)


class ConnectionAttemptLimiter:
    """At most ``limit`` connection attempts per ``window`` seconds, process-wide.

    Binance counts attempts per IP; every ``BinanceWebSocket`` (and every
    pooled connection) waits here before it connects.
    """

    def __init__(self, limit: int = _streams.MAX_CONNECTION_ATTEMPTS,
                 window: float = _streams.CONNECTION_ATTEMPT_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._attempts: deque[float] = deque()

    def delay(self) -> float:
        """Seconds to wait before the next attempt is allowed (0: now)."""
        now = time.monotonic()
        while self._attempts and now - self._attempts[0] >= self.window:
            self._attempts.popleft()
        if len(self._attempts) < self.limit:
            return 0.0
        return self._attempts[0] + self.window - now

    async def acquire(self) -> None:
        """Wait until an attempt is allowed and count it."""
        while (wait := self.delay()) > 0:
            await asyncio.sleep(wait)
        self._attempts.append(time.monotonic())


# Binance counts attempts per client IP across its stream hosts and ports:
# they share one limiter. Any other endpoint (a simulator on its own port) has
# a window of its own.
_ATTEMPTS: dict[str, ConnectionAttemptLimiter] = {}
_BINANCE_DOMAINS = ("binance.com", "binance.vision")


def attempt_limiter(url: str) -> ConnectionAttemptLimiter:
    """The process-wide connection-attempt limiter for ``url``'s endpoint."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    key = "binance" if host.endswith(_BINANCE_DOMAINS) else parts.netloc
    limiter = _ATTEMPTS.get(key)
    if limiter is None:
        limiter = _ATTEMPTS[key] = ConnectionAttemptLimiter()
    return limiter


# Stream names whose type is remembered per client (more are classified afresh).
_MAX_CACHED_STREAM_TYPES = 4096


_DECODERS: dict[Any, Callable[[Any], Any]] = {}


def _adapter(label: str, payload_type: Any) -> Callable[[dict[str, Any]], Any]:
    """Typed mode: what a frame of a stream that missed the fast route (another
    layout) becomes once parsed and classified: its ``data`` as ``payload_type``
    (None: as decoded). One that does not fit is a bad message (400), its text
    beginning with ``label``."""
    if payload_type is None:
        return lambda message: message.get("data")
    name = getattr(payload_type, "__name__", payload_type)

    def adapt(message: dict[str, Any]) -> Any:
        try:
            return msgspec.convert(message.get("data"), payload_type, from_attributes=False)
        except msgspec.ValidationError as exc:
            raise InvalidMessageError(f"{label}: payload does not fit {name}: {exc}",
                                      msgspec.json.encode(message)[:256]) from exc
    return adapt


def _decoder(payload_type: Any) -> Callable[[Any], Any]:
    """One msgspec decoder per payload type (None: any JSON), shared by all streams."""
    decode = _DECODERS.get(payload_type)
    if decode is None:
        decoder = msgspec.json.Decoder() if payload_type is None else msgspec.json.Decoder(payload_type)
        decode = _DECODERS[payload_type] = decoder.decode
    return decode


@dataclasses.dataclass(frozen=True)
class BinanceConfig(WebSocketConfig):
    """A ``WebSocketConfig`` that also carries Binance's REST base URL (order book snapshots).

    Attributes:
        rest_url: ``https://api.binance.com``, or a ``BinanceSimulator``'s ``rest_url``.
        book_depth: Snapshot levels per side asked for by ``subscribe_books`` (1 to 5000).
        book_catch_up_timeout: Seconds a snapshot ahead of the diff stream waits
            for the stream to reach it before it is fetched again.
    """

    rest_url: str = REST_URL
    book_depth: int = DEFAULT_BOOK_DEPTH
    book_catch_up_timeout: float = 10.0


def binance_config(url: str = _streams.SPOT_URL, *, rest_url: str = REST_URL,
                   book_depth: int = DEFAULT_BOOK_DEPTH, book_catch_up_timeout: float = 10.0,
                   **overrides: Any) -> BinanceConfig:
    """A ``WebSocketConfig`` with Binance's defaults, for ``BinanceWebSocket``.

    ``url`` is the endpoint's base (``wss://stream.binance.com:9443``, or a
    ``BinanceSimulator``'s ``url``); the adapter adds ``/stream``. A
    ``?timeUnit=MICROSECOND`` query is kept and switches event times to
    microseconds. ``rest_url`` is where order book snapshots come from
    (``subscribe_books``), ``book_depth`` their limit (``BinanceConfig``).
    """
    overrides.setdefault("max_messages_per_second", CONTROL_MESSAGES_PER_SECOND)
    overrides.setdefault("max_connection_age", DEFAULT_MAX_CONNECTION_AGE)
    overrides.setdefault("subscription_batch_size", DEFAULT_BATCH_SIZE)
    overrides.setdefault("ping_interval", _streams.SERVER_PING_INTERVAL)
    base = create_websocket_config(url, **overrides)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return BinanceConfig(**fields, rest_url=rest_url, book_depth=book_depth,
                         book_catch_up_timeout=book_catch_up_timeout)


def _within_limits(config: WebSocketConfig) -> WebSocketConfig:
    """``config`` with the settings Binance's limits forbid brought within them."""
    changes = limit_changes(config, max_messages_per_second=CONTROL_MESSAGES_PER_SECOND,
                            connection_lifetime=_streams.MAX_CONNECTION_AGE,
                            rotate_after=DEFAULT_MAX_CONNECTION_AGE)
    return dataclasses.replace(config, **changes) if changes else config


def _combined_url(url: str) -> str:
    """The combined-stream endpoint for a URL (path ``/stream``, query kept).

    A base URL gets ``/stream``; a raw-stream path (``/ws/<stream>``) is
    replaced by it, the adapter subscribing its streams by request instead.
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path == "/ws" or path.startswith("/ws/"):
        path = "/stream"
    elif not path.endswith("/stream"):
        path = path + "/stream"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class BinanceWebSocket(PooledWebSocketInterface):
    """Binance spot market streams, pooled over as many connections as needed.

    Args:
        exchange: Name used in logs and the health check (``"binance"``).
        config: Connection settings; ``binance_config()`` gives Binance's
            defaults. Settings beyond Binance's limits (control message
            rate, connection age) are brought within them.
        message_handler: Dict route: ``handler(message)`` with the combined
            payload dict. Typed route: ``handler(stream, struct)``; a frame
            without a typed payload (a stream of an unknown kind) comes as
            ``handler(stream, dict)``.
        error_handler: Gets every ``ExchangeAPIError``: rejected
            subscriptions (403, with Binance's code and text), bad frames
            (400), sequence gaps (409), connection failures (500).
        typed: Use the typed fast route.
    """

    max_streams_per_connection = _streams.MAX_STREAMS_PER_CONNECTION

    # What ``fastws verify`` sends this adapter (exchanges/binance/compliance.py); the
    # simulator it runs against comes from the exchange's registry entry.
    compliance = COMPLIANCE

    def __init__(self, exchange: ExchangeName, config: WebSocketConfig, message_handler: Any,
                 error_handler: Any = None, *, typed: bool = False) -> None:
        # Typed mode: frames that miss the fast route (a layout other than
        # Binance's compact envelope) take the default route and continue into
        # their stream's route, as its type; those of streams without a route
        # reach the message handler as handler(stream, dict).
        self._typed_handler: Optional[TypedHandler] = message_handler if typed else None
        super().__init__(exchange, _within_limits(config), message_handler, error_handler)
        if self.config is not config:
            self.logger.info("settings brought within Binance's limits: max_messages_per_second=%s, "
                             "max_connection_age=%s", self.config.max_messages_per_second,
                             self.config.max_connection_age, extra={"exchange": self.exchange})
        self.typed = typed
        self._url = _combined_url(config.url)
        self._micro = "timeunit=microsecond" in urlsplit(config.url).query.lower()
        self._next_id = 0
        self._decode = msgspec.json.Decoder().decode
        self._stream_types: dict[str, StreamType] = {}
        # Subscribed streams' frames are routed by the core on the stream name
        # read from the raw bytes: typed, or (dict mode) decoded whole into the
        # standard dict and handed to the handler without the two Python
        # calls of _parse_message and _extract_stream_info. A subclass that
        # overrides either keeps the generic route for every frame.
        self._routes = RouteTable()
        cls = type(self)
        self._dict_fast_route = (cls._parse_message is BinanceWebSocket._parse_message
                                 and cls._extract_stream_info is BinanceWebSocket._extract_stream_info)
        self._books: Optional[BinanceBooks] = None
        self._book_listening = False

    def _new_member(self) -> "BinanceWebSocket":
        handler = self._typed_handler if self.typed else self._message_handler
        member = BinanceWebSocket(self.exchange, self.config, handler, self._error_handler, typed=self.typed)
        member._url = self._url
        member.add_state_listener(self._on_connection_state)
        return member

    def _new_path(self, config: Any) -> "BinanceWebSocket":
        member = cast(BinanceWebSocket, super()._new_path(config))
        member._url = _combined_url(config.url)     # its own endpoint
        return member

    # ------------------------------------------------------------- the four
    async def _connect(self) -> None:
        await self._open_websocket(self._url)

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        self._next_id += 1
        request_id = self._next_id
        method = "SUBSCRIBE" if action is SubscriptionAction.SUBSCRIBE else "UNSUBSCRIBE"
        ack = self._expect_ack(request_id)
        await self.send_message({"method": method, "params": streams, "id": request_id})
        return ack

    # A plain ``def``: the core calls it directly, without the ~70 ns of a
    # coroutine per message (the base class accepts both).
    def _parse_message(self, raw_message: Any) -> Any:
        try:
            message = self._decode(raw_message)
        except msgspec.DecodeError as exc:
            raise InvalidMessageError(f"{self.exchange}: not JSON: {exc}", bytes(raw_message[:256])) from exc
        if type(message) is not dict:
            raise InvalidMessageError(f"{self.exchange}: expected a JSON object, got {type(message).__name__}",
                                      bytes(raw_message[:256]))
        stream = message.get("stream")
        if stream is not None:
            if stream == _SHUTDOWN_STREAM:
                self._request_reconnect("server shutdown announced")
                return None
            if self.typed and not isinstance(stream, str):
                raise InvalidMessageError(f"{self.exchange}: stream name is not a string: {stream!r}"[:300],
                                          bytes(raw_message[:256]))
            return message
        if "id" in message and ("result" in message or "error" in message):
            self._on_reply(message)
            return None
        if "code" in message and "msg" in message:
            # The documented error form, without an id to match.
            raise InvalidMessageError(f"{self.exchange}: error {message['code']}: {message['msg']}",
                                      bytes(raw_message[:256]))
        if message.get("e") == _SHUTDOWN_EVENT:
            self._request_reconnect("server shutdown announced")
            return None
        # A raw-stream payload.
        return message

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        stream = message.get("stream")
        if stream is None:
            if self.typed:
                # A raw-stream payload reaches handler("", message), unclassified.
                return None
            kind = _streams.payload_kind(message)
            symbol = message.get("s")
            return (f"{symbol.lower()}@{kind.value}" if isinstance(symbol, str) else kind.value,
                    _streams.stream_type_of_kind(kind))
        return stream, self._stream_type_of(stream)

    def _stream_type_of(self, stream: str) -> StreamType:
        stream_type = self._stream_types.get(stream)
        if stream_type is None:
            stream_type = _streams.stream_type(stream)
            # Bounded: a server sending ever new names must not grow it forever.
            if len(self._stream_types) < _MAX_CACHED_STREAM_TYPES:
                self._stream_types[stream] = stream_type
        return stream_type

    # ----------------------------------------------------------- for the base
    async def _before_connect(self) -> None:
        # Outside the connect timeout: the wait may be long, it is no failure.
        limiter = attempt_limiter(self._url)
        wait = limiter.delay()
        if wait > 0:
            self._announce_wait(wait, f"Binance allows {limiter.limit} connection attempts per "
                                      f"{limiter.window:g} s from one IP and this endpoint's are spent")
        await limiter.acquire()

    def _stream_problem(self, stream: str) -> Optional[str]:
        return _streams.stream_name_problem(stream)

    def _expected_interval(self, stream: str) -> Optional[float]:
        return push_interval(stream)

    def _frame_handler_options(self) -> dict[str, Any]:
        return {
            "event_time_key": b'"E":',
            "event_time_unit_ns": 1_000 if self._micro else 1_000_000,
            "first_sequence_key": b'"U":',
            "last_sequence_key": b'"u":',
            # Enough for the envelope and the first fields of every payload.
            "scan_window": 192,
            # Typed mode: the message handler is handler(stream, message).
            "handler_takes_stream": self.typed,
        }

    def _on_reply(self, message: dict[str, Any]) -> None:
        request_id = message["id"]
        error = message.get("error")
        if error is None:
            if not self._resolve_ack(request_id):
                self.logger.debug("reply to request %s: %s", request_id, message.get("result"),
                                  extra={"exchange": self.exchange})
            return
        code = error.get("code") if isinstance(error, dict) else None
        text = error.get("msg") if isinstance(error, dict) else str(error)
        rejection = SubscriptionRejectedError(
            f"{self.exchange}: request {request_id} rejected: code {code}: {text}",
            exchange_code=code, exchange_message=text)
        if not self._reject_ack(request_id, rejection):
            self._emit_error(rejection)

    # --------------------------------------------------------------- public
    async def subscribe(self, streams: Union[str, Iterable[str]], handler: Optional[TypedHandler] = None) -> None:
        """Subscribe to Binance stream names and wait for the acks.

        Args:
            streams: Names such as ``btcusdt@depth@100ms``, ``ethusdt@trade`` (or one name).
                Names Binance does not serve are refused before anything is
                sent (``SubscriptionRejectedError.rejected_streams``); the
                valid ones beside them are subscribed.
            handler: A handler of these streams' own instead of the message
                handler: ``handler(stream, struct)`` in typed mode,
                ``handler(message)`` with the dict otherwise.

        Raises:
            SubscriptionRejectedError: Binance refused (403; ``exchange_code``
                and ``exchange_message`` hold its code and text).
            ExchangeTimeoutError: no ack in ``subscription_timeout`` (408).
        """
        names = stream_names(streams)
        self._add_routes([n for n in names if self._owner_of(n) is None and self._stream_problem(n) is None],
                         handler)
        try:
            await super().subscribe(names)
        except Exception:
            self._drop_routes([n for n in names if self._owner_of(n) is None])
            raise

    async def unsubscribe(self, streams: Union[str, Iterable[str]]) -> None:
        """Unsubscribe from ``streams`` (and drop their typed routes)."""
        names = stream_names(streams)
        await super().unsubscribe(names)
        self._drop_routes(names)

    def _drop_routes(self, names: list[str]) -> None:
        assert self._routes is not None
        for name in names:
            self._routes.remove(name)

    def _add_routes(self, names: list[str], handler: Optional[Callable[..., Any]]) -> None:
        assert self._routes is not None
        if not self.typed and not self._dict_fast_route:
            if handler is not None:
                raise ValueError("per-stream handlers need the fast route, which a subclass overriding "
                                 "_parse_message or _extract_stream_info turns off")
            return
        for name in names:
            kind = _streams.stream_kind(name)
            stream_type = _streams.stream_type_of_kind(kind)
            # Only diff depth carries U/u: other streams skip that search.
            sequenced = kind is _DEPTH_UPDATE
            if self.typed:
                target = cast(TypedHandler, handler if handler is not None else self._typed_handler)
                # A stream of a kind without a struct is routed too, as a dict.
                payload = _streams.decode_type(name)
                self._routes.add(name, _decoder(payload), target, stream_type, sequenced=sequenced,
                                 adapt=_adapter(f"{self.exchange}: {name}", payload))
            else:
                self._routes.add(name, _decoder(None), handler if handler is not None else self._message_handler,
                                 stream_type, sequenced=sequenced, whole_frame=True, pass_stream=False)

    # ---------------------------------------------------------- order books
    async def subscribe_books(self, symbols: Union[str, Iterable[str]], handler: BookHandler) -> dict[str, OrderBook]:
        """Keep local order books of ``symbols``, synced from ``<sym>@depth@100ms`` and REST snapshots.

        The diff stream is subscribed first and buffered; the snapshot
        (``GET /api/v3/depth``, the config's ``rest_url`` and ``book_depth``)
        follows, as Binance documents. Each diff's levels go from the frame's
        bytes into the compiled book; ``handler(book)`` is called after each
        applied update, and when a book becomes invalid (a gap, a lost
        connection, a crossed book, a failed snapshot: the book then syncs
        again by itself, and the error reaches the error handler).

        Args:
            symbols: ``"BTCUSDT"`` or several (any case).
            handler: ``handler(book)`` (a plain function, called in the frame's dispatch).

        Returns:
            The ``OrderBook`` of each symbol (uppercase), invalid until synced.

        Raises:
            SubscriptionRejectedError: Binance refused the stream.
        """
        if is_async_callable(handler):
            raise TypeError("subscribe_books: the book handler must be a plain function (it runs in "
                            "the frame's dispatch, before the next update reaches the book)")
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        config = self.config
        books = self._books
        if books is None:
            books = self._books = BinanceBooks(
                self.exchange, getattr(config, "rest_url", REST_URL), self._emit_error,
                depth=getattr(config, "book_depth", DEFAULT_BOOK_DEPTH), timeout=config.timeout,
                catch_up_timeout=getattr(config, "book_catch_up_timeout", 10.0),
                expect_reorder=self._overlapping)
            if not self._book_listening:
                self._book_listening = True
                self.add_state_listener(self._on_connection_state)
                for member in self._members:
                    member.add_state_listener(self._on_connection_state)
        assert self._routes is not None
        syncs = []
        for symbol in wanted:
            stream = depth_stream(symbol)
            if symbol.upper() in books.syncs:
                continue
            sync = books.add(symbol, handler)
            # Not sequenced: the sync checks U/u itself (one report per gap, no scan).
            self._routes.add(stream, sync.on_frame, sync.deliver, StreamType.ORDERBOOK, sequenced=False,
                             pass_stream=False)
            syncs.append(sync)
        streams = [depth_stream(s.book.symbol) for s in syncs]
        try:
            await PooledWebSocketInterface.subscribe(self, streams)
        except Exception:
            for sync in syncs:
                self._routes.remove(depth_stream(sync.book.symbol))
                await books.remove(sync.book.symbol)
            raise
        for sync in syncs:
            sync.start()
        return {s.upper(): books.syncs[s.upper()].book for s in wanted}

    async def unsubscribe_books(self, symbols: Union[str, Iterable[str]]) -> None:
        """Stop keeping the books of ``symbols``: unsubscribe their diff streams and stop their syncs."""
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        books = self._books
        if books is None:
            return
        present = [s.upper() for s in wanted if s.upper() in books.syncs]
        streams = [depth_stream(s) for s in present]
        try:
            await PooledWebSocketInterface.unsubscribe(self, streams)
        finally:
            assert self._routes is not None
            for symbol, stream in zip(present, streams):
                self._routes.remove(stream)
                await books.remove(symbol)

    def book(self, symbol: str) -> Optional[OrderBook]:
        """The book of ``symbol`` kept by ``subscribe_books``, or None."""
        return None if self._books is None else self._books.book(symbol)

    @property
    def books(self) -> Optional[BinanceBooks]:
        """The books' syncs and snapshot fetcher (None before ``subscribe_books``)."""
        return self._books

    def _overlapping(self) -> bool:
        """True while a connection of the pool is being replaced (make before break)."""
        return self._rotating or any(member._rotating for member in self._members)

    def _on_connection_state(self, old: ConnectionState, new: ConnectionState, reason: Optional[str]) -> None:
        # A connection lost (not a make-before-break rotation, which changes no
        # state): the updates in between are gone, every book syncs again.
        # With redundant connections one path's loss loses nothing (the books'
        # own U/u check still catches a loss when every path was down).
        if new is ConnectionState.RECONNECTING and self._books is not None and self.config.redundancy == 1:
            self._books.connection_lost(reason or "reconnecting")

    async def stop(self) -> None:
        """Stop the books' syncs, close the REST session, then every connection."""
        books, self._books = self._books, None
        if books is not None:
            assert self._routes is not None
            for symbol in list(books.syncs):
                self._routes.remove(depth_stream(symbol))
            await books.close()
        await super().stop()

    async def health_check(self) -> dict[str, Any]:
        """As ``PooledWebSocketInterface.health_check``, plus ``books``: per symbol ``valid``,
        ``resyncs``, ``seconds_invalid``, ``last_update_id``, ``bid_levels``, ``ask_levels``,
        ``snapshots``, ``stale_snapshots``, ``buffered``, ``last_reason``, ``stopped``."""
        health = await super().health_check()
        if self._books is not None:
            health["books"] = self._books.health()
        return health

"""``MexcWebSocket``: MEXC spot v3 protobuf pushes through the fastws core.

Control messages are JSON text frames, data pushes binary protobuf frames
(``PushDataV3ApiWrapper``). Pushes are decoded by the compiled
``PushDecoder`` straight from the frame's buffer into the standard dict, the
one ``json_format.MessageToDict(..., preserving_proto_field_name=True)`` gives
(``exchanges.mexc.reference``), and the decoder hands the push's ``sendTime``
and an aggregated depth update's ``fromVersion``/``toVersion`` to the core:
``health_check()`` reports per channel the event-to-receive latency, and a
depth update whose ``fromVersion`` is not the previous ``toVersion`` + 1 is
reported as a ``SequenceGapError``.

MEXC's limits are the adapter's to keep: at most 30 subscriptions per
connection (more channels open more connections behind the same object),
outgoing messages paced under 100 per second, connections rotated before
the 24-hour cut, and a ``{"method": "PING"}`` every ``ping_interval`` seconds
so that the server's 60-second idle close never comes (its ``PONG`` counts
as liveness).

Order books: ``subscribe_books(["BTCUSDT"], handler)`` keeps compiled local
books synced from the aggregated depth channel and REST snapshots from the
config's ``rest_url`` (``MexcConfig``; exchanges/mexc/book.py): a book
channel's pushes skip the dict decoder, their levels go from the wire bytes
into the book. ``subscribe_limit_books`` keeps books from the limit depth
channel (a whole top 5/10/20 per push, no REST).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from typing import Any, Awaitable, Iterable, Optional, Union, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec

from exchanges.mexc import channels as _channels
from exchanges.mexc._fastpb import BookRoutes, PushDecoder, PushParser, attach_routes
from exchanges.mexc.book import (DEFAULT_BOOK_DEPTH, DEFAULT_BOOK_SPEED, REST_URL, LimitBooks, MexcBooks,
                                 limit_channel)
from exchanges.mexc.compliance import COMPLIANCE
from exchanges.mexc.pb import PushDataV3ApiWrapper
from fastws._core import RouteTable, is_async_callable
from fastws.book import OrderBook
from fastws.book.books import BookHandler
from fastws.book.sync import BookSync
from fastws.config import WebSocketConfig, create_websocket_config, limit_changes
from fastws.errors import ExchangeAPIError, InvalidMessageError, SubscriptionRejectedError
from fastws.pool import PooledWebSocketInterface
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

__all__ = ["MexcConfig", "MexcWebSocket", "CONTROL_MESSAGES_PER_SECOND", "DEFAULT_MAX_CONNECTION_AGE",
           "mexc_config"]

CONTROL_MESSAGES_PER_SECOND = 50.0
"""Pace of our own messages: half of MEXC's 100 per second."""

DEFAULT_MAX_CONNECTION_AGE = _channels.MAX_CONNECTION_AGE - 30 * 60.0
"""Rotate connections after 23.5 h, before MEXC closes them at 24 h."""

DEFAULT_PING_INTERVAL = 20.0
"""Seconds between our PINGs: a third of the server's 60-s idle close."""

# The first byte of a JSON control message; a push starts with a protobuf tag
# (0x7B would be field 15 as a group start, which the schema never sends).
_JSON_START = 0x7B
_PING = '{"method":"PING"}'     # a text frame, as MEXC's control messages are


@dataclasses.dataclass(frozen=True)
class MexcConfig(WebSocketConfig):
    """A ``WebSocketConfig`` that also carries MEXC's REST base URL (order book snapshots).

    Attributes:
        rest_url: ``https://api.mexc.com``, or a ``MexcSimulator``'s ``rest_url``.
        book_depth: Snapshot levels per side asked for by ``subscribe_books`` (1 to 5000).
        book_catch_up_timeout: Seconds a snapshot ahead of the depth channel waits
            for the channel to reach it before it is fetched again.
        book_speed: The aggregated depth channel's speed, ``"10ms"`` or ``"100ms"``.
    """

    rest_url: str = REST_URL
    book_depth: int = DEFAULT_BOOK_DEPTH
    book_catch_up_timeout: float = 10.0
    book_speed: str = DEFAULT_BOOK_SPEED


def mexc_config(url: str = _channels.WS_URL, *, rest_url: str = REST_URL, book_depth: int = DEFAULT_BOOK_DEPTH,
                book_catch_up_timeout: float = 10.0, book_speed: str = DEFAULT_BOOK_SPEED,
                **overrides: Any) -> MexcConfig:
    """A ``WebSocketConfig`` with MEXC's defaults, for ``MexcWebSocket``.

    ``url`` is the endpoint (``wss://wbs-api.mexc.com/ws``, or a
    ``MexcSimulator``'s ``url`` or ``ws_url()``): a URL without a path gets
    MEXC's ``/ws``. ``rest_url`` is where order book snapshots come from
    (``subscribe_books``), ``book_depth`` their limit, ``book_speed`` the
    depth channel's aggregation (``MexcConfig``).
    """
    if isinstance(url, str) and urlsplit(url).path in ("", "/") and "?" not in url:
        url = url.rstrip("/") + _channels.WS_PATH
    overrides.setdefault("max_messages_per_second", CONTROL_MESSAGES_PER_SECOND)
    overrides.setdefault("max_connection_age", DEFAULT_MAX_CONNECTION_AGE)
    overrides.setdefault("subscription_batch_size", _channels.MAX_SUBSCRIPTIONS_PER_CONNECTION)
    overrides.setdefault("ping_interval", DEFAULT_PING_INTERVAL)
    base = create_websocket_config(url, **overrides)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return MexcConfig(**fields, rest_url=rest_url, book_depth=book_depth,
                      book_catch_up_timeout=book_catch_up_timeout, book_speed=book_speed)


def _within_limits(config: WebSocketConfig) -> WebSocketConfig:
    """``config`` with the settings MEXC's limits forbid brought within them."""
    changes = limit_changes(config, max_messages_per_second=CONTROL_MESSAGES_PER_SECOND,
                            connection_lifetime=_channels.MAX_CONNECTION_AGE,
                            rotate_after=DEFAULT_MAX_CONNECTION_AGE)
    if config.subscription_batch_size > _channels.MAX_SUBSCRIPTIONS_PER_CONNECTION:
        changes["subscription_batch_size"] = _channels.MAX_SUBSCRIPTIONS_PER_CONNECTION
    if config.ping_interval >= _channels.IDLE_TIMEOUT:
        changes["ping_interval"] = DEFAULT_PING_INTERVAL
        changes["pong_timeout"] = min(config.pong_timeout, DEFAULT_PING_INTERVAL)
    return dataclasses.replace(config, **changes) if changes else config


def _rejected_channels(msg: str) -> list[str]:
    """The channels a rejection names: ``Not Subscribed successfully! [a,b].  Reason: ...``."""
    start, end = msg.find("["), msg.find("]")
    if start < 0 or end < start:
        return []
    return [c.strip() for c in msg[start + 1:end].split(",") if c.strip()]


class MexcWebSocket(PooledWebSocketInterface):
    """MEXC spot v3 channels, pooled over as many connections as needed.

    Args:
        exchange: Name used in logs and the health check (``"mexc"``).
        config: Connection settings; ``mexc_config()`` gives MEXC's defaults.
            Settings beyond MEXC's limits are brought within them.
        message_handler: ``handler(message)`` with the standard dict of each
            push (``channel``, ``symbol``, ``sendTime``, and the body under its
            oneof field name, e.g. ``publicAggreDeals``).
        error_handler: Gets every ``ExchangeAPIError``: rejected channels
            (403, with MEXC's text), malformed pushes (400), depth version
            gaps (409), connection failures (500).
        listen_key: For private channels: appended as ``?listenKey=`` (never
            logged).
    """

    max_streams_per_connection = _channels.MAX_SUBSCRIPTIONS_PER_CONNECTION

    # What ``fastws verify`` sends this adapter (exchanges/mexc/compliance.py); the
    # simulator it runs against comes from the exchange's registry entry.
    compliance = COMPLIANCE

    def __init__(self, exchange: ExchangeName, config: WebSocketConfig, message_handler: Any,
                 error_handler: Any = None, *, listen_key: Optional[str] = None) -> None:
        super().__init__(exchange, _within_limits(config), message_handler, error_handler)
        self._listen_key = listen_key
        self._decoder = PushDecoder(PushDataV3ApiWrapper.DESCRIPTOR)
        self._decode_json = msgspec.json.Decoder().decode
        self._stream_types: dict[str, StreamType] = {}
        self._requests = 0
        # MEXC acks each channel on its own, with the channel's name for both
        # SUBSCRIPTION and UNSUBSCRIPTION; a rejection names the refused
        # channels. Per channel, the requests waiting for it, oldest first;
        # per request, the channels not answered yet and those refused.
        self._awaiting: dict[str, deque[int]] = {}
        self._unacked: dict[int, set[str]] = {}
        self._refused: dict[int, list[str]] = {}
        self._ping_task: Optional[asyncio.Task[None]] = None
        self.pongs_received = 0
        # Book channels: their pushes go from the compiled parser to the
        # book's sync (BookRoutes: one test per push while empty), and the
        # core delivers the book on the channel's route (a RouteTable, created
        # with the first book: never matched on raw bytes, which are protobuf;
        # found by the channel the core classifies). Both are shared by every
        # connection of the pool.
        self._book_routes = BookRoutes()
        self._books: Optional[MexcBooks] = None
        self._limit_books: Optional[LimitBooks] = None
        self._book_listening = False

    def _new_member(self) -> "MexcWebSocket":
        member = MexcWebSocket(self.exchange, self.config, self._message_handler, self._error_handler,
                               listen_key=self._listen_key)
        member._book_routes = self._book_routes
        if self._book_listening:
            member.add_state_listener(self._on_connection_state)
        return member

    # ------------------------------------------------------------- the four
    async def _connect(self) -> None:
        url = self.config.url
        if self._listen_key:
            parts = urlsplit(url)
            query = "&".join(q for q in (parts.query, urlencode({"listenKey": self._listen_key})) if q)
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        # Acks awaited on an earlier connection will never come.
        self._awaiting.clear()
        self._unacked.clear()
        self._refused.clear()
        if self._ping_task is not None:
            self._ping_task.cancel()
        await self._open_websocket(url)
        self._attach_routes()
        task = asyncio.get_running_loop().create_task(self._keepalive(self._ws), name="fastws-mexc-ping")
        self._ping_task = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _stream_problem(self, stream: str) -> Optional[str]:
        # Retired channels parse: the server refuses them itself ("Blocked!").
        if _channels.parse_channel(stream) is None:
            return ("not a MEXC spot v3 channel (e.g. spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT; "
                    "symbols upper case)")
        return None

    def _stream_is_snapshot(self, stream: str) -> bool:
        return _channels.is_snapshot_channel(stream)

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        self._requests += 1
        request = self._requests
        ack = self._expect_ack(request)
        # However the wait ends (ack, rejection, timeout, lost connection),
        # the request stops waiting for its channels.
        ack.add_done_callback(lambda _: self._forget_request(request))
        channels = list(dict.fromkeys(streams))
        self._unacked[request] = set(channels)
        for channel in channels:
            self._awaiting.setdefault(channel, deque()).append(request)
        method = "SUBSCRIPTION" if action is SubscriptionAction.SUBSCRIBE else "UNSUBSCRIPTION"
        try:
            await self.send_message({"method": method, "params": channels})
        except BaseException:
            self._forget_request(request)
            raise
        return ack

    def _frame_handler_options(self) -> dict[str, Any]:
        # The core parses in place through the compiled parser (no view, no
        # Python call per push); a subclass that overrides _parse_message
        # keeps it.
        if type(self)._parse_message is not MexcWebSocket._parse_message:
            return {}
        return {"compiled_parser": PushParser(self._decoder, self._parse_control, self._malformed_push,
                                              self._book_routes)}

    # A plain ``def``: the core calls it directly, without a coroutine per
    # push (the base class accepts both).
    def _parse_message(self, raw_message: Any) -> Any:
        # A control message is JSON, a push protobuf: the first byte tells.
        if len(raw_message) and raw_message[0] == _JSON_START:
            self._parse_control(raw_message)
            return None
        message: Optional[dict[str, Any]] = self._decoder.decode(raw_message)
        if message is None:
            raise self._malformed_push(self._decoder.last_error, bytes(raw_message[:256]))
        return message

    def _parse_control(self, raw_message: Any) -> None:
        """A JSON control message (a text frame): acks, rejections, PONG."""
        try:
            reply = self._decode_json(raw_message)
        except msgspec.DecodeError as exc:
            raise InvalidMessageError(f"{self.exchange}: control message not JSON: {exc}",
                                      bytes(raw_message[:256])) from exc
        self._on_control(reply)
        return None

    def _malformed_push(self, reason: Optional[str], payload: bytes) -> InvalidMessageError:
        return InvalidMessageError(f"{self.exchange}: malformed push: {reason}", payload)

    def _extract_stream_info(self, message: dict[str, Any]) -> Optional[tuple[str, StreamType]]:
        channel = message.get("channel")
        if channel is None:
            return None
        stream_type = self._stream_types.get(channel)
        if stream_type is None:
            stream_type = _channels.stream_type(channel)
            # Bounded: a server sending ever new names must not grow it forever.
            if len(self._stream_types) < 4096:
                self._stream_types[channel] = stream_type
        return channel, stream_type

    # ---------------------------------------------------------- control path
    def _on_control(self, reply: Any) -> None:
        """Acks, rejections and PONGs (JSON text frames); never reach the handler."""
        if not isinstance(reply, dict):
            raise InvalidMessageError(f"{self.exchange}: unexpected control message {reply!r}"[:300])
        msg = reply.get("msg")
        if not isinstance(msg, str):
            raise InvalidMessageError(f"{self.exchange}: control message without msg: {reply!r}"[:300])
        if msg == _channels.PONG_MSG:
            self.pongs_received += 1
            return
        if _channels.is_rejection(msg):
            self._on_rejection(msg, reply.get("code"))
            return
        queue = self._awaiting.get(msg)
        if not queue:
            if reply.get("code") not in (0, None):
                self._emit_error(ExchangeAPIError(400, f"{self.exchange}: error reply: {reply!r}"[:300]))
            else:
                self.logger.debug("control message %r", reply, extra={"exchange": self.exchange})
            return
        self._answered(queue[0], msg)

    def _on_rejection(self, msg: str, code: Any) -> None:
        requests: list[int] = []
        for channel in _rejected_channels(msg):
            queue = self._awaiting.get(channel)
            if queue:
                request = queue[0]
                self._refused.setdefault(request, []).append(channel)
                requests.append(request)
                self._answered(request, channel, code=code, text=msg)
        if not requests:
            self._emit_error(SubscriptionRejectedError(
                f"{self.exchange}: not subscribed: {msg.strip()}",
                exchange_code=code if isinstance(code, int) else None, exchange_message=msg))

    def _answered(self, request: int, channel: str, *, code: Any = None, text: str = "") -> None:
        """One channel of ``request`` was acked or refused (``_refused`` says which);
        settle the request once all its channels are answered."""
        queue = self._awaiting.get(channel)
        if queue and queue[0] == request:
            queue.popleft()
            if not queue:
                del self._awaiting[channel]
        waiting = self._unacked.get(request)
        if waiting is None:
            return
        waiting.discard(channel)
        if waiting:
            return
        refused_channels = self._refused.pop(request, [])
        if not refused_channels:
            self._resolve_ack(request)
            return
        # The others of the request were acked: only these are not subscribed.
        self._reject_ack(request, SubscriptionRejectedError(
            f"{self.exchange}: not subscribed: {', '.join(refused_channels)}: {text.strip()}",
            exchange_code=code if isinstance(code, int) else None, exchange_message=text,
            rejected_streams=refused_channels))

    def _forget_request(self, request: int) -> None:
        for channel in self._unacked.pop(request, ()):
            queue = self._awaiting.get(channel)
            if queue is not None and request in queue:
                queue.remove(request)
                if not queue:
                    del self._awaiting[channel]
        self._refused.pop(request, None)

    async def _keepalive(self, ws: Any) -> None:
        """PING every ``ping_interval`` s while this connection lives."""
        interval = self.config.ping_interval
        while True:
            await asyncio.sleep(interval)
            if ws is not self._ws or ws.is_disconnected:
                return
            try:
                await self.send_message(_PING)
            except ExchangeAPIError:
                return
            if self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("PING sent", extra={"exchange": self.exchange})

    # ---------------------------------------------------------- order books
    async def subscribe_books(self, symbols: Union[str, Iterable[str]], handler: BookHandler) -> dict[str, OrderBook]:
        """Keep local order books of ``symbols``, synced from aggregated depth and REST snapshots.

        The channel ``spot@public.aggre.depth.v3.api.pb@<speed>@<SYMBOL>`` is
        subscribed first and its pushes buffered; the snapshot (``GET
        /api/v3/depth``, the config's ``rest_url`` and ``book_depth``)
        follows, as MEXC documents. Each push's levels go from its protobuf
        bytes into the compiled book; ``handler(book)`` is called after each
        applied push, and when a book becomes invalid (a gap, a lost
        connection, a crossed book, a failed snapshot: the book then syncs
        again by itself, and the error reaches the error handler).

        Args:
            symbols: ``"BTCUSDT"`` or several (any case).
            handler: ``handler(book)`` (a plain function, called in the frame's dispatch).

        Returns:
            The ``OrderBook`` of each symbol (upper case), invalid until synced.

        Raises:
            SubscriptionRejectedError: MEXC refused the channel.
        """
        self._check_book_handler(handler)
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        books = self._books
        if books is None:
            config = self.config
            books = self._books = MexcBooks(
                self.exchange, getattr(config, "rest_url", REST_URL), self._emit_error,
                depth=getattr(config, "book_depth", DEFAULT_BOOK_DEPTH),
                speed=getattr(config, "book_speed", DEFAULT_BOOK_SPEED), timeout=config.timeout,
                catch_up_timeout=getattr(config, "book_catch_up_timeout", 10.0),
                expect_reorder=self._overlapping)
        self._listen_for_losses()
        syncs: list[BookSync] = []
        for symbol in wanted:
            if symbol.upper() in books.syncs:
                continue
            sync = books.add(symbol, handler)
            self._route_book(books.channel(symbol), sync.on_frame, sync.deliver, sync.book)
            syncs.append(sync)
        channels = [books.channel(s.book.symbol) for s in syncs]
        try:
            await PooledWebSocketInterface.subscribe(self, channels)
        except Exception:
            for sync, channel in zip(syncs, channels):
                self._unroute_book(channel)
                await books.remove(sync.book.symbol)
            raise
        for sync in syncs:
            sync.start()
        return {s.upper(): books.syncs[s.upper()].book for s in wanted}

    async def unsubscribe_books(self, symbols: Union[str, Iterable[str]]) -> None:
        """Stop keeping the books of ``symbols``: unsubscribe their channels and stop their syncs."""
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        books = self._books
        if books is None:
            return
        present = [s.upper() for s in wanted if s.upper() in books.syncs]
        channels = [books.channel(s) for s in present]
        try:
            await PooledWebSocketInterface.unsubscribe(self, channels)
        finally:
            for symbol, channel in zip(present, channels):
                self._unroute_book(channel)
                await books.remove(symbol)

    async def subscribe_limit_books(self, symbols: Union[str, Iterable[str]], handler: BookHandler,
                                    levels: int = 20) -> dict[str, OrderBook]:
        """Keep books of the top ``levels`` of ``symbols`` from the limit depth channel.

        Each push of ``spot@public.limit.depth.v3.api.pb@<SYMBOL>@<levels>`` is
        a whole top N: it replaces the book (read from its protobuf bytes), so
        no snapshot is fetched and nothing resyncs; the book is invalid from
        a lost connection until the next push. ``handler(book)`` is called
        after each push.

        Args:
            symbols: ``"BTCUSDT"`` or several (any case).
            handler: ``handler(book)`` (a plain function).
            levels: 5, 10 or 20.

        Returns:
            The ``OrderBook`` of each symbol (upper case), invalid until the first push.
        """
        self._check_book_handler(handler)
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        channels = [limit_channel(s, levels) for s in wanted]
        limits = self._limit_books
        if limits is None:
            limits = self._limit_books = LimitBooks(self.exchange, self._emit_error)
        self._listen_for_losses()
        new = [c for c in channels if c not in limits.books]
        for symbol, channel in zip(wanted, channels):
            if channel in new:
                limit = limits.add(symbol, levels, handler)
                self._route_book(channel, limit.on_frame, limit.deliver, limit.book)
        try:
            await PooledWebSocketInterface.subscribe(self, new)
        except Exception:
            for channel in new:
                self._unroute_book(channel)
                limits.books.pop(channel, None)
            raise
        return {s.upper(): limits.books[c].book for s, c in zip(wanted, channels)}

    async def unsubscribe_limit_books(self, symbols: Union[str, Iterable[str]], levels: int = 20) -> None:
        """Stop keeping the limit depth books of ``symbols`` at ``levels``."""
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        limits = self._limit_books
        if limits is None:
            return
        channels = [c for c in (limit_channel(s, levels) for s in wanted) if c in limits.books]
        try:
            await PooledWebSocketInterface.unsubscribe(self, channels)
        finally:
            for channel in channels:
                self._unroute_book(channel)
                limits.books.pop(channel, None)

    def book(self, symbol: str) -> Optional[OrderBook]:
        """The book of ``symbol`` kept by ``subscribe_books``, or None."""
        return None if self._books is None else self._books.book(symbol)

    def limit_book(self, symbol: str, levels: int = 20) -> Optional[OrderBook]:
        """The book of ``symbol`` kept by ``subscribe_limit_books`` at ``levels``, or None."""
        if self._limit_books is None:
            return None
        limit = self._limit_books.books.get(limit_channel(symbol, levels))
        return None if limit is None else limit.book

    @property
    def books(self) -> Optional[MexcBooks]:
        """The books' syncs and snapshot fetcher (None before ``subscribe_books``)."""
        return self._books

    def _check_book_handler(self, handler: BookHandler) -> None:
        if is_async_callable(handler):
            raise TypeError("the book handler must be a plain function (it runs in the frame's "
                            "dispatch, before the next update reaches the book)")
        if type(self)._parse_message is not MexcWebSocket._parse_message:
            raise TypeError("order books read the pushes in the compiled parser, which a subclass "
                            "overriding _parse_message turns off")

    def _route_book(self, channel: str, on_frame: Any, deliver: Any, book: OrderBook) -> None:
        """Send ``channel``'s pushes to ``on_frame`` and the book it returns to ``deliver``."""
        if self._routes is None:
            routes = RouteTable()
            for client in self.every_connection:
                client._share_routes(routes)
                cast(MexcWebSocket, client)._attach_routes()
        assert self._routes is not None

        def book_of(_message: Any) -> OrderBook:
            return book
        # The route is found by the classified channel (adapt): the decoder is never called.
        self._routes.add(channel, on_frame, deliver, StreamType.ORDERBOOK, sequenced=False,
                         pass_stream=False, adapt=book_of)
        self._book_routes.add(channel, on_frame)

    def _attach_routes(self) -> None:
        """Give this connection's live core the route table it was built without (if any)."""
        core = self._core
        if self._routes is not None and core is not None and core.routes is not self._routes:
            attach_routes(core, self._routes)

    def _unroute_book(self, channel: str) -> None:
        assert self._routes is not None
        self._book_routes.remove(channel)
        self._routes.remove(channel)

    def _listen_for_losses(self) -> None:
        if not self._book_listening:
            self._book_listening = True
            self.add_state_listener(self._on_connection_state)
            for member in self._members:
                member.add_state_listener(self._on_connection_state)

    def _overlapping(self) -> bool:
        """True while a connection of the pool is being replaced (make before break)."""
        return self._rotating or any(member._rotating for member in self._members)

    def _on_connection_state(self, old: ConnectionState, new: ConnectionState, reason: Optional[str]) -> None:
        # A connection lost (not a make-before-break rotation, which changes no
        # state): the pushes in between are gone, every book syncs again.
        # With redundant connections one path's loss loses nothing (the books'
        # own version check still catches a loss when every path was down).
        if new is ConnectionState.RECONNECTING and self.config.redundancy == 1:
            if self._books is not None:
                self._books.connection_lost(reason or "reconnecting")
            if self._limit_books is not None:
                self._limit_books.connection_lost(reason or "reconnecting")

    async def stop(self) -> None:
        """Stop the books' syncs, close the REST session, then every connection."""
        books, self._books = self._books, None
        limits, self._limit_books = self._limit_books, None
        if limits is not None:
            for channel in list(limits.books):
                self._unroute_book(channel)
        if books is not None:
            for symbol in list(books.syncs):
                self._unroute_book(books.channel(symbol))
            await books.close()
        await super().stop()

    async def health_check(self) -> dict[str, Any]:
        """As ``PooledWebSocketInterface.health_check``, plus ``books`` (per symbol ``valid``,
        ``resyncs``, ``seconds_invalid``, ``last_update_id``, ``bid_levels``, ``ask_levels``,
        ``snapshots``, ``stale_snapshots``, ``buffered``, ``last_reason``, ``stopped``) and
        ``limit_books`` (per channel ``valid``, ``last_update_id``, ``bid_levels``,
        ``ask_levels``, ``errors``)."""
        health = await super().health_check()
        if self._books is not None:
            health["books"] = self._books.health()
        if self._limit_books is not None:
            health["limit_books"] = self._limit_books.health()
        return health

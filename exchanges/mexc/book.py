"""MEXC local order books: aggregated depth pushes plus REST snapshots, and limit depth books.

``MexcBooks`` is what ``MexcWebSocket.subscribe_books`` runs on: a
``fastws.book.BookSet`` whose syncs read aggregated depth pushes
(``spot@public.aggre.depth.v3.api.pb@<speed>@<SYMBOL>``) from their protobuf
wire bytes (``MexcBookReader``, no Python object per level) and snapshots
from ``GET /api/v3/depth`` as JSON. MEXC chains pushes with
``fromVersion == previous toVersion + 1`` (``SequenceRules(step=1)``); the
sync procedure is Binance's with those names (PROTOCOLS.md).

REST limits (MEXC spot v3): 300 weight per 10 s per IP, ``/api/v3/depth``
weighing 1 whatever its limit (our reading of MEXC's table; a client that
asks one snapshot per resync stays far below it). Over the limit MEXC answers
HTTP 429 (with ``Retry-After`` when it gives one): the fetcher waits that long.
MEXC documents no 418; one is handled as Binance's (an IP ban: the book stops
and says so) rather than retried into a longer ban.

``LimitBooks`` keeps books from the limit depth channel
(``spot@public.limit.depth.v3.api.pb@<SYMBOL>@<5|10|20>``): each push is a
whole top N, applied as a snapshot, so no REST sync and no resync are needed.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from exchanges.mexc import channels as _channels
from exchanges.mexc._fastpb import MexcBookReader
from fastws.book import OrderBook
from fastws.book.books import BookHandler, BookSet
from fastws.book.rest import SnapshotFetcher, WeightBudget
from fastws.book.sync import SequenceRules
from fastws.errors import ExchangeAPIError, InvalidMessageError

__all__ = ["DEFAULT_BOOK_DEPTH", "DEFAULT_BOOK_SPEED", "LimitBooks", "MexcBooks", "REST_URL", "WEIGHT_PER_WINDOW",
           "WEIGHT_WINDOW", "depth_channel", "depth_weight", "limit_channel"]

REST_URL = "https://api.mexc.com"
"""MEXC spot's public REST base URL."""

WEIGHT_PER_WINDOW = 300
"""Request weight one IP may spend per ``WEIGHT_WINDOW`` seconds."""

WEIGHT_WINDOW = 10.0
"""Seconds of MEXC's weight window."""

DEFAULT_BOOK_DEPTH = 1000
"""Snapshot levels per side asked for (PROTOCOLS.md: MEXC's guide syncs from 1000)."""

DEFAULT_BOOK_SPEED = "10ms"
"""Aggregation of the depth channel: 10 ms pushes reach the book up to 90 ms
sooner than 100 ms ones; each carries fewer levels, and a push costs the
compiled reader well under a microsecond, so the faster channel is the default."""

_ERROR_PREVIEW = 256


def depth_weight(limit: int) -> int:
    """The request weight of ``GET /api/v3/depth`` (1 at any limit)."""
    return 1


def _check_speed(speed: str) -> str:
    if speed not in _channels.UPDATE_SPEEDS:
        raise ValueError(f"a MEXC depth speed is one of {', '.join(_channels.UPDATE_SPEEDS)}, not {speed!r}")
    return speed


def depth_channel(symbol: str, speed: str = DEFAULT_BOOK_SPEED) -> str:
    """The aggregated depth channel of ``symbol``: ``spot@public.aggre.depth.v3.api.pb@10ms@BTCUSDT``."""
    return f"spot@public.aggre.depth.v3.api.pb@{_check_speed(speed)}@{symbol.upper()}"


def limit_channel(symbol: str, levels: int) -> str:
    """The limit depth channel of ``symbol``: ``spot@public.limit.depth.v3.api.pb@BTCUSDT@20``."""
    if levels not in _channels.DEPTH_LEVELS:
        raise ValueError(f"MEXC limit depth has {', '.join(map(str, _channels.DEPTH_LEVELS))} levels, "
                         f"not {levels}")
    return f"spot@public.limit.depth.v3.api.pb@{symbol.upper()}@{levels}"


class MexcBooks(BookSet):
    """The aggregated depth books of one ``MexcWebSocket``: syncs, the snapshot fetcher, health.

    Args:
        exchange: Name used in messages (``"mexc"``).
        rest_url: REST base URL of the snapshots.
        report: Passes an error to the client's error handler.
        depth: Snapshot limit (levels per side, 1 to 5000).
        speed: The depth channel's aggregation, ``"10ms"`` or ``"100ms"``.
        catch_up_timeout: Seconds a snapshot ahead of the stream waits for it.
        timeout: Seconds allowed for a snapshot request.
        expect_reorder: True while a make-before-break overlap may deliver pushes out of order.
    """

    def __init__(self, exchange: str, rest_url: str, report: Callable[[ExchangeAPIError], None], *,
                 depth: int = DEFAULT_BOOK_DEPTH, speed: str = DEFAULT_BOOK_SPEED,
                 catch_up_timeout: float = 10.0, timeout: float = 10.0,
                 expect_reorder: Optional[Callable[[], bool]] = None) -> None:
        if not 1 <= depth <= 5000:
            raise ValueError(f"depth must be 1 to 5000 (MEXC's limits), got {depth}")
        self.speed = _check_speed(speed)
        fetcher = SnapshotFetcher(rest_url, depth_weight, timeout=timeout, name=exchange)
        fetcher.budget = WeightBudget(WEIGHT_PER_WINDOW, WEIGHT_WINDOW)
        super().__init__(exchange, fetcher, MexcBookReader(), report, depth=depth, rules=SequenceRules(step=1),
                         catch_up_timeout=catch_up_timeout, expect_reorder=expect_reorder)

    def channel(self, symbol: str) -> str:
        """The depth channel of ``symbol`` at this set's speed."""
        return depth_channel(symbol, self.speed)


class LimitBook:
    """One limit depth book: each push replaces it whole (``MexcBookReader.apply_limit``).

    Args:
        book: The compiled book it keeps.
        reader: Reads the pushes.
        on_update: ``on_update(book)`` after each applied push.
        on_error: Gets the errors (a push that does not parse, a raising handler).
        name: Prefix of error messages (``"mexc BTCUSDT@20"``).
    """

    def __init__(self, book: OrderBook, reader: MexcBookReader, on_update: BookHandler,
                 on_error: Callable[[ExchangeAPIError], None], name: str) -> None:
        self.book = book
        self.reader = reader
        self.name = name
        self.errors = 0
        self._on_update = on_update
        self._on_error = on_error
        self._notified = -1

    def on_frame(self, data: Any) -> OrderBook:
        """A push's raw bytes (valid during the call): the book becomes its levels."""
        try:
            self.reader.apply_limit(self.book, data)
        except ValueError as exc:
            self.errors += 1
            error = InvalidMessageError(f"{self.name}: limit depth push does not parse: {exc}",
                                        bytes(data)[:_ERROR_PREVIEW])
            error.__cause__ = exc
            self._on_error(error)
        return self.book

    def deliver(self, book: OrderBook) -> None:
        """``on_update(book)`` once per applied push (a push that failed is not delivered)."""
        if book.valid and book.update_id != self._notified:
            self._notified = book.update_id
            self._on_update(book)

    def connection_lost(self, reason: str) -> None:
        """The next push replaces the book whole: until then it is out of date, so invalid."""
        self.book.invalidate()


class LimitBooks:
    """The limit depth books of one ``MexcWebSocket``, keyed by channel.

    Args:
        exchange: Name used in messages.
        report: Passes an error to the client's error handler.
    """

    def __init__(self, exchange: str, report: Callable[[ExchangeAPIError], None]) -> None:
        self.exchange = exchange
        self.reader = MexcBookReader()
        self.books: dict[str, LimitBook] = {}
        self._report = report

    def add(self, symbol: str, levels: int, handler: BookHandler) -> LimitBook:
        """A new limit book of ``symbol`` at ``levels`` (an existing one keeps its handler)."""
        channel = limit_channel(symbol, levels)
        book = self.books.get(channel)
        if book is None:
            book = LimitBook(OrderBook(symbol.upper()), self.reader, handler, self._report,
                             f"{self.exchange} {symbol.upper()}@{levels}")
            self.books[channel] = book
        return book

    def connection_lost(self, reason: str) -> None:
        """Every limit book is out of date until its next push."""
        for book in self.books.values():
            book.connection_lost(reason)

    def health(self) -> dict[str, dict[str, Any]]:
        """Per channel: valid, last version, levels per side, pushes that did not parse."""
        return {channel: {
            "valid": bool(limit.book.valid),
            "last_update_id": limit.book.update_id,
            "bid_levels": limit.book.bid_count,
            "ask_levels": limit.book.ask_count,
            "errors": limit.errors,
        } for channel, limit in self.books.items()}

"""Binance spot stream names: endpoints, limits, classification and validation.

A stream name is ``<symbol>@<suffix>`` with a lower-case symbol (``btcusdt@trade``) or
an all-market name starting with ``!`` (``!ticker@arr``). The set of valid suffixes is
finite, so classification is one dictionary lookup built at import.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Iterable, Mapping

from fastws.types import StreamType

from . import messages

__all__ = [
    "CONNECTION_ATTEMPT_WINDOW",
    "DATA_ONLY_URL",
    "KLINE_INTERVALS",
    "MAX_CONNECTION_AGE",
    "MAX_CONNECTION_ATTEMPTS",
    "MAX_INCOMING_MESSAGES_PER_SECOND",
    "MAX_STREAMS_PER_CONNECTION",
    "PONG_DEADLINE",
    "SERVER_PING_INTERVAL",
    "SPOT_URL",
    "TICKER_WINDOWS",
    "StreamKind",
    "decode_type",
    "is_snapshot_stream",
    "is_valid_stream",
    "payload_kind",
    "payload_type",
    "stream_kind",
    "stream_type",
    "stream_type_of_kind",
    "symbol_of",
    "stream_name_problem",
    "validate_streams",
]

SPOT_URL = "wss://stream.binance.com:9443"
"""Spot stream endpoint (port 443 also works); raw streams at ``/ws/<stream>``,
combined streams at ``/stream?streams=<s1>/<s2>``."""

DATA_ONLY_URL = "wss://data-stream.binance.vision"
"""Market-data-only endpoint, same paths as :data:`SPOT_URL`."""

MAX_STREAMS_PER_CONNECTION = 1024
"""Streams one connection may carry."""

MAX_INCOMING_MESSAGES_PER_SECOND = 5
"""Messages the server accepts from the client per second and connection, counting
pings, pongs and JSON control messages; above it the server disconnects."""

MAX_CONNECTION_ATTEMPTS = 300
"""Connection attempts allowed per IP within :data:`CONNECTION_ATTEMPT_WINDOW`."""

CONNECTION_ATTEMPT_WINDOW = 300.0
"""The window, in seconds, of :data:`MAX_CONNECTION_ATTEMPTS`."""

MAX_CONNECTION_AGE = 24 * 3600.0
"""Seconds after which the server closes a connection."""

SERVER_PING_INTERVAL = 20.0
"""Seconds between the server's ping frames."""

PONG_DEADLINE = 60.0
"""Seconds the server waits for a pong before it disconnects."""

KLINE_INTERVALS = (
    "1s", "1m", "3m", "5m", "15m", "30m",
    "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)
"""Intervals of ``<symbol>@kline_<interval>``, shortest first."""

TICKER_WINDOWS = ("1h", "4h", "1d")
"""Windows of the rolling-window ticker ``<symbol>@ticker_<window>``."""


class StreamKind(str, Enum):
    """The payload layout a Binance stream carries."""

    DEPTH_UPDATE = "depth_update"
    PARTIAL_DEPTH = "partial_depth"
    TRADE = "trade"
    AGG_TRADE = "agg_trade"
    BOOK_TICKER = "book_ticker"
    TICKER = "ticker"
    MINI_TICKER = "mini_ticker"
    KLINE = "kline"
    OTHER = "other"


def _suffix_kinds() -> dict[str, StreamKind]:
    kinds = {
        "trade": StreamKind.TRADE,
        "aggTrade": StreamKind.AGG_TRADE,
        "bookTicker": StreamKind.BOOK_TICKER,
        "ticker": StreamKind.TICKER,
        "miniTicker": StreamKind.MINI_TICKER,
    }
    for speed in ("", "@100ms", "@1000ms"):
        kinds["depth" + speed] = StreamKind.DEPTH_UPDATE
        for levels in ("5", "10", "20"):
            kinds["depth" + levels + speed] = StreamKind.PARTIAL_DEPTH
    for window in TICKER_WINDOWS:
        kinds["ticker_" + window] = StreamKind.TICKER
    for interval in KLINE_INTERVALS:
        kinds["kline_" + interval] = StreamKind.KLINE
        kinds["kline_" + interval + "@+08:00"] = StreamKind.KLINE
    return kinds


# The part after "<symbol>@" -> kind.
_SUFFIX_KINDS = _suffix_kinds()

# Whole all-market names -> kind.
_ALL_MARKET_KINDS: dict[str, StreamKind] = {
    "!ticker@arr": StreamKind.TICKER,
    "!miniTicker@arr": StreamKind.MINI_TICKER,
    "!bookTicker": StreamKind.BOOK_TICKER,
    **{f"!ticker_{window}@arr": StreamKind.TICKER for window in TICKER_WINDOWS},
}

_STREAM_TYPES: dict[StreamKind, StreamType] = {
    StreamKind.DEPTH_UPDATE: StreamType.ORDERBOOK,
    StreamKind.PARTIAL_DEPTH: StreamType.ORDERBOOK,
    StreamKind.TRADE: StreamType.TRADES,
    StreamKind.AGG_TRADE: StreamType.TRADES,
    StreamKind.BOOK_TICKER: StreamType.TICKER,
    StreamKind.TICKER: StreamType.TICKER,
    StreamKind.MINI_TICKER: StreamType.TICKER,
    StreamKind.KLINE: StreamType.KLINE,
    StreamKind.OTHER: StreamType.OTHER,
}


_PAYLOAD_TYPES: dict[StreamKind, type] = {
    StreamKind.DEPTH_UPDATE: messages.DepthUpdate,
    StreamKind.PARTIAL_DEPTH: messages.PartialDepth,
    StreamKind.TRADE: messages.Trade,
    StreamKind.AGG_TRADE: messages.AggTrade,
    StreamKind.BOOK_TICKER: messages.BookTicker,
    StreamKind.TICKER: messages.Ticker24h,
    StreamKind.MINI_TICKER: messages.MiniTicker,
    StreamKind.KLINE: messages.Kline,
}

# Event type "e" -> kind, from the event types messages.py knows.
_TYPE_KINDS = {t: k for k, t in _PAYLOAD_TYPES.items()}
_TYPE_KINDS[messages.WindowTicker] = StreamKind.TICKER
_EVENT_KINDS = {event: _TYPE_KINDS[t] for event, t in messages.EVENT_TYPES.items()}

_BOOK_TICKER_KEYS = frozenset("usbBaA")

_OTHER = StreamKind.OTHER


def stream_kind(name: str) -> StreamKind:
    """Classify a stream by its name.

    Only the suffix is checked (any non-empty symbol is accepted); use
    :func:`is_valid_stream` to check the symbol as well.

    Args:
        name: A stream name, e.g. ``"btcusdt@depth@100ms"`` or ``"!ticker@arr"``.

    Returns:
        The kind of payload the stream carries; ``StreamKind.OTHER`` for a name that is
        none of the known forms.
    """
    if name[:1] == "!":
        return _ALL_MARKET_KINDS.get(name, _OTHER)
    symbol, _, suffix = name.partition("@")
    if not symbol:
        return _OTHER
    return _SUFFIX_KINDS.get(suffix, _OTHER)


def stream_type(name: str) -> StreamType:
    """The fastws stream type of a stream name.

    Args:
        name: A stream name.

    Returns:
        ``ORDERBOOK`` for depth streams, ``TRADES`` for trade and aggTrade, ``TICKER``
        for bookTicker, ticker and miniTicker, ``KLINE`` for klines, else ``OTHER``.
    """
    return _STREAM_TYPES[stream_kind(name)]


def stream_type_of_kind(kind: StreamKind) -> StreamType:
    """The fastws stream type of a stream kind (see ``stream_type``)."""
    return _STREAM_TYPES[kind]


# Kinds whose every message holds the whole state it reports (the newest
# replaces the older ones): a lossy slow-consumer policy may skip messages.
_SNAPSHOT_KINDS = frozenset({StreamKind.PARTIAL_DEPTH, StreamKind.BOOK_TICKER, StreamKind.TICKER,
                             StreamKind.MINI_TICKER, StreamKind.KLINE})


def is_snapshot_stream(name: str) -> bool:
    """Whether each message of a stream holds the whole state it reports.

    True for one symbol's partial depth, bookTicker, tickers and klines (a
    kline message is the candle so far; conflating may skip the one that
    closes an interval, ``x`` true). False for diff depth, trades and
    aggTrades (each message is news), and for the all-market streams
    (``!ticker@arr`` carries only the tickers that changed, ``!bookTicker``
    one symbol a message).

    Args:
        name: A stream name.
    """
    return name[:1] != "!" and stream_kind(name) in _SNAPSHOT_KINDS


def is_valid_stream(name: object) -> bool:
    """Whether a stream name has one of the forms this module classifies.

    Other streams Binance serves (e.g. ``<symbol>@avgPrice``) count as invalid here.

    Args:
        name: A stream name.

    Returns:
        True for ``<symbol>@<suffix>`` with a lower-case ASCII alphanumeric symbol and a
        known suffix, and for the known ``!`` all-market names; False for anything that
        is not a string.
    """
    if not isinstance(name, str):
        return False
    if name[:1] == "!":
        return name in _ALL_MARKET_KINDS
    symbol, _, suffix = name.partition("@")
    return (
        suffix in _SUFFIX_KINDS
        and symbol.isascii()
        and symbol.isalnum()
        and symbol == symbol.lower()
    )


# Streams Binance serves whose payloads this module does not classify (they
# take the dict route).
_UNCLASSIFIED_SUFFIXES = frozenset({"avgPrice"})


def stream_name_problem(name: str) -> str | None:
    """Why Binance would refuse ``name`` as a stream name, or None when it serves it.

    Args:
        name: A stream name.

    Returns:
        None for the names ``is_valid_stream`` accepts and for the streams
        Binance serves that this module does not classify (``<symbol>@avgPrice``);
        otherwise a short reason.
    """
    if is_valid_stream(name):
        return None
    symbol, at, suffix = name.partition("@")
    well_formed_symbol = symbol.isascii() and symbol.isalnum()
    if at and suffix in _UNCLASSIFIED_SUFFIXES and well_formed_symbol and symbol == symbol.lower():
        return None
    if well_formed_symbol and symbol != symbol.lower():
        return "symbols are lowercase in Binance stream names"
    return ("not a Binance stream name (<symbol>@trade, @aggTrade, @depth, @depth5/10/20[@100ms], "
            "@bookTicker, @ticker, @ticker_1h/4h/1d, @miniTicker, @kline_<interval>, @avgPrice, "
            "or an all-market name such as !ticker@arr)")


def validate_streams(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that are not valid stream names.

    Args:
        names: Stream names.

    Returns:
        The invalid names, in their given order; empty when all are valid.
    """
    return [name for name in names if not is_valid_stream(name)]


def payload_kind(data: Mapping[str, Any]) -> StreamKind:
    """Classify a bare payload, as received on a raw ``/ws`` connection.

    Args:
        data: A decoded payload object.

    Returns:
        The kind by the event type ``e``; for payloads without ``e``,
        ``PARTIAL_DEPTH`` when it has ``lastUpdateId`` and ``BOOK_TICKER`` when it has
        the bookTicker keys ``u s b B a A``; else ``OTHER`` (including unknown event
        types such as ``serverShutdown``).
    """
    event = data.get("e")
    if event is not None:
        return _EVENT_KINDS.get(event, _OTHER) if type(event) is str else _OTHER
    if "lastUpdateId" in data:
        return StreamKind.PARTIAL_DEPTH
    if _BOOK_TICKER_KEYS <= data.keys():
        return StreamKind.BOOK_TICKER
    return _OTHER


def payload_type(kind: StreamKind) -> type | None:
    """The struct of :mod:`exchanges.binance.messages` for one payload of a kind.

    ``TICKER`` maps to :class:`~exchanges.binance.messages.Ticker24h`; rolling-window
    tickers and ``@arr`` streams need :func:`decode_type`.

    Args:
        kind: A stream kind.

    Returns:
        The struct type, or None for ``OTHER``.
    """
    return _PAYLOAD_TYPES.get(kind)


def decode_type(name: str) -> Any:
    """The exact type to decode a stream's payload with.

    Like ``payload_type(stream_kind(name))``, except that ``!...@arr`` streams give a
    ``list`` of the struct and rolling-window tickers (``@ticker_1h`` etc.) give
    :class:`~exchanges.binance.messages.WindowTicker`.

    Args:
        name: A stream name.

    Returns:
        A type for ``msgspec.json.Decoder``, or None for an unknown stream.
    """
    kind = stream_kind(name)
    one: Any = _PAYLOAD_TYPES.get(kind)
    if kind is StreamKind.TICKER and "ticker_" in name:
        one = messages.WindowTicker
    if one is not None and name.endswith("@arr"):
        return list.__class_getitem__(one)
    return one


def symbol_of(name: str) -> str | None:
    """The symbol part of a stream name, lower-cased.

    Args:
        name: A stream name, e.g. ``"btcusdt@trade"``.

    Returns:
        ``"btcusdt"``; None for ``!`` all-market names and names without a symbol.
    """
    if name[:1] == "!":
        return None
    symbol, sep, _ = name.partition("@")
    return symbol.lower() if sep and symbol else None

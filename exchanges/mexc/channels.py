"""MEXC spot v3 channel names: endpoint, limits, parsing, classification, control texts.

A channel is ``spot@<base>`` followed by ``@``-separated parameters whose order depends
on the base (PROTOCOLS.md, MEXC section)::

    spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT      speed, symbol
    spot@public.limit.depth.v3.api.pb@BTCUSDT@5          symbol, levels
    spot@public.kline.v3.api.pb@BTCUSDT@Min15            symbol, interval
    spot@public.deals.v3.api.pb@BTCUSDT                  symbol (legacy)
    spot@private.orders.v3.api.pb                        none (needs a listenKey)

Symbols are UPPERCASE ASCII letters and digits. The mini ticker channels are retired:
their names parse (``is_retired``), but the server answers "Blocked!".

This module knows the protocol, not the client: the adapter and the simulator both use it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Iterable

from fastws.types import StreamType

__all__ = [
    "DEPTH_LEVELS",
    "IDLE_TIMEOUT",
    "KLINE_INTERVALS",
    "MAX_CONNECTION_AGE",
    "MAX_MESSAGES_PER_SECOND",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "NO_SUBSCRIPTION_TIMEOUT",
    "PONG_MSG",
    "REJECTION_PREFIX",
    "UPDATE_SPEEDS",
    "WS_PATH",
    "WS_URL",
    "Channel",
    "ChannelKind",
    "body_field",
    "channel_kind",
    "event_type",
    "is_private",
    "is_rejection",
    "is_retired",
    "is_snapshot_channel",
    "is_valid_channel",
    "parse_channel",
    "rejection_msg",
    "stream_type",
    "symbol_of",
]

WS_URL = "wss://wbs-api.mexc.com/ws"
WS_PATH = "/ws"
"""The path of MEXC's WebSocket endpoint."""
"""The spot v3 endpoint; private channels need ``?listenKey=<key>``."""

MAX_SUBSCRIPTIONS_PER_CONNECTION = 30
"""Channels one connection may carry (more are invalid)."""

MAX_MESSAGES_PER_SECOND = 100
"""Messages a client may send per second and connection."""

MAX_CONNECTION_AGE = 24 * 3600.0
"""Seconds after which the server closes a connection."""

NO_SUBSCRIPTION_TIMEOUT = 30.0
"""Seconds after which the server closes a connection without a valid subscription."""

IDLE_TIMEOUT = 60.0
"""Seconds without a client message after which the server closes (so PING regularly)."""

UPDATE_SPEEDS = ("100ms", "10ms")
"""Push intervals of the aggregated channels."""

DEPTH_LEVELS = (5, 10, 20)
"""Levels of the limit depth channel."""

KLINE_INTERVALS: dict[str, int] = {
    "Min1": 60, "Min5": 300, "Min15": 900, "Min30": 1800, "Min60": 3600, "Hour4": 14_400,
    "Hour8": 28_800, "Day1": 86_400, "Week1": 604_800, "Month1": 2_592_000,
}
"""Kline intervals and their length in seconds (a month counts as 30 days)."""

PONG_MSG = "PONG"
"""The ``msg`` of the reply to ``{"method": "PING"}``."""

REJECTION_PREFIX = "Not Subscribed successfully!"
"""How the ``msg`` of a rejection starts (a rejection has code 0, like an ack)."""


class ChannelKind(str, Enum):
    """The kind of push a channel carries."""

    AGGRE_DEPTH = "aggre_depth"
    INCREASE_DEPTH = "increase_depth"                 # legacy
    INCREASE_DEPTH_BATCH = "increase_depth_batch"
    LIMIT_DEPTH = "limit_depth"
    AGGRE_DEALS = "aggre_deals"
    DEALS = "deals"                                   # legacy
    PRIVATE_DEALS = "private_deals"
    AGGRE_BOOK_TICKER = "aggre_book_ticker"
    BOOK_TICKER = "book_ticker"                       # legacy
    BOOK_TICKER_BATCH = "book_ticker_batch"
    MINI_TICKER = "mini_ticker"                       # retired
    MINI_TICKERS = "mini_tickers"                     # retired
    KLINE = "kline"
    PRIVATE_ORDERS = "private_orders"
    PRIVATE_ACCOUNT = "private_account"


_K = ChannelKind

# "spot@<base>" -> kind, parameter slots after it, body field of its pushes.
_BASES: dict[str, tuple[ChannelKind, tuple[str, ...], str]] = {
    "spot@public.aggre.depth.v3.api.pb": (_K.AGGRE_DEPTH, ("speed", "symbol"), "publicAggreDepths"),
    "spot@public.increase.depth.v3.api.pb": (_K.INCREASE_DEPTH, ("symbol",), "publicIncreaseDepths"),
    "spot@public.increase.depth.batch.v3.api.pb": (_K.INCREASE_DEPTH_BATCH, ("symbol",),
                                                   "publicIncreaseDepthsBatch"),
    "spot@public.limit.depth.v3.api.pb": (_K.LIMIT_DEPTH, ("symbol", "levels"), "publicLimitDepths"),
    "spot@public.aggre.deals.v3.api.pb": (_K.AGGRE_DEALS, ("speed", "symbol"), "publicAggreDeals"),
    "spot@public.deals.v3.api.pb": (_K.DEALS, ("symbol",), "publicDeals"),
    "spot@private.deals.v3.api.pb": (_K.PRIVATE_DEALS, (), "privateDeals"),
    "spot@public.aggre.bookTicker.v3.api.pb": (_K.AGGRE_BOOK_TICKER, ("speed", "symbol"),
                                               "publicAggreBookTicker"),
    "spot@public.bookTicker.v3.api.pb": (_K.BOOK_TICKER, ("symbol",), "publicBookTicker"),
    "spot@public.bookTicker.batch.v3.api.pb": (_K.BOOK_TICKER_BATCH, ("symbol",), "publicBookTickerBatch"),
    "spot@public.miniTicker.v3.api.pb": (_K.MINI_TICKER, ("symbol", "timezone"), "publicMiniTicker"),
    "spot@public.miniTickers.v3.api.pb": (_K.MINI_TICKERS, ("timezone",), "publicMiniTickers"),
    "spot@public.kline.v3.api.pb": (_K.KLINE, ("symbol", "interval"), "publicSpotKline"),
    "spot@private.orders.v3.api.pb": (_K.PRIVATE_ORDERS, (), "privateOrders"),
    "spot@private.account.v3.api.pb": (_K.PRIVATE_ACCOUNT, (), "privateAccount"),
}

_BODY_FIELDS: dict[ChannelKind, str] = {kind: field for kind, _, field in _BASES.values()}

_STREAM_TYPES: dict[ChannelKind, StreamType] = {
    _K.AGGRE_DEPTH: StreamType.ORDERBOOK,
    _K.INCREASE_DEPTH: StreamType.ORDERBOOK,
    _K.INCREASE_DEPTH_BATCH: StreamType.ORDERBOOK,
    _K.LIMIT_DEPTH: StreamType.ORDERBOOK,
    _K.AGGRE_DEALS: StreamType.TRADES,
    _K.DEALS: StreamType.TRADES,
    _K.PRIVATE_DEALS: StreamType.TRADES,
    _K.AGGRE_BOOK_TICKER: StreamType.TICKER,
    _K.BOOK_TICKER: StreamType.TICKER,
    _K.BOOK_TICKER_BATCH: StreamType.TICKER,
    _K.MINI_TICKER: StreamType.TICKER,
    _K.MINI_TICKERS: StreamType.TICKER,
    _K.KLINE: StreamType.KLINE,
    _K.PRIVATE_ORDERS: StreamType.OTHER,
    _K.PRIVATE_ACCOUNT: StreamType.OTHER,
}

_PRIVATE = frozenset({_K.PRIVATE_DEALS, _K.PRIVATE_ORDERS, _K.PRIVATE_ACCOUNT})
_RETIRED = frozenset({_K.MINI_TICKER, _K.MINI_TICKERS})

# MEXC's mini ticker time zones: UTC, UTC+8, UTC-3, UTC+5:30, ... and 24H.
_TIMEZONE = re.compile(r"UTC(?:[+-](?:[0-9]|1[0-4])(?::(?:30|45))?)?|24H")
_LEVELS = {str(n): n for n in DEPTH_LEVELS}


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel name.

    Attributes:
        name: The channel as given.
        kind: What its pushes carry.
        symbol: The UPPERCASE symbol; None for private and all-market channels.
        event_type: The channel without its symbol part (the body's ``eventType``);
            for limit depth just ``spot@public.limit.depth.v3.api.pb``.
        speed: ``"100ms"`` or ``"10ms"`` for the aggregated channels, else None.
        levels: 5, 10 or 20 for limit depth, else 0.
        interval: The kline interval (``"Min15"``), else None.
        timezone: The mini ticker time zone (``"UTC+8"``), else None.
    """

    name: str
    kind: ChannelKind
    symbol: str | None
    event_type: str
    speed: str | None = None
    levels: int = 0
    interval: str | None = None
    timezone: str | None = None

    @property
    def body_field(self) -> str:
        """The oneof field of ``PushDataV3ApiWrapper`` its pushes carry."""
        return _BODY_FIELDS[self.kind]

    @property
    def stream_type(self) -> StreamType:
        """The fastws stream type (see :func:`stream_type`)."""
        return _STREAM_TYPES[self.kind]

    @property
    def private(self) -> bool:
        """Needs a listenKey connection."""
        return self.kind in _PRIVATE

    @property
    def retired(self) -> bool:
        """A valid name the server no longer serves ("Blocked!")."""
        return self.kind in _RETIRED


def _is_symbol(text: str) -> bool:
    return text.isascii() and text.isalnum() and text == text.upper()


def _parse(name: str) -> Channel | None:
    parts = name.split("@")
    base = "@".join(parts[:2])
    entry = _BASES.get(base)
    if entry is None:
        return None
    kind, slots, _ = entry
    params = parts[2:]
    if len(params) != len(slots):
        return None
    values: dict[str, str] = dict(zip(slots, params))
    symbol = values.get("symbol")
    if symbol is not None and not _is_symbol(symbol):
        return None
    speed = values.get("speed")
    if speed is not None and speed not in UPDATE_SPEEDS:
        return None
    interval = values.get("interval")
    if interval is not None and interval not in KLINE_INTERVALS:
        return None
    timezone = values.get("timezone")
    if timezone is not None and not _TIMEZONE.fullmatch(timezone):
        return None
    levels = 0
    if "levels" in values:
        levels = _LEVELS.get(values["levels"], 0)
        if not levels:
            return None
    if kind is _K.LIMIT_DEPTH:
        event = base
    else:
        event = "@".join(p for slot, p in zip(("",) * 2 + slots, parts) if slot != "symbol")
    return Channel(name, kind, symbol, event, speed, levels, interval, timezone)


_parsed: dict[str, Channel | None] = {}


def parse_channel(name: str) -> Channel | None:
    """Parse a channel name.

    Args:
        name: A channel, e.g. ``"spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"``.

    Returns:
        The parsed channel, or None when ``name`` is not a MEXC spot v3 channel (unknown
        base, wrong parameter count, lower-case symbol, unknown speed, levels, interval
        or time zone). Retired channels parse (see ``Channel.retired``).
    """
    if name in _parsed:
        return _parsed[name]
    channel = _parse(name) if isinstance(name, str) else None
    if len(_parsed) < 100_000:
        _parsed[name] = channel
    return channel


def is_valid_channel(name: str) -> bool:
    """Whether ``name`` is a well-formed channel (retired ones included)."""
    return parse_channel(name) is not None


def channel_kind(name: str) -> ChannelKind | None:
    """The kind of a channel; None for an invalid name."""
    channel = parse_channel(name)
    return None if channel is None else channel.kind


def stream_type(name: str) -> StreamType:
    """The fastws stream type of a channel.

    Args:
        name: A channel.

    Returns:
        ``ORDERBOOK`` for aggregated, legacy (single and batch) and limit depth;
        ``TRADES`` for aggregated, legacy and private deals; ``TICKER`` for book
        tickers (legacy, aggregated, batch) and mini tickers; ``KLINE`` for klines;
        ``OTHER`` for private orders and account, and for invalid names.
    """
    channel = parse_channel(name)
    return StreamType.OTHER if channel is None else _STREAM_TYPES[channel.kind]


def body_field(kind: ChannelKind) -> str:
    """The oneof field name of ``PushDataV3ApiWrapper`` that pushes of ``kind`` carry."""
    return _BODY_FIELDS[kind]


def symbol_of(name: str) -> str | None:
    """The UPPERCASE symbol of a channel; None for invalid, private and all-market channels."""
    channel = parse_channel(name)
    return None if channel is None else channel.symbol


def event_type(name: str) -> str | None:
    """The channel without its symbol part (what the body's ``eventType`` holds).

    ``spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT`` gives
    ``spot@public.aggre.depth.v3.api.pb@100ms``; limit depth gives just
    ``spot@public.limit.depth.v3.api.pb``; a channel without a symbol gives itself.
    None for an invalid name.
    """
    channel = parse_channel(name)
    return None if channel is None else channel.event_type


def is_private(name: str) -> bool:
    """Whether a channel is valid and private (it needs a ``?listenKey=`` connection)."""
    channel = parse_channel(name)
    return channel is not None and channel.private


def is_retired(name: str) -> bool:
    """Whether a channel is valid but retired (mini ticker, mini tickers)."""
    channel = parse_channel(name)
    return channel is not None and channel.retired


# Kinds whose every push holds the whole state it reports for one symbol:
# a lossy slow-consumer policy may skip pushes.
_SNAPSHOT_KINDS = frozenset({_K.LIMIT_DEPTH, _K.AGGRE_BOOK_TICKER, _K.BOOK_TICKER, _K.BOOK_TICKER_BATCH,
                             _K.MINI_TICKER, _K.KLINE})


def is_snapshot_channel(name: str) -> bool:
    """Whether each push of a channel holds the whole state it reports.

    True for limit depth (a top-N book), the book tickers and klines (the
    candle so far); False for depth diffs, deals, private channels, the
    all-market mini tickers and invalid names.
    """
    channel = parse_channel(name)
    return channel is not None and channel.kind in _SNAPSHOT_KINDS


def rejection_msg(channels: Iterable[str]) -> str:
    """The ``msg`` of the server's rejection of ``channels``, in MEXC's exact text form.

    Note the two spaces after the period, the full-width colon and the trailing space.
    """
    return f"{REJECTION_PREFIX} [{','.join(channels)}].  Reason： Blocked! "


def is_rejection(msg: str) -> bool:
    """Whether a reply's ``msg`` is a rejection (acks and rejections both have code 0)."""
    return msg.startswith(REJECTION_PREFIX)

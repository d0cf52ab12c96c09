"""Typed Binance spot stream payloads, decoded straight from the frame's bytes.

Each payload is a :class:`msgspec.Struct` whose attributes have descriptive names and
whose encoded names are Binance's keys, so
``msgspec.to_builtins(msgspec.json.decode(payload, type=Trade))`` equals
``msgspec.json.decode(payload)`` for a payload as Binance sends it. Prices and
quantities stay the decimal strings Binance sends. Book levels are ``[price, qty]``
lists: tuples would come back from ``to_builtins`` as tuples, not lists, and checking
their length would cost about 6 % of a depth decode. Timestamps are integers in
milliseconds, or microseconds on a connection opened with ``?timeUnit=MICROSECOND``.

Decoding ignores fields a struct does not name, so fields Binance adds later do not
break it (they are dropped, not kept). A missing field or a value of the wrong type
raises :class:`msgspec.ValidationError`; bytes that are not JSON raise
:class:`msgspec.DecodeError` (its base class).

Decode with a decoder built once per type, e.g. ``msgspec.json.Decoder(DepthUpdate)``;
it accepts ``bytes`` and ``memoryview`` alike. Fields are declared in the order Binance
sends them, because msgspec looks each key up from the field after the last one it
matched: a 24hrTicker decodes about twice as slow into a struct declared in another
order. The structs are built with ``gc=False``: they hold only strings, numbers and
lists of those, so they cannot form a reference cycle unless a caller stores a struct
inside one of its own lists. Don't.
"""
from __future__ import annotations

import msgspec

__all__ = [
    "EVENT_TYPES",
    "AggTrade",
    "BookTicker",
    "DepthUpdate",
    "Event",
    "Kline",
    "KlineData",
    "MiniTicker",
    "PartialDepth",
    "PriceLevel",
    "Ticker24h",
    "Trade",
    "WindowTicker",
]

PriceLevel = list[str]
"""One book level: ``[price, quantity]`` as decimal strings; quantity ``"0"`` removes it."""


class Event(msgspec.Struct, gc=False):
    """The fields every payload with an event type starts with; base of those structs.

    Attributes:
        event_type: Event type, e.g. ``"trade"`` (``e``).
        event_time: Event time (``E``).
        symbol: Upper-case symbol, e.g. ``"BTCUSDT"`` (``s``).
    """

    event_type: str = msgspec.field(name="e")
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")


class DepthUpdate(Event):
    """A diff-depth event (``<symbol>@depth``, event type ``depthUpdate``).

    Continuity: an event's ``first_update_id`` is the previous event's
    ``final_update_id`` + 1.

    Attributes:
        first_update_id: First update id in the event (``U``).
        final_update_id: Final update id in the event (``u``).
        bids: Changed bid levels (``b``).
        asks: Changed ask levels (``a``).
    """

    first_update_id: int = msgspec.field(name="U")
    final_update_id: int = msgspec.field(name="u")
    bids: list[PriceLevel] = msgspec.field(name="b")
    asks: list[PriceLevel] = msgspec.field(name="a")


class PartialDepth(msgspec.Struct, gc=False):
    """A partial book snapshot (``<symbol>@depth5|10|20``); no event type, time or symbol.

    Attributes:
        last_update_id: Update id the snapshot is current to (``lastUpdateId``).
        bids: Best bid levels, best first.
        asks: Best ask levels, best first.
    """

    last_update_id: int = msgspec.field(name="lastUpdateId")
    bids: list[PriceLevel]
    asks: list[PriceLevel]


class Trade(Event):
    """A single trade (``<symbol>@trade``, event type ``trade``).

    Attributes:
        trade_id: Trade id (``t``).
        price: Price (``p``).
        quantity: Quantity (``q``).
        trade_time: Trade time (``T``).
        is_buyer_maker: Whether the buyer was the maker, i.e. a sell aggressor (``m``).
        is_best_match: Legacy best-price-match flag; Binance documents it as ignored (``M``).
    """

    trade_id: int = msgspec.field(name="t")
    price: str = msgspec.field(name="p")
    quantity: str = msgspec.field(name="q")
    trade_time: int = msgspec.field(name="T")
    is_buyer_maker: bool = msgspec.field(name="m")
    is_best_match: bool = msgspec.field(name="M")


class AggTrade(Event):
    """Trades aggregated by price and taker order (``<symbol>@aggTrade``, ``aggTrade``).

    Attributes:
        agg_trade_id: Aggregate trade id (``a``).
        price: Price (``p``).
        quantity: Total quantity (``q``).
        first_trade_id: First trade id aggregated (``f``).
        last_trade_id: Last trade id aggregated (``l``).
        trade_time: Trade time (``T``).
        is_buyer_maker: Whether the buyer was the maker (``m``).
        is_best_match: Legacy best-price-match flag; Binance documents it as ignored (``M``).
    """

    agg_trade_id: int = msgspec.field(name="a")
    price: str = msgspec.field(name="p")
    quantity: str = msgspec.field(name="q")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="l")
    trade_time: int = msgspec.field(name="T")
    is_buyer_maker: bool = msgspec.field(name="m")
    is_best_match: bool = msgspec.field(name="M")


class BookTicker(msgspec.Struct, gc=False):
    """Best bid and ask (``<symbol>@bookTicker``, ``!bookTicker``); no event type or time.

    Attributes:
        update_id: Order book update id (``u``).
        symbol: Upper-case symbol (``s``).
        bid_price: Best bid price (``b``).
        bid_quantity: Best bid quantity (``B``).
        ask_price: Best ask price (``a``).
        ask_quantity: Best ask quantity (``A``).
    """

    update_id: int = msgspec.field(name="u")
    symbol: str = msgspec.field(name="s")
    bid_price: str = msgspec.field(name="b")
    bid_quantity: str = msgspec.field(name="B")
    ask_price: str = msgspec.field(name="a")
    ask_quantity: str = msgspec.field(name="A")


class Ticker24h(Event):
    """Rolling 24-hour statistics (``<symbol>@ticker``, event type ``24hrTicker``).

    ``!ticker@arr`` carries a JSON array of these (decode as ``list[Ticker24h]``).

    Attributes:
        price_change: Price change (``p``).
        price_change_percent: Price change in percent (``P``).
        weighted_avg_price: Volume-weighted average price (``w``).
        first_trade_price: Price of the last trade before the window (``x``).
        last_price: Last price (``c``).
        last_quantity: Last quantity (``Q``).
        bid_price: Best bid price (``b``).
        bid_quantity: Best bid quantity (``B``).
        ask_price: Best ask price (``a``).
        ask_quantity: Best ask quantity (``A``).
        open_price: Open price (``o``).
        high_price: High price (``h``).
        low_price: Low price (``l``).
        base_volume: Traded base asset volume (``v``).
        quote_volume: Traded quote asset volume (``q``).
        open_time: Statistics open time (``O``).
        close_time: Statistics close time (``C``).
        first_trade_id: First trade id in the window (``F``).
        last_trade_id: Last trade id in the window (``L``).
        trade_count: Number of trades (``n``).
    """

    price_change: str = msgspec.field(name="p")
    price_change_percent: str = msgspec.field(name="P")
    weighted_avg_price: str = msgspec.field(name="w")
    first_trade_price: str = msgspec.field(name="x")
    last_price: str = msgspec.field(name="c")
    last_quantity: str = msgspec.field(name="Q")
    bid_price: str = msgspec.field(name="b")
    bid_quantity: str = msgspec.field(name="B")
    ask_price: str = msgspec.field(name="a")
    ask_quantity: str = msgspec.field(name="A")
    open_price: str = msgspec.field(name="o")
    high_price: str = msgspec.field(name="h")
    low_price: str = msgspec.field(name="l")
    base_volume: str = msgspec.field(name="v")
    quote_volume: str = msgspec.field(name="q")
    open_time: int = msgspec.field(name="O")
    close_time: int = msgspec.field(name="C")
    first_trade_id: int = msgspec.field(name="F")
    last_trade_id: int = msgspec.field(name="L")
    trade_count: int = msgspec.field(name="n")


class WindowTicker(Event):
    """Rolling-window statistics (``<symbol>@ticker_1h|4h|1d``, ``1hTicker`` etc.).

    The :class:`Ticker24h` layout without ``x``, ``Q`` and the best bid/ask, in another
    key order; each field has the name and meaning of its :class:`Ticker24h` namesake.
    ``!ticker_<window>@arr`` carries a JSON array of these.
    """

    price_change: str = msgspec.field(name="p")
    price_change_percent: str = msgspec.field(name="P")
    open_price: str = msgspec.field(name="o")
    high_price: str = msgspec.field(name="h")
    low_price: str = msgspec.field(name="l")
    last_price: str = msgspec.field(name="c")
    weighted_avg_price: str = msgspec.field(name="w")
    base_volume: str = msgspec.field(name="v")
    quote_volume: str = msgspec.field(name="q")
    open_time: int = msgspec.field(name="O")
    close_time: int = msgspec.field(name="C")
    first_trade_id: int = msgspec.field(name="F")
    last_trade_id: int = msgspec.field(name="L")
    trade_count: int = msgspec.field(name="n")


class MiniTicker(Event):
    """Reduced 24-hour statistics (``<symbol>@miniTicker``, ``24hrMiniTicker``).

    ``!miniTicker@arr`` carries a JSON array of these (decode as ``list[MiniTicker]``).

    Attributes:
        last_price: Last (close) price (``c``).
        open_price: Open price (``o``).
        high_price: High price (``h``).
        low_price: Low price (``l``).
        base_volume: Traded base asset volume (``v``).
        quote_volume: Traded quote asset volume (``q``).
    """

    last_price: str = msgspec.field(name="c")
    open_price: str = msgspec.field(name="o")
    high_price: str = msgspec.field(name="h")
    low_price: str = msgspec.field(name="l")
    base_volume: str = msgspec.field(name="v")
    quote_volume: str = msgspec.field(name="q")


class KlineData(msgspec.Struct, gc=False):
    """The candle inside a :class:`Kline` event (its ``k`` object).

    Attributes:
        start_time: Candle open time (``t``).
        close_time: Candle close time (``T``).
        symbol: Upper-case symbol (``s``).
        interval: Interval, e.g. ``"1m"`` (``i``).
        first_trade_id: First trade id, ``-1`` without trades (``f``).
        last_trade_id: Last trade id, ``-1`` without trades (``L``).
        open_price: Open price (``o``).
        close_price: Close (last) price (``c``).
        high_price: High price (``h``).
        low_price: Low price (``l``).
        base_volume: Base asset volume (``v``).
        trade_count: Number of trades (``n``).
        is_closed: Whether this candle is final (``x``).
        quote_volume: Quote asset volume (``q``).
        taker_buy_base_volume: Taker buy base asset volume (``V``).
        taker_buy_quote_volume: Taker buy quote asset volume (``Q``).
        ignore: Unused; Binance documents it as ignored (``B``).
    """

    start_time: int = msgspec.field(name="t")
    close_time: int = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    interval: str = msgspec.field(name="i")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="L")
    open_price: str = msgspec.field(name="o")
    close_price: str = msgspec.field(name="c")
    high_price: str = msgspec.field(name="h")
    low_price: str = msgspec.field(name="l")
    base_volume: str = msgspec.field(name="v")
    trade_count: int = msgspec.field(name="n")
    is_closed: bool = msgspec.field(name="x")
    quote_volume: str = msgspec.field(name="q")
    taker_buy_base_volume: str = msgspec.field(name="V")
    taker_buy_quote_volume: str = msgspec.field(name="Q")
    ignore: str = msgspec.field(name="B")


class Kline(Event):
    """A candlestick update (``<symbol>@kline_<interval>``, event type ``kline``).

    Attributes:
        kline: The candle (``k``).
    """

    kline: KlineData = msgspec.field(name="k")


EVENT_TYPES: dict[str, type] = {
    "depthUpdate": DepthUpdate,
    "trade": Trade,
    "aggTrade": AggTrade,
    "24hrTicker": Ticker24h,
    "24hrMiniTicker": MiniTicker,
    "kline": Kline,
    "1hTicker": WindowTicker,
    "4hTicker": WindowTicker,
    "1dTicker": WindowTicker,
}
"""The struct for each event type ``e``; payloads without ``e`` are not listed."""

"""A deterministic synthetic market for the exchange simulators.

``SyntheticMarket`` holds one ``SymbolMarket`` per symbol: a mid price doing a
random walk, an order book of a fixed number of levels per side, book update
ids, trades and kline accumulators. ``step()`` advances it and returns what
changed as plain Python values (decimal strings, ints, bools); turning that
into an exchange's wire format is the simulator's job, so every simulator can
share this module.

The same seed gives the same prices, quantities, ids and trades: each symbol
draws from its own ``random.Random`` seeded by ``(seed, symbol)``, whatever
other symbols exist. Only times come from the clock (``time.time`` unless a
clock is given).

Prices are kept as integer ticks of 0.01 and quantities as integer lots of
1e-8, so formatting is integer arithmetic; both are shown with eight decimals
(``"65012.34000000"``, ``"0.51200000"``).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional

__all__ = [
    "BestQuote", "Kline", "PartialBook", "StepResult", "SymbolMarket", "SyntheticMarket", "Ticker",
    "Trade", "format_price", "format_qty", "ZERO_QTY",
]

_TICKS_PER_UNIT = 100            # price tick 0.01
_LOTS_PER_UNIT = 100_000_000     # quantity lot 1e-8
_QUOTE_PER_UNIT = _TICKS_PER_UNIT * _LOTS_PER_UNIT
_LOT_STEP = 100_000              # quantities drawn in steps of 0.001
_DAY_MS = 86_400_000
_KNOWN_PRICES = {"BTCUSDT": 65000.0, "ETHUSDT": 3500.0, "BNBUSDT": 600.0, "SOLUSDT": 150.0}

ZERO_QTY = "0.00000000"
"""The quantity of a removed level."""


def format_price(ticks: int) -> str:
    """Format a price held in ticks of 0.01 with eight decimals."""
    return f"{ticks // _TICKS_PER_UNIT}.{ticks % _TICKS_PER_UNIT:02d}000000"


def format_qty(lots: int) -> str:
    """Format a quantity held in lots of 1e-8 with eight decimals."""
    return f"{lots // _LOTS_PER_UNIT}.{lots % _LOTS_PER_UNIT:08d}"


def _format_quote(units: int) -> str:
    """Format a quote amount held in ticks x lots (1e-10) with eight decimals."""
    return format_qty(units // _TICKS_PER_UNIT)


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade.

    Attributes:
        trade_id: Increasing per symbol.
        price: Decimal string.
        qty: Decimal string.
        buyer_is_maker: True when the seller was the aggressor (hit the bid).
        time_ms: Trade time in ms.
    """

    trade_id: int
    price: str
    qty: str
    buyer_is_maker: bool
    time_ms: int


@dataclass(frozen=True, slots=True)
class Kline:
    """A snapshot of one kline (candlestick).

    Attributes:
        interval_ms: Length of the interval.
        open_time: Start of the interval, ms.
        close_time: ``open_time + interval_ms - 1``.
        open, high, low, close: Prices (the last price when no trade yet).
        volume: Base volume. quote_volume: Quote volume.
        trade_count: Trades in the interval.
        first_trade_id, last_trade_id: -1 when no trade yet.
        taker_buy_volume, taker_buy_quote_volume: Volumes of buyer-aggressor trades.
        closed: The interval is over (this is its final state).
    """

    interval_ms: int
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trade_count: int
    first_trade_id: int
    last_trade_id: int
    taker_buy_volume: str
    taker_buy_quote_volume: str
    closed: bool


@dataclass(frozen=True, slots=True)
class Ticker:
    """Rolling statistics of the current day (the 24 h ticker's fields).

    Attributes:
        price_change, price_change_percent: Last minus open, absolute and in % ("%.3f").
        weighted_avg_price: Quote volume / volume (the last price when no volume).
        prev_close: The price before the day's first trade (the open).
        last, last_qty: Last price and last trade's quantity.
        open, high, low, volume, quote_volume: Day statistics.
        open_time, close_time: Window in ms (close time is now).
        first_trade_id, last_trade_id, count: Trades in the window (-1, -1, 0 when none).
    """

    price_change: str
    price_change_percent: str
    weighted_avg_price: str
    prev_close: str
    last: str
    last_qty: str
    open: str
    high: str
    low: str
    volume: str
    quote_volume: str
    open_time: int
    close_time: int
    first_trade_id: int
    last_trade_id: int
    count: int


@dataclass(frozen=True, slots=True)
class PartialBook:
    """The top of the book: best first on both sides, ``(price, qty)`` strings."""

    last_update_id: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class BestQuote:
    """Best bid and ask with their quantities at ``update_id``."""

    update_id: int
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str


@dataclass(slots=True)
class StepResult:
    """What one step of one symbol changed.

    Attributes:
        symbol: Uppercase symbol.
        first_update_id: ``U``: the previous step's ``last_update_id`` + 1.
        last_update_id: ``u``: each step consumes 1 to 4 ids.
        bids: Changed bid levels, best first; qty ``ZERO_QTY`` for a removed level.
        asks: Changed ask levels, best first.
        trades: 0 to 3 trades, oldest first.
        time_ms: Time of the step.
        closed_klines: Final snapshots of klines whose interval ended at this step.
    """

    symbol: str
    first_update_id: int
    last_update_id: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    trades: list[Trade]
    time_ms: int
    closed_klines: list[Kline]


class _KlineAccumulator:
    """Open/high/low/close and volumes of one interval, in ticks and lots."""

    __slots__ = ("interval_ms", "open_time", "open", "high", "low", "close", "volume", "quote",
                 "count", "first_id", "last_id", "buy_volume", "buy_quote")

    def __init__(self, interval_ms: int, now_ms: int, price: int) -> None:
        self.interval_ms = interval_ms
        self.start(now_ms, price)

    def start(self, now_ms: int, price: int) -> None:
        self.open_time = now_ms - now_ms % self.interval_ms
        self.open = self.high = self.low = self.close = price
        self.volume = self.quote = self.count = self.buy_volume = self.buy_quote = 0
        self.first_id = self.last_id = -1

    def add(self, trade_id: int, price: int, lots: int, buyer_is_maker: bool) -> None:
        if self.count == 0:
            self.open = self.high = self.low = price
            self.first_id = trade_id
        elif price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.last_id = trade_id
        self.count += 1
        self.volume += lots
        self.quote += price * lots
        if not buyer_is_maker:
            self.buy_volume += lots
            self.buy_quote += price * lots

    def snapshot(self, closed: bool = False) -> Kline:
        return Kline(self.interval_ms, self.open_time, self.open_time + self.interval_ms - 1,
                     format_price(self.open), format_price(self.high), format_price(self.low),
                     format_price(self.close), format_qty(self.volume), _format_quote(self.quote),
                     self.count, self.first_id, self.last_id, format_qty(self.buy_volume),
                     _format_quote(self.buy_quote), closed)


class SymbolMarket:
    """The synthetic market of one symbol.

    Args:
        symbol: The symbol (stored uppercase).
        seed: Seed of the market; with the symbol it seeds this symbol's generator.
        depth_levels: Price levels kept on each side of the book.
        price: Initial mid price (default: a known price for a few symbols, else
            drawn between 10 and 1000).
        clock: Seconds since the epoch, for trade, kline and step times.
    """

    def __init__(self, symbol: str, seed: int = 1, depth_levels: int = 20,
                 price: Optional[float] = None, clock: Callable[[], float] = time.time) -> None:
        self.symbol = symbol.upper()
        self.depth_levels = max(1, depth_levels)
        self._clock = clock
        rng = self._rng = random.Random(f"{seed}:{self.symbol}")
        if price is None:
            price = _KNOWN_PRICES.get(self.symbol) or rng.uniform(10.0, 1000.0)
        # The mid never falls below what the deepest bid level needs to stay positive.
        self._floor = 4 * self.depth_levels + 100
        self.mid = max(self._floor, round(price * _TICKS_PER_UNIT))
        self.last_update_id = rng.randint(1_000_000, 9_000_000)
        self.last_trade_id = rng.randint(100_000, 900_000)
        self.last_price = self.mid
        self.last_qty = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for level in range(self.depth_levels):
            self.bids[self.mid - 1 - 2 * level] = self._draw_qty()
            self.asks[self.mid + 1 + 2 * level] = self._draw_qty()
        now_ms = self._now_ms()
        self._day = _KlineAccumulator(_DAY_MS, now_ms, self.mid)
        self._klines: dict[int, _KlineAccumulator] = {60_000: _KlineAccumulator(60_000, now_ms, self.mid)}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _draw_qty(self) -> int:
        return self._rng.randint(1, 5000) * _LOT_STEP

    def step(self) -> StepResult:
        """Advance the market by one update and return the changes."""
        rng = self._rng
        bids, asks = self.bids, self.asks
        changed_bids: dict[int, int] = {}
        changed_asks: dict[int, int] = {}
        now_ms = self._now_ms()
        closed = self._roll_klines(now_ms)

        if rng.random() < 0.3:
            shift = rng.choice((-2, -1, 1, 2))
            if self.mid + shift >= self._floor:
                self.mid += shift
        mid = self.mid
        for price in [p for p in bids if p >= mid]:
            del bids[price]
            changed_bids[price] = 0
        for price in [p for p in asks if p <= mid]:
            del asks[price]
            changed_asks[price] = 0

        for _ in range(rng.randint(1, 3)):
            side, changed = (bids, changed_bids) if rng.random() < 0.5 else (asks, changed_asks)
            if not side:
                continue
            price = rng.choice(list(side))
            qty = 0 if rng.random() < 0.15 else self._draw_qty()
            if qty:
                side[price] = qty
            else:
                del side[price]
            changed[price] = qty

        trades = [self._trade(rng.random() < 0.5, now_ms, changed_bids, changed_asks)
                  for _ in range(rng.choice((0, 0, 1, 1, 2, 3)))]

        self._refill(bids, changed_bids, -1)
        self._refill(asks, changed_asks, 1)

        first = self.last_update_id + 1
        self.last_update_id += rng.randint(1, 4)
        return StepResult(
            self.symbol, first, self.last_update_id,
            [(format_price(p), format_qty(changed_bids[p])) for p in sorted(changed_bids, reverse=True)],
            [(format_price(p), format_qty(changed_asks[p])) for p in sorted(changed_asks)],
            trades, now_ms, closed)

    def _trade(self, hit_bid: bool, now_ms: int, changed_bids: dict[int, int],
               changed_asks: dict[int, int]) -> Trade:
        """A market order against the best level of one side (or at the mid if it is empty)."""
        side, changed = (self.bids, changed_bids) if hit_bid else (self.asks, changed_asks)
        lots = self._rng.randint(1, 1000) * _LOT_STEP
        if side:
            price = max(side) if hit_bid else min(side)
            left = side[price] - lots
            if left > 0:
                side[price] = left
            else:
                lots = side.pop(price)
                left = 0
            changed[price] = left
        else:
            price = self.mid
        self.last_trade_id += 1
        self.last_price, self.last_qty = price, lots
        for accumulator in (self._day, *self._klines.values()):
            accumulator.add(self.last_trade_id, price, lots, hit_bid)
        return Trade(self.last_trade_id, format_price(price), format_qty(lots), hit_bid, now_ms)

    def _refill(self, side: dict[int, int], changed: dict[int, int], direction: int) -> None:
        """Keep ``depth_levels`` levels: close a wide spread, fill holes near the mid, trim the deepest.

        ``direction`` is -1 for bids (below the mid), 1 for asks.
        """
        rng = self._rng
        inner = self.mid + direction
        if not side or (min(side) if direction > 0 else max(side)) * direction > inner * direction + 2:
            side[inner] = changed[inner] = self._draw_qty()
        band = 3 * self.depth_levels
        while len(side) < self.depth_levels:
            price = self.mid + direction * rng.randint(1, band)
            if price not in side:
                side[price] = changed[price] = self._draw_qty()
        while len(side) > self.depth_levels:
            price = max(side) if direction > 0 else min(side)
            del side[price]
            changed[price] = 0

    def _roll_klines(self, now_ms: int) -> list[Kline]:
        """Close the klines whose interval has ended; return their final snapshots."""
        closed = []
        for accumulator in self._klines.values():
            if now_ms >= accumulator.open_time + accumulator.interval_ms:
                closed.append(accumulator.snapshot(closed=True))
                accumulator.start(now_ms, self.last_price)
        if now_ms >= self._day.open_time + _DAY_MS:
            self._day.start(now_ms, self.last_price)
        return closed

    def book(self, levels: Optional[int] = None) -> PartialBook:
        """The best ``levels`` levels per side (default: all) with the last update id."""
        count = self.depth_levels if levels is None else levels
        bids, asks = self.bids, self.asks
        return PartialBook(
            self.last_update_id,
            [(format_price(p), format_qty(bids[p])) for p in sorted(bids, reverse=True)[:count]],
            [(format_price(p), format_qty(asks[p])) for p in sorted(asks)[:count]])

    def best(self) -> BestQuote:
        """Best bid and ask with their quantities."""
        bid, ask = max(self.bids), min(self.asks)
        return BestQuote(self.last_update_id, format_price(bid), format_qty(self.bids[bid]),
                         format_price(ask), format_qty(self.asks[ask]))

    def kline(self, interval_ms: int = 60_000) -> Kline:
        """The current kline of ``interval_ms``.

        Intervals other than one minute are tracked from their first request on.
        """
        accumulator = self._klines.get(interval_ms)
        if accumulator is None:
            accumulator = self._klines[interval_ms] = _KlineAccumulator(
                interval_ms, self._now_ms(), self.last_price)
        return accumulator.snapshot()

    def ticker(self) -> Ticker:
        """Statistics of the current day, as a 24 h ticker shows them."""
        day = self._day
        change = day.close - day.open
        average = day.quote // day.volume if day.volume else day.close
        return Ticker(
            ("-" if change < 0 else "") + format_price(abs(change)), f"{100.0 * change / day.open:.3f}",
            format_price(average), format_price(day.open), format_price(self.last_price),
            format_qty(self.last_qty), format_price(day.open), format_price(day.high),
            format_price(day.low), format_qty(day.volume), _format_quote(day.quote), day.open_time,
            self._now_ms(), day.first_id, day.last_id, day.count)


class SyntheticMarket:
    """Synthetic markets of any number of symbols, created on first use.

    Args:
        seed: Seed shared by every symbol (each symbol draws from its own generator).
        depth_levels: Price levels kept on each side of every book.
        prices: Initial mid prices by symbol (any case).
        clock: Seconds since the epoch (default ``time.time``).
    """

    def __init__(self, seed: int = 1, depth_levels: int = 20, prices: Optional[Mapping[str, float]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self.depth_levels = depth_levels
        self._prices = {k.upper(): v for k, v in (prices or {}).items()}
        self._clock = clock
        self._symbols: dict[str, SymbolMarket] = {}

    @property
    def symbols(self) -> list[str]:
        """Uppercase symbols created so far, in creation order."""
        return list(self._symbols)

    def symbol(self, symbol: str) -> SymbolMarket:
        """The market of ``symbol`` (any case), created on first use."""
        key = symbol.upper()
        market = self._symbols.get(key)
        if market is None:
            market = self._symbols[key] = SymbolMarket(key, self.seed, self.depth_levels,
                                                       self._prices.get(key), self._clock)
        return market

    __getitem__ = symbol

    def step(self, symbols: Optional[Iterable[str]] = None) -> list[StepResult]:
        """Advance ``symbols`` (default: every symbol created so far) by one update each."""
        names = self._symbols if symbols is None else symbols
        return [self.symbol(name).step() for name in list(names)]

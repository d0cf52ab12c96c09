"""The synthetic market: determinism, update-id continuity, a sane book."""
from __future__ import annotations

from decimal import Decimal

from fastws.testing.market import ZERO_QTY, StepResult, SymbolMarket, SyntheticMarket, format_price, format_qty


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(seed: int, steps: int, symbols: tuple[str, ...] = ("btcusdt", "ethusdt")) -> list[list[StepResult]]:
    market = SyntheticMarket(seed=seed, clock=Clock())
    return [market.step(symbols) for _ in range(steps)]


def test_same_seed_same_market() -> None:
    assert run(7, 300) == run(7, 300)
    assert run(7, 50) != run(8, 50)


def test_symbol_does_not_depend_on_other_symbols() -> None:
    alone = [r[0] for r in run(3, 100, ("btcusdt",))]
    together = [r[1] for r in run(3, 100, ("ethusdt", "btcusdt"))]
    assert alone == together


def test_update_ids_are_continuous() -> None:
    market = SymbolMarket("btcusdt", seed=5)
    previous = market.last_update_id
    for _ in range(2000):
        result = market.step()
        assert result.first_update_id == previous + 1
        assert 1 <= result.last_update_id - result.first_update_id + 1 <= 4
        previous = result.last_update_id
    assert market.book().last_update_id == previous


def test_book_is_sorted_positive_and_uncrossed() -> None:
    market = SymbolMarket("xyzusdt", seed=11, depth_levels=10)
    for _ in range(3000):
        market.step()
        book = market.book()
        bids = [Decimal(p) for p, _ in book.bids]
        asks = [Decimal(p) for p, _ in book.asks]
        assert len(bids) == len(asks) == 10
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[-1] > 0 and bids[0] < asks[0]
        assert all(Decimal(q) > 0 for _, q in book.bids + book.asks)
    best = market.best()
    assert (best.bid, best.ask) == (book.bids[0][0], book.asks[0][0])
    assert market.book(3).bids == book.bids[:3]


def test_changes_replayed_on_the_first_book_give_the_last_book() -> None:
    market = SymbolMarket("btcusdt", seed=2)
    bids = dict(market.book().bids)
    asks = dict(market.book().asks)
    for _ in range(500):
        result = market.step()
        for side, changes in ((bids, result.bids), (asks, result.asks)):
            for price, qty in changes:
                if qty == ZERO_QTY:
                    side.pop(price, None)
                else:
                    side[price] = qty
    book = market.book()
    assert bids == dict(book.bids) and asks == dict(book.asks)


def test_trades_and_klines() -> None:
    clock = Clock(1_700_000_000.0)    # 22:13:20 UTC: a minute starts every 60 s from :00
    market = SymbolMarket("btcusdt", seed=4, clock=clock)
    trades = []
    closed = []
    for _ in range(600):
        result = market.step()
        assert len(result.trades) <= 3
        trades.extend(result.trades)
        closed.extend(result.closed_klines)
        clock.now += 0.25
    ids = [t.trade_id for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert all(Decimal(t.price) > 0 and Decimal(t.qty) > 0 for t in trades)
    assert {t.buyer_is_maker for t in trades} == {True, False}
    # 150 s of steps: two minutes closed, each the sum of its trades.
    assert [k.closed for k in closed] == [True, True]
    first = closed[0]
    in_first = [t for t in trades if first.open_time <= t.time_ms <= first.close_time]
    assert first.trade_count == len(in_first)
    assert (first.first_trade_id, first.last_trade_id) == (in_first[0].trade_id, in_first[-1].trade_id)
    assert Decimal(first.volume) == sum(Decimal(t.qty) for t in in_first)
    assert Decimal(first.high) == max(Decimal(t.price) for t in in_first)
    assert first.open == in_first[0].price and first.close == in_first[-1].price
    current = market.kline()
    assert not current.closed and current.open_time == closed[-1].close_time + 1
    ticker = market.ticker()
    assert ticker.count == len(trades) and ticker.last == trades[-1].price


def test_formatting() -> None:
    assert format_price(6501234) == "65012.34000000"
    assert format_qty(51_200_000) == "0.51200000"
    assert format_qty(0) == ZERO_QTY

"""The compiled order book against a plain reference book of ``Decimal`` levels.

Hypothesis drives random sequences of snapshots and diffs (inserts, changes,
deletes, re-adds, deletes of absent levels, crossing levels, duplicates within
a message) through ``OrderBook``'s Python API and through a dict of
``Decimal`` written here; after every step the two agree level by level: the
exact strings, the fixed-point integers, the floats (against
``float(Decimal)``), the buffer of doubles, the best levels, the counts and
whether the book is crossed.
"""
from __future__ import annotations

import ctypes
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.book import LevelBuffer, OrderBook, parse_decimal

PRICE_SCALE = 2
QTY_SCALE = 3


class ReferenceBook:
    """The specification: two dicts of Decimal price -> Decimal qty."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def snapshot(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.bids, self.asks = {}, {}
        self.diff(bids, asks)

    def diff(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)

    def top(self, is_bid: bool) -> list[tuple[Decimal, Decimal]]:
        side = self.bids if is_bid else self.asks
        return sorted(side.items(), reverse=is_bid)


def decimals(text: str) -> int:
    """Decimals written in ``text``."""
    return len(text.partition(".")[2])


def assert_same(book: OrderBook, ref: ReferenceBook) -> None:
    """Every reading of ``book`` matches the reference, level by level."""
    for is_bid in (True, False):
        want = ref.top(is_bid)
        n = len(want) + 2
        exact = book.bids_exact(n) if is_bid else book.asks_exact(n)
        assert [(Decimal(p), Decimal(q)) for p, q in exact] == want
        assert all(decimals(p) == book.price_scale and decimals(q) == book.qty_scale for p, q in exact)
        fixed = book.bids_fixed(n) if is_bid else book.asks_fixed(n)
        assert fixed == [(int(p.scaleb(book.price_scale)), int(q.scaleb(book.qty_scale))) for p, q in want]
        floats = book.bids(n) if is_bid else book.asks(n)
        assert floats == [(float(p), float(q)) for p, q in want]
        buf = book.bids_buffer(n) if is_bid else book.asks_buffer(n)
        assert isinstance(buf, LevelBuffer) and len(buf) == len(want)
        assert [tuple(row) for row in memoryview(buf).tolist()] == floats
        best = book.best_bid() if is_bid else book.best_ask()
        assert best == (floats[0] if floats else None)
        assert (book.bid_count if is_bid else book.ask_count) == len(want)
        assert (book.bids(3) if is_bid else book.asks(3)) == floats[:3]
    crossed = bool(ref.bids and ref.asks and max(ref.bids) >= min(ref.asks))
    assert book.is_crossed() is crossed


def decimal_text(max_units: int, scale: int) -> st.SearchStrategy[str]:
    """Decimal strings on a small grid (so levels repeat), at most ``scale`` decimals,
    written with anything from zero to ``scale`` decimals."""
    return st.builds(
        lambda units, written: _write(units, scale, written),
        st.integers(0, max_units), st.integers(0, scale))


def _write(units: int, scale: int, written: int) -> str:
    value = Decimal(units).scaleb(-scale)
    # Keep the value exact: fewer decimals only when the dropped ones are zeros.
    while written < scale and value != value.quantize(Decimal(1).scaleb(-written)):
        written += 1
    return f"{value:.{written}f}"


# Bids and asks share one price range, so books cross and uncross.
prices = decimal_text(60, PRICE_SCALE).map(lambda text: str(Decimal("100") + Decimal(text)))
quantities = st.one_of(st.just("0"), st.just("0.000"), decimal_text(5000, QTY_SCALE))
levels = st.lists(st.tuples(prices, quantities), max_size=12)
steps = st.lists(
    st.tuples(st.sampled_from(["snapshot", "diff", "diff", "diff"]), levels, levels),
    min_size=1, max_size=25)


@settings(max_examples=300, deadline=None)
@given(steps=steps, given_scales=st.booleans())
def test_book_agrees_with_reference_after_every_step(steps: list, given_scales: bool) -> None:
    book = OrderBook("BTCUSDT", *((PRICE_SCALE, QTY_SCALE) if given_scales else (None, None)))
    ref = ReferenceBook()
    first = ([("100.00", "1.000")], [("100.01", "0.000")])   # fixes the scales when read from data
    book.apply_snapshot(*first, update_id=1)
    ref.snapshot(*first)
    assert (book.price_scale, book.qty_scale) == (PRICE_SCALE, QTY_SCALE)
    for update_id, (kind, bids, asks) in enumerate(steps, start=2):
        if kind == "snapshot":
            book.apply_snapshot(bids, asks, update_id)
            ref.snapshot(bids, asks)
        else:
            book.apply_diff(bids, asks, update_id)
            ref.diff(bids, asks)
        assert book.update_id == update_id
        assert book.valid
        assert_same(book, ref)


@settings(max_examples=200, deadline=None)
@given(levels=st.lists(st.tuples(st.integers(1, 2**62), st.integers(0, 2**62)), max_size=30))
def test_large_values_are_exact_and_floats_round_like_decimal(levels: list[tuple[int, int]]) -> None:
    # Fixed-point values past 2**53 take the exact path of the float conversion.
    book = OrderBook("SHIBUSDT", 8, 8)
    ref = ReferenceBook()
    text = [(str(Decimal(p).scaleb(-8)), str(Decimal(q).scaleb(-8))) for p, q in levels]
    text = [(f"{Decimal(p):.8f}", f"{Decimal(q):.8f}") for p, q in text]
    book.apply_snapshot([], [], 1)
    ref.snapshot([], [])
    book.apply_diff(text, text, 2)
    ref.diff(text, text)
    assert_same(book, ref)


def test_snapshot_replaces_everything_and_levels_absent_from_it_are_gone() -> None:
    book = OrderBook("X", 2, 2)
    book.apply_snapshot([("10.00", "1"), ("9.00", "1")], [("11.00", "1")], 5)
    book.apply_snapshot([("9.50", "2")], [], 6)
    assert book.bids_exact() == [("9.50", "2.00")]
    assert book.asks_exact() == [] and book.best_ask() is None
    assert book.update_id == 6 and book.valid


def test_snapshot_in_any_order_with_duplicates_keeps_the_last() -> None:
    book = OrderBook("X", 1, 1)
    bids = [(f"{p}.0", "1") for p in (5, 1, 9, 3, 7)] + [("3.0", "4"), ("1.0", "0")]
    bids += [(f"{p}.0", "2") for p in range(100, 300)]     # past the insertion-sort size
    book.apply_snapshot(bids, [], 1)
    got = dict(book.bids_exact(1000))
    assert got["3.0"] == "4.0" and "1.0" not in got and got["150.0"] == "2.0"
    ref = ReferenceBook()
    ref.snapshot(bids, [])
    assert_same(book, ref)


def test_diff_removes_with_zero_and_ignores_absent_removals() -> None:
    book = OrderBook("X", 2, 3)
    book.apply_snapshot([("1.00", "1.000")], [("2.00", "1.000")], 1)
    book.apply_diff([("0.50", "0"), ("1.00", "0.000")], [("3.00", "0"), ("2.00", "2.5")], 2)
    assert book.bids() == [] and book.asks_exact() == [("2.00", "2.500")]


def test_new_book_is_invalid_and_empty_until_a_snapshot() -> None:
    book = OrderBook("ETHUSDT")
    assert not book.valid and book.bid_count == book.ask_count == 0
    assert book.best_bid() is None and book.bids(5) == [] and len(book.bids_buffer(5)) == 0
    view = memoryview(book.asks_buffer(0))
    assert view.readonly and view.format == "d" and view.shape == (0, 2)
    assert book.price_scale is None and book.symbol == "ETHUSDT"
    with pytest.raises(ValueError, match="no scales yet"):
        book.apply_diff([("1", "1")], [], 1)


def test_clear_invalidate_and_crossing() -> None:
    book = OrderBook("X", 0, 0)
    book.apply_snapshot([("10", "1")], [("11", "1")], 1)
    assert not book.is_crossed()
    book.apply_level(True, "11", "3")              # bid at the ask: crossed
    assert book.is_crossed() and book.valid        # the sync decides what a crossed book means
    book.invalidate()
    assert not book.valid and book.bid_count == 2
    book.clear()
    assert book.bid_count == book.ask_count == 0 and not book.valid


def test_level_buffer_is_read_only_doubles_best_first() -> None:
    book = OrderBook("X", 2, 2)
    book.apply_snapshot([("1.00", "0.50"), ("2.00", "1.25")], [("3.00", "2")], 1)
    view = memoryview(book.bids_buffer(5))
    assert view.format == "d" and view.shape == (2, 2) and view.strides == (16, 8) and view.nbytes == 32
    assert view.cast("B").cast("d").tolist() == [2.0, 1.25, 1.0, 0.5]
    with pytest.raises(TypeError):
        view[0, 0] = 1.0
    with pytest.raises(TypeError, match="not writable"):      # a writable view is refused
        (ctypes.c_double * 4).from_buffer(book.bids_buffer(5))


def test_fixed_point_level_api() -> None:
    book = OrderBook("X", 2, 2)
    book.apply_snapshot([], [], 1)
    book.apply_level_fixed(True, 12345, 100)
    book.apply_level_fixed(False, 12346, 250)
    assert book.bids_exact() == [("123.45", "1.00")] and book.asks() == [(123.46, 2.5)]
    with pytest.raises(ValueError, match="negative"):
        book.apply_level_fixed(True, -1, 1)


@pytest.mark.parametrize("text, message", [
    ("1.001", "more decimals than the scale"),
    ("-1.00", "negative"),
    ("abc", "not a decimal"),
    ("", "not a decimal"),
    (".", "not a decimal"),
    ("1.2.3", "not a decimal"),
    ("1e5", "not a decimal"),
    (" 1", "not a decimal"),
    ("1 ", "not a decimal"),
    ("+1", "not a decimal"),
    ("NaN", "not a decimal"),
    ("99999999999999999999", "too many digits"),
    ("92233720368547759.0", "too large"),
])
def test_bad_values_are_refused_and_the_book_is_left_unchanged_and_invalid(text: str, message: str) -> None:
    book = OrderBook("X", 2, 2)
    book.apply_snapshot([("1.00", "1.00")], [("2.00", "1.00")], 1)
    before = (book.bids_exact(), book.asks_exact(), book.update_id)
    for bids, asks in (([("1.50", "1"), (text, "1")], []), ([], [("2.50", "1"), ("3.00", text)])):
        book.valid = True
        with pytest.raises(ValueError, match=message):
            book.apply_diff(bids, asks, 2)
        assert not book.valid
        assert (book.bids_exact(), book.asks_exact(), book.update_id) == before
    with pytest.raises(ValueError, match=message):
        book.apply_snapshot([(text, "1")], [], 3)
    assert (book.bids_exact(), book.asks_exact(), book.update_id) == before


def test_extra_zero_decimals_are_exact_and_accepted() -> None:
    # Not a rounding: "1.500" is 1.50 exactly at two decimals.
    assert parse_decimal("1.500", 2) == 150
    assert parse_decimal("7", 3) == 7000
    assert parse_decimal(b"0.01", 8) == 1_000_000
    with pytest.raises(ValueError, match="more decimals"):
        parse_decimal("1.505", 2)


def test_scales_are_checked() -> None:
    with pytest.raises(ValueError, match="scale"):
        OrderBook("X", 19, 2)
    with pytest.raises(ValueError, match="scale"):
        OrderBook("X", 2, -1)
    with pytest.raises(TypeError, match="str or bytes"):
        OrderBook("X", 2, 2).apply_snapshot([(1.5, "1")], [], 1)


def test_scale_read_from_the_snapshot_is_the_most_decimals_in_it() -> None:
    book = OrderBook("X")
    book.apply_snapshot([("4.00000000", "431.00000000")], [("4.00000200", "12.5")], 1)
    assert (book.price_scale, book.qty_scale) == (8, 8)
    assert book.asks_exact() == [("4.00000200", "12.50000000")]


def test_long_random_sequence_on_a_deep_book_agrees_with_reference() -> None:
    # Hundreds of levels: removals far below the top, inserts beside them and
    # mass removals (past what the hypothesis books reach) agree with the reference.
    rng = random.Random(7)
    book = OrderBook("X", 2, 0)
    ref = ReferenceBook()
    grid = [f"{1000 + i / 100:.2f}" for i in range(0, 2000, 1)]
    bids = [(p, str(rng.randint(1, 9))) for p in grid[:900]]
    asks = [(p, str(rng.randint(1, 9))) for p in grid[1000:1900]]
    book.apply_snapshot(bids, asks, 1)
    ref.snapshot(bids, asks)
    for step in range(2, 400):
        changes: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])
        for side, low, high in ((0, 0, 1000), (1, 1000, 2000)):
            mass_removal = step % 50 == 0
            for _ in range(1500 if mass_removal else 20):
                price = grid[rng.randrange(low, high)]
                qty = "0" if mass_removal or rng.random() < 0.4 else str(rng.randint(1, 9))
                changes[side].append((price, qty))
        book.apply_diff(*changes, step)
        ref.diff(*changes)
        assert_same(book, ref)


deep_levels = st.lists(st.tuples(decimal_text(400, 1).map(lambda t: str(Decimal("500") + Decimal(t))),
                                 st.sampled_from(["0", "1", "2.5"])), max_size=40)


@settings(max_examples=150, deadline=None)
@given(diffs=st.lists(st.tuples(deep_levels, deep_levels), min_size=1, max_size=20))
def test_deep_book_agrees_with_reference_after_every_diff(diffs: list) -> None:
    # 400 levels a side, so changes land far below the top (tombstones) and near it.
    book = OrderBook("X", 1, 1)
    ref = ReferenceBook()
    snapshot = [(f"{500 + i / 10:.1f}", "1") for i in range(401)]
    book.apply_snapshot(snapshot, snapshot, 1)
    ref.snapshot(snapshot, snapshot)
    for update_id, (bids, asks) in enumerate(diffs, start=2):
        book.apply_diff(bids, asks, update_id)
        ref.diff(bids, asks)
        assert_same(book, ref)


@settings(max_examples=500, deadline=None)
@given(whole=st.text("0123456789", max_size=12), fraction=st.text("0123456789", max_size=10),
       point=st.booleans(), tail=st.sampled_from(["", '"', '",', "x", "-1"]))
def test_parse_decimal_agrees_with_decimal(whole: str, fraction: str, point: bool, tail: str) -> None:
    # Integer and fraction parts of every length around the eight-at-once reads.
    text = whole + ("." + fraction if point else "")
    if not (whole or (point and fraction)):
        with pytest.raises(ValueError):
            parse_decimal(text, 10)
        return
    want = int(Decimal(text).scaleb(10))
    if want > 2**63 - 1:
        with pytest.raises(ValueError, match="too large|too many digits"):
            parse_decimal(text, 10)
        return
    assert parse_decimal(text, 10) == want
    if tail:
        with pytest.raises(ValueError, match="not a decimal"):
            parse_decimal(text + tail, 10)


@pytest.mark.parametrize("is_bid", [True, False])
def test_every_price_around_every_book_size_agrees_with_reference(is_bid: bool) -> None:
    # The search bisects the top 32 levels and, below them, the rest: books of
    # sizes around 32 (and 64, where removals leave tombstones) get a change at
    # every price in and around them, one at a time (set, remove, absent-remove, re-add).
    for size in [*range(6), *range(28, 38), 63, 64, 65, 70]:
        book = OrderBook("X", 0, 0)
        ref = ReferenceBook()
        levels = [(str(2 * i + 2), "1") for i in range(size)]
        book.apply_snapshot(levels if is_bid else [], [] if is_bid else levels, 1)
        ref.snapshot(levels if is_bid else [], [] if is_bid else levels)
        for step, price in enumerate(range(0, 2 * size + 4), start=2):
            for qty in ("7", "0", "0", "3"):
                change = ([(str(price), qty)], [])
                if not is_bid:
                    change = change[::-1]
                book.apply_diff(*change, step)
                ref.diff(*change)
                assert_same(book, ref)

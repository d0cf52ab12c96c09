"""``JsonBookReader.apply_sequenced``: the sync's in-order case in one compiled call.

It must do exactly what ``stage_diff`` + the id checks + ``commit_staged`` +
``is_crossed`` do (the path it replaced in ``BookSync.on_frame``): checked on
hand-made cases and on random sequences of diffs against that path.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.book import JsonBookReader, OrderBook
from fastws.book._book import SEQ_AHEAD, SEQ_APPLIED, SEQ_CROSSED, SEQ_OLD

SNAPSHOT = b'{"lastUpdateId":100,"bids":[["10.00","1.0"],["9.00","2.0"]],"asks":[["11.00","1.0"],["12.00","2.0"]]}'


def _diff(first: int, last: int, bids: str = "[]", asks: str = "[]", time: int = 7) -> bytes:
    return (f'{{"e":"depthUpdate","E":{time},"s":"X","U":{first},"u":{last},"b":{bids},"a":{asks}}}').encode()


def _book() -> OrderBook:
    book = OrderBook("X")
    JsonBookReader().apply_snapshot(book, SNAPSHOT)
    return book


def _state(book: OrderBook) -> tuple[object, ...]:
    return book.update_id, book.exchange_time, book.bids_exact(50), book.asks_exact(50)


def test_a_diff_that_continues_the_book_is_applied() -> None:
    book = _book()
    assert JsonBookReader().apply_sequenced(book, _diff(101, 103, bids='[["10.50","3.0"]]', time=9)) == SEQ_APPLIED
    assert book.update_id == 103 and book.exchange_time == 9
    assert book.bids_exact(1) == [("10.50", "3.0")]


@pytest.mark.parametrize("first, last", [(90, 100), (100, 100), (95, 99)])
def test_an_old_or_duplicate_diff_is_dropped(first: int, last: int) -> None:
    book = _book()
    before = _state(book)
    assert JsonBookReader().apply_sequenced(book, _diff(first, last, bids='[["10.00","0"]]')) == SEQ_OLD
    assert _state(book) == before
    # Nothing stays staged: the next diff applies only its own levels.
    assert JsonBookReader().apply_sequenced(book, _diff(101, 101)) == SEQ_APPLIED
    assert book.bids_exact(2) == before[2][:2]


def test_a_diff_past_the_book_is_not_applied() -> None:
    book = _book()
    before = _state(book)
    assert JsonBookReader().apply_sequenced(book, _diff(102, 104, asks='[["11.00","0"]]')) == SEQ_AHEAD
    assert _state(book) == before


def test_a_diff_that_crosses_the_book_is_applied_and_said() -> None:
    book = _book()
    assert JsonBookReader().apply_sequenced(book, _diff(101, 101, bids='[["11.50","1.0"]]')) == SEQ_CROSSED
    assert book.update_id == 101 and book.is_crossed()


def test_the_step_is_the_exchanges() -> None:
    book = _book()
    assert JsonBookReader().apply_sequenced(book, _diff(101, 101), step=2) == SEQ_AHEAD
    assert JsonBookReader().apply_sequenced(book, _diff(102, 102), step=2) == SEQ_APPLIED


def test_a_level_that_does_not_parse_raises_and_leaves_the_levels() -> None:
    book = _book()
    levels = book.bids_exact(50), book.asks_exact(50)
    with pytest.raises(ValueError):
        JsonBookReader().apply_sequenced(book, _diff(101, 101, bids='[["10.00","1.0"],["x","1"]]'))
    assert (book.bids_exact(50), book.asks_exact(50)) == levels and book.update_id == 100


def _staged_path(reader: JsonBookReader, book: OrderBook, data: bytes) -> int:
    """What BookSync.on_frame did before apply_sequenced."""
    first, last, event_time = reader.stage_diff(book, data)
    if last <= book.update_id:
        book.discard_staged()
        return SEQ_OLD
    if first != book.update_id + 1:
        book.discard_staged()
        return SEQ_AHEAD
    book.commit_staged(last, event_time)
    return SEQ_CROSSED if book.is_crossed() else SEQ_APPLIED


_LEVEL = st.tuples(st.integers(800, 1300), st.integers(0, 3))
_DIFF = st.tuples(st.integers(-3, 3), st.integers(0, 3), st.lists(_LEVEL, max_size=4), st.lists(_LEVEL, max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(_DIFF, max_size=30))
def test_it_agrees_with_the_staged_path(diffs: list[tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]]) -> None:
    reader = JsonBookReader()
    compiled, staged = _book(), _book()
    for offset, width, bids, asks in diffs:
        first = compiled.update_id + 1 + offset
        data = _diff(first, first + width, bids=str([[f"{p / 100:.2f}", f"{q}.0"] for p, q in bids]).replace("'", '"'),
                     asks=str([[f"{p / 100:.2f}", f"{q}.0"] for p, q in asks]).replace("'", '"'),
                     time=first)
        assert reader.apply_sequenced(compiled, data) == _staged_path(reader, staged, data)
        assert _state(compiled) == _state(staged)

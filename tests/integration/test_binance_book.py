"""Binance order books end to end: ``subscribe_books`` against BinanceSimulator's stream and REST.

The simulator publishes only when stepped; a background stepper moves the
market while a test waits, and is paused at checkpoints, where the client's
book must equal the simulator's own book level by level (exact strings).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator, Callable, Optional

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ExchangeAPIError, ExchangeName, SequenceGapError
from fastws.book import BannedError, OrderBook, TooManyRequestsError
from fastws.errors import ExchangeTimeoutError, InvalidMessageError
from tests.conftest import other_tasks

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class Books:
    """The book handler and error handler of a test, with what they got."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, int, bool]] = []
        self.errors: list[ExchangeAPIError] = []

    def on_book(self, book: OrderBook) -> None:
        self.updates.append((book.symbol, book.update_id, bool(book.valid)))

    def on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(error)

    def codes(self) -> list[int]:
        return [e.code for e in self.errors]


class Stepper:
    """Steps the simulator's market every ``period`` seconds until paused."""

    def __init__(self, sim: BinanceSimulator, period: float = 0.005) -> None:
        self.sim = sim
        self.period = period
        self.running = True

    async def run(self) -> None:
        while True:
            if self.running:
                self.sim.step(1)
            await asyncio.sleep(self.period)


@contextlib.asynccontextmanager
async def stepping(sim: BinanceSimulator) -> AsyncIterator[Stepper]:
    stepper = Stepper(sim)
    task = asyncio.get_running_loop().create_task(stepper.run())
    try:
        yield stepper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(done: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        await asyncio.sleep(0.005)


def client(sim: BinanceSimulator, books: Books, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("book_depth", 100)
    config = binance_config(sim.url, rest_url=sim.rest_url, **overrides)
    return BinanceWebSocket(ExchangeName("binance"), config, lambda message: None, books.on_error)


async def agrees(sim: BinanceSimulator, stepper: Stepper, ws: BinanceWebSocket, symbols: list[str],
                 levels: int = 20, timeout: float = 5.0) -> None:
    """Wait for valid books, pause the market, wait until each book caught up, compare it with
    the simulator's book."""
    for symbol in symbols:
        await until(lambda: (b := ws.book(symbol)) is not None and bool(b.valid), timeout, f"{symbol} valid")
    stepper.running = False
    try:
        for symbol in symbols:
            book = ws.book(symbol)
            assert book is not None
            truth_id = sim.market.symbol(symbol).last_update_id
            await until(lambda: bool(book.valid) and book.update_id == truth_id, timeout,
                        f"{symbol} valid at {truth_id} (book {book!r})")
            truth = sim.book(symbol, levels)
            assert book.bids_exact(levels) == [tuple(level) for level in truth.bids]
            assert book.asks_exact(levels) == [tuple(level) for level in truth.asks]
            assert not book.is_crossed()
    finally:
        stepper.running = True


@pytest.fixture
async def sim() -> AsyncIterator[BinanceSimulator]:
    async with BinanceSimulator(rate=0, ping_interval=0) as simulator:
        for symbol in SYMBOLS:
            simulator.market.symbol(symbol)
        yield simulator


async def test_books_equal_the_simulators_at_checkpoints(sim: BinanceSimulator) -> None:
    books = Books()
    async with client(sim, books) as ws, stepping(sim) as stepper:
        started = time.perf_counter()
        result = await ws.subscribe_books(SYMBOLS, books.on_book)
        assert sorted(result) == SYMBOLS
        await until(lambda: all(b.valid for b in result.values()), what="books valid")
        first_valid = time.perf_counter() - started
        for _ in range(3):
            await asyncio.sleep(0.1)
            await agrees(sim, stepper, ws, SYMBOLS)
        # The handler saw each symbol's ids increase, every one of them valid.
        for symbol in SYMBOLS:
            ids = [i for s, i, valid in books.updates if s == symbol and valid]
            assert len(ids) > 10 and ids == sorted(set(ids))
        health = (await ws.health_check())["books"]
        assert health["BTCUSDT"]["valid"] and health["BTCUSDT"]["resyncs"] == 0
        assert health["BTCUSDT"]["bid_levels"] == 20 and health["BTCUSDT"]["ask_levels"] == 20
        assert health["BTCUSDT"]["last_update_id"] == result["BTCUSDT"].update_id
        assert books.errors == []
        # Two snapshots of limit 100: weight 5 each.
        assert sim.rest_requests == [("BTCUSDT", 100), ("ETHUSDT", 100)] or \
            sorted(sim.rest_requests) == [("BTCUSDT", 100), ("ETHUSDT", 100)]
        assert sim.rest_weight_used == 10
        print(f"first valid book after {first_valid * 1000:.1f} ms")


async def synced_after_fault(sim: BinanceSimulator, kind: str, value: Any = None,
                             **overrides: Any) -> tuple[Any, Books]:
    """Queue a REST fault, keep a BTCUSDT book until it agrees with the simulator's; its sync and handler."""
    sim.rest_fault(kind, value)
    books = Books()
    async with client(sim, books, **overrides) as ws, stepping(sim) as stepper:
        await ws.subscribe_books(["BTCUSDT"], books.on_book)
        await agrees(sim, stepper, ws, ["BTCUSDT"])
        assert ws.books is not None
        return ws.books.syncs["BTCUSDT"], books


async def test_a_snapshot_older_than_the_stream_is_fetched_again(sim: BinanceSimulator) -> None:
    book = sim.book("BTCUSDT")
    for _ in range(5):               # the market moves on: the stale snapshot is behind every diff
        sim.market.step(["BTCUSDT"])
    assert sim.book("BTCUSDT").last_update_id > book.last_update_id + 5
    sync, books = await synced_after_fault(sim, "stale_book", book)
    assert sync.stale_snapshots >= 1 and sync.snapshots >= 2
    assert books.errors == []


async def test_a_snapshot_far_ahead_is_waited_for_then_fetched_again(sim: BinanceSimulator) -> None:
    sync, books = await synced_after_fault(sim, "ahead", 1000, book_catch_up_timeout=0.3)
    assert sync.stale_snapshots == 1 and sync.snapshots == 2


async def test_429_backs_off_for_retry_after(sim: BinanceSimulator) -> None:
    sim.rest_fault("429", 0.4)
    books = Books()
    async with client(sim, books) as ws, stepping(sim) as stepper:
        started = time.monotonic()
        result = await ws.subscribe_books(["BTCUSDT"], books.on_book)
        await until(lambda: bool(result["BTCUSDT"].valid), what="valid after the 429")
        assert time.monotonic() - started >= 0.4
        assert isinstance(books.errors[0], TooManyRequestsError) and books.errors[0].retry_after == 0.4
        assert books.codes() == [429]
        await agrees(sim, stepper, ws, ["BTCUSDT"])


async def test_418_stops_the_book_and_reports(sim: BinanceSimulator) -> None:
    sim.rest_fault("418", 120)
    books = Books()
    async with client(sim, books) as ws, stepping(sim):
        result = await ws.subscribe_books(["BTCUSDT"], books.on_book)
        await until(lambda: bool(books.errors), what="the ban reported")
        await asyncio.sleep(0.3)
        error = books.errors[0]
        assert isinstance(error, BannedError) and error.code == 418 and error.retry_after == 120
        assert "banned" in str(error) and "BTCUSDT" in str(error)
        assert not result["BTCUSDT"].valid
        assert len(sim.rest_requests) == 1          # nothing more asked during the ban
        health = (await ws.health_check())["books"]["BTCUSDT"]
        assert health["valid"] is False and "418" in health["stopped"]
        assert not ws.books.syncs["BTCUSDT"].running  # type: ignore[union-attr]
        # The handler was told the book is invalid.
        assert books.updates and books.updates[-1][2] is False


async def test_a_slow_snapshot_times_out_and_is_fetched_again(sim: BinanceSimulator) -> None:
    _, books = await synced_after_fault(sim, "slow", 1.5, timeout=0.5)
    assert isinstance(books.errors[0], ExchangeTimeoutError) and books.codes() == [408]


async def test_a_snapshot_that_is_not_json_is_reported_and_fetched_again(sim: BinanceSimulator) -> None:
    _, books = await synced_after_fault(sim, "garbage")
    assert isinstance(books.errors[0], InvalidMessageError) and books.codes() == [400]


async def test_a_gap_in_the_diffs_resyncs(sim: BinanceSimulator) -> None:
    books = Books()
    async with client(sim, books) as ws, stepping(sim) as stepper:
        result = await ws.subscribe_books(SYMBOLS, books.on_book)
        await agrees(sim, stepper, ws, SYMBOLS)
        sim.skip_sequence(1)
        await until(lambda: ws.books.syncs["BTCUSDT"].resyncs == 1, what="resync")  # type: ignore[union-attr]
        await agrees(sim, stepper, ws, SYMBOLS)
        assert any(isinstance(e, SequenceGapError) and "resyncing" in str(e) for e in books.errors)
        assert (False in [valid for s, _, valid in books.updates if s == "BTCUSDT"])
        assert (await ws.health_check())["books"]["BTCUSDT"]["seconds_invalid"] > 0
        assert result["BTCUSDT"].valid


async def test_a_crossed_book_resyncs(sim: BinanceSimulator) -> None:
    books = Books()
    async with client(sim, books) as ws, stepping(sim) as stepper:
        await ws.subscribe_books(["BTCUSDT"], books.on_book)
        await agrees(sim, stepper, ws, ["BTCUSDT"])
        stepper.running = False
        sim.send_crossed_diff("BTCUSDT")
        await until(lambda: ws.books.syncs["BTCUSDT"].resyncs == 1, what="resync")  # type: ignore[union-attr]
        stepper.running = True
        await agrees(sim, stepper, ws, ["BTCUSDT"])
        assert any(isinstance(e, InvalidMessageError) and "crossed" in str(e) for e in books.errors)
        # No update the handler saw as valid was crossed.


async def test_a_dropped_connection_resyncs(sim: BinanceSimulator) -> None:
    books = Books()
    async with client(sim, books) as ws, stepping(sim) as stepper:
        await ws.subscribe_books(SYMBOLS, books.on_book)
        await agrees(sim, stepper, ws, SYMBOLS)
        sim.drop()
        await until(lambda: all(s.resyncs >= 1 for s in ws.books.syncs.values()),  # type: ignore[union-attr]
                    what="resyncs after the drop")
        await agrees(sim, stepper, ws, SYMBOLS)


async def test_make_before_break_keeps_the_book_valid() -> None:
    async with BinanceSimulator(rate=0, ping_interval=0, max_connection_age=1.0) as sim:
        sim.market.symbol("BTCUSDT")
        books = Books()
        async with client(sim, books, max_connection_age=0.4) as ws, stepping(sim) as stepper:
            await ws.subscribe_books(["BTCUSDT"], books.on_book)
            await agrees(sim, stepper, ws, ["BTCUSDT"])
            await until(lambda: ws.metrics["rotations"] >= 2, what="two rotations")
            await agrees(sim, stepper, ws, ["BTCUSDT"])
            assert ws.books.syncs["BTCUSDT"].resyncs == 0  # type: ignore[union-attr]
            assert [v for _, _, v in books.updates].count(False) == 0
            assert ws.gaps == []


async def test_unsubscribe_books_stops_the_sync(sim: BinanceSimulator) -> None:
    books = Books()
    async with client(sim, books) as ws, stepping(sim) as stepper:
        await ws.subscribe_books(SYMBOLS, books.on_book)
        await agrees(sim, stepper, ws, SYMBOLS)
        await ws.unsubscribe_books(["ETHUSDT"])
        assert ws.book("ETHUSDT") is None and "ethusdt@depth@100ms" not in ws.subscriptions
        assert list((await ws.health_check())["books"]) == ["BTCUSDT"]
        await agrees(sim, stepper, ws, ["BTCUSDT"])


async def test_stop_leaves_no_task_or_session(sim: BinanceSimulator) -> None:
    books = Books()
    tasks_before = other_tasks()
    ws = client(sim, books)
    await ws.start()
    result = await ws.subscribe_books(SYMBOLS, books.on_book)
    sim.step(1)                      # the first diffs: the snapshots are fetched
    await until(lambda: len(sim.rest_requests) == 2, what="snapshots asked")
    manager = ws.books
    assert manager is not None
    await until(lambda: not manager.fetcher.closed, what="session open")
    session: Optional[Any] = manager.fetcher._session
    await ws.stop()
    await asyncio.sleep(0.05)
    assert other_tasks() - tasks_before == set()
    assert manager.fetcher.closed and session is not None and session.closed
    assert ws.books is None and not any(b.valid for b in result.values())


# ---------------------------------------------------------------- the sync's rules, in process
# BookSync with its injected fetch returning fixed snapshot bytes: the edge cases
# of Binance's procedure, frame by frame.

_SNAPSHOT = (b'{"lastUpdateId":100,"bids":[["10.00","1.0"],["9.00","2.0"]],'
             b'"asks":[["11.00","1.0"],["12.00","2.0"]]}')


def _diff(first: int, last: int, bids: str = "[]", asks: str = "[]") -> bytes:
    return f'{{"e":"depthUpdate","E":5,"s":"X","U":{first},"u":{last},"b":{bids},"a":{asks}}}'.encode()


async def _synced(frames: list[bytes], snapshots: Optional[list[bytes]] = None) -> tuple[Any, Books]:
    from fastws.book import BookSync, JsonBookReader
    books = Books()
    pending = list(snapshots or [_SNAPSHOT])

    async def fetch() -> bytes:
        return pending.pop(0) if len(pending) > 1 else pending[0]
    sync = BookSync(OrderBook("X"), JsonBookReader(), fetch, on_update=books.on_book, on_error=books.on_error,
                    catch_up_timeout=0.2)
    sync.start()
    for frame in frames:
        sync.deliver(sync.on_frame(frame))
    await until(lambda: sync.live or sync.stale_snapshots > 0 or bool(books.errors), 2.0, "sync settled")
    return sync, books


@pytest.mark.parametrize("first,last", [(101, 101), (95, 101), (100, 105), (101, 130)])
async def test_the_first_diff_applied_straddles_the_snapshot(first: int, last: int) -> None:
    # 90..94 is wholly before the snapshot (100): dropped.
    sync, books = await _synced([_diff(90, 94), _diff(first, last, bids='[["10.00","5.0"]]')])
    try:
        assert sync.live and sync.book.valid and sync.book.update_id == last
        assert sync.book.bids_exact(1) == [("10.00", "5.0")]
        assert books.errors == []
        # The next diff continues it; an old one and a duplicate are dropped.
        sync.deliver(sync.on_frame(_diff(last + 1, last + 2, asks='[["11.00","0"]]')))
        sync.deliver(sync.on_frame(_diff(last + 1, last + 2, asks='[["11.00","3.0"]]')))
        assert sync.book.update_id == last + 2 and sync.book.best_ask() == (12.0, 2.0)
        assert [u for _, u, valid in books.updates if valid][-2:] == [last, last + 2]
    finally:
        await sync.stop()


async def test_a_diff_past_the_snapshot_fetches_again() -> None:
    """The first diff after the snapshot starts at 102: the snapshot (100) is older than the stream."""
    newer = b'{"lastUpdateId":104,"bids":[["10.00","1.0"]],"asks":[["11.00","1.0"]]}'
    sync, books = await _synced([_diff(102, 104)], [_SNAPSHOT, newer])
    try:
        await until(lambda: sync.snapshots == 2, 2.0, "refetch")
        assert sync.stale_snapshots == 1 and not sync.live     # waits for 105
        sync.deliver(sync.on_frame(_diff(105, 106, bids='[["10.50","1.0"]]')))
        assert sync.live and sync.book.update_id == 106 and sync.book.best_bid() == (10.5, 1.0)
    finally:
        await sync.stop()


async def test_a_level_that_does_not_parse_reports_400_and_resyncs() -> None:
    sync, books = await _synced([_diff(100, 101)])
    try:
        assert sync.live
        sync.deliver(sync.on_frame(_diff(102, 102, bids='[["abc","1.0"]]')))
        assert not sync.book.valid and sync.resyncs == 1
        assert books.codes() == [400] and isinstance(books.errors[0], InvalidMessageError)
        # The levels stayed as they were; the sync starts over with the next diff.
        assert sync.book.bids_exact(2) == [("10.00", "1.0"), ("9.00", "2.0")]
    finally:
        await sync.stop()


async def test_a_raising_handler_does_not_corrupt_the_book() -> None:
    from fastws.book import BookSync, JsonBookReader
    errors: list[ExchangeAPIError] = []

    def handler(book: OrderBook) -> None:
        raise RuntimeError("strategy bug")

    async def fetch() -> bytes:
        return _SNAPSHOT
    sync = BookSync(OrderBook("X"), JsonBookReader(), fetch, on_update=handler, on_error=errors.append)
    sync.start()
    sync.on_frame(_diff(99, 101))
    await until(lambda: sync.live, 2.0, "live")
    with pytest.raises(RuntimeError):
        sync.deliver(sync.on_frame(_diff(102, 102, bids='[["9.50","1.0"]]')))
    assert sync.live and sync.book.update_id == 102 and sync.book.bids_exact(3)[1] == ("9.50", "1.0")
    assert [e.code for e in errors] == [500]        # the raise when the sync went live
    await sync.stop()


async def test_levels_beyond_the_snapshots_depth_are_not_presented_as_covered() -> None:
    from fastws.book import BookSync, JsonBookReader

    async def fetch() -> bytes:
        return _SNAPSHOT                # two levels a side: a full answer to limit=2
    sync = BookSync(OrderBook("X"), JsonBookReader(), fetch, on_update=lambda book: None,
                    on_error=lambda error: None, depth=2)
    sync.start()
    sync.on_frame(_diff(100, 101, bids='[["8.00","1.0"]]', asks='[["13.00","1.0"]]'))
    await until(lambda: sync.live, 2.0, "live")
    try:
        assert sync.book.bids(3) == [(10.0, 1.0), (9.0, 2.0), (8.0, 1.0)]
        assert sync.covered_bids(3) == [(10.0, 1.0), (9.0, 2.0)]
        assert sync.covered_asks(3) == [(11.0, 1.0), (12.0, 2.0)]
    finally:
        await sync.stop()


@pytest.mark.parametrize("overlapping", [True, False])
async def test_a_diff_ahead_during_an_overlap_waits_for_the_hole_to_fill(overlapping: bool) -> None:
    """While a replacement connection overlaps the old one, it may be ahead: not a gap until the overlap ends."""
    from fastws.book import BookSync, JsonBookReader
    errors: list[ExchangeAPIError] = []
    flag = [overlapping]

    async def fetch() -> bytes:
        return _SNAPSHOT
    sync = BookSync(OrderBook("X"), JsonBookReader(), fetch, on_update=lambda book: None,
                    on_error=errors.append, expect_reorder=lambda: flag[0])
    sync.start()
    sync.on_frame(_diff(99, 101))
    await until(lambda: sync.live, 2.0, "live")
    try:
        sync.on_frame(_diff(103, 103, bids='[["9.50","1.0"]]'))     # the new connection, ahead
        if not overlapping:
            assert not sync.book.valid and isinstance(errors[0], SequenceGapError)
            return
        assert sync.book.valid and sync.book.update_id == 101
        sync.on_frame(_diff(102, 102, bids='[["9.00","0"]]'))       # the old connection fills the hole
        assert sync.book.valid and sync.book.update_id == 103 and errors == []
        assert sync.book.bids_exact(3) == [("10.00", "1.0"), ("9.50", "1.0")]
        sync.on_frame(_diff(103, 103))                              # its copy from the old one: dropped
        flag[0] = False
        sync.on_frame(_diff(105, 105))                              # after the overlap: a real gap
        assert not sync.book.valid and isinstance(errors[0], SequenceGapError)
    finally:
        await sync.stop()

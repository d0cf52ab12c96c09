"""Keeping a local order book in sync: REST snapshot plus buffered diffs.

``BookSync`` is the exchange-neutral state machine behind ``subscribe_books``:

1. While the book is not live, every diff's raw bytes are buffered (a copy of
   the frame's data; nothing is parsed until a snapshot gives the scales).
2. Once the first diff is buffered, a snapshot is fetched through the injected ``fetch()`` coroutine and applied.
   The buffered diffs are then staged one by one (``JsonBookReader.stage_diff``
   reads their ids and levels from the bytes): those wholly before the
   snapshot are dropped; the first one kept must straddle the snapshot's id
   (``SequenceRules.straddles``), else the snapshot is older than the stream
   and is fetched again. A snapshot ahead of every buffered diff is kept and
   the book waits for the stream to reach it (at most ``catch_up_timeout``
   seconds, then it fetches again).
3. Live: each diff is parsed, checked (``SequenceRules.continues`` the book's
   id; an old or duplicate one is dropped), applied and checked for a crossed
   book in one compiled call (``JsonBookReader.apply_sequenced``), then
   ``on_update(book)`` is called.

A gap, a level that does not parse, a crossed book after an update, a lost
connection (``connection_lost()``) or a failed snapshot marks the book invalid,
reports an ``ExchangeAPIError`` through ``on_error`` and starts over by
itself, the attempts spaced by a ``ReconnectPolicy``. ``BannedError`` (HTTP
418) stops the sync: the book stays invalid.

Depth: levels beyond the snapshot's depth are not known. The sync records the
snapshot's deepest prices (``covered_bid`` / ``covered_ask``, fixed point) when
the snapshot was full (``len == limit``) and ``covered_bids(n)`` /
``covered_asks(n)`` present only the levels within them; the compiled book
itself keeps every level it was sent.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from fastws.backoff import ReconnectPolicy
from fastws.book._book import SEQ_APPLIED, SEQ_CROSSED, SEQ_OLD, JsonBookReader, OrderBook
from fastws.book.rest import BannedError
from fastws.errors import ExchangeAPIError, InvalidMessageError, MessageHandlerError, SequenceGapError

__all__ = ["BookSync", "SequenceRules"]

_PREVIEW = 256


@dataclass(frozen=True)
class SequenceRules:
    """How an exchange chains depth diffs (Binance's and MEXC's by default).

    Attributes:
        step: A diff continues the book when its first id is the book's id + ``step``.
    """

    step: int = 1

    def straddles(self, first: int, last: int, snapshot_id: int) -> bool:
        """True when a diff ``[first, last]`` may be the first applied on a snapshot."""
        return first <= snapshot_id + self.step <= last

    def continues(self, first: int, book_id: int) -> bool:
        """True when a diff starting at ``first`` follows a book at ``book_id``."""
        return first == book_id + self.step


def _default_policy() -> ReconnectPolicy:
    return ReconnectPolicy(base=0.5, factor=2.0, cap=30.0, jitter=0.1)


class BookSync:
    """One symbol's book kept in sync from a diff stream and REST snapshots.

    Args:
        book: The compiled book it keeps.
        reader: Reads diffs and snapshots from raw JSON bytes.
        fetch: Coroutine function returning a snapshot's raw bytes.
        on_update: ``on_update(book)`` after each applied diff (and when a sync completes).
        on_error: Gets every error (gaps, bad levels, crossed books, failed snapshots).
        rules: How diffs chain.
        depth: The snapshot's limit (levels per side asked for).
        policy: Delays between sync attempts (default: 0.5 s doubling to 30 s).
        catch_up_timeout: Seconds a snapshot ahead of the stream waits for it.
        max_buffer: Diffs buffered while syncing; more drop the oldest.
        healthy_after: Seconds a book stays valid before the delays start over.
        name: Prefix of error messages (``"binance BTCUSDT"``).
        expect_reorder: True while diffs may come out of order (a make-before-break
            overlap: the new connection can be ahead of the old one before the
            handover aligns them). A diff ahead of the book is then set aside
            (at most ``max_ahead``) until the old connection fills the hole,
            instead of being a gap; one still ahead once the overlap is over is a gap.
        max_ahead: Diffs set aside at most.

    Attributes:
        resyncs: Syncs started after the first (gaps, reconnections, ...).
        snapshots: Snapshots fetched.
        stale_snapshots: Snapshots refetched for being older than the stream.
        invalid_since: ``time.monotonic()`` when the book last became invalid (None while valid).
        invalid_seconds: Seconds the book was invalid before the current period.
        stopped: The error that stopped the sync (a 418), or None.
        last_reason: Why the book last became invalid.
    """

    def __init__(self, book: OrderBook, reader: JsonBookReader, fetch: Callable[[], Awaitable[bytes]], *,
                 on_update: Callable[[OrderBook], Any], on_error: Callable[[ExchangeAPIError], None],
                 rules: SequenceRules = SequenceRules(), depth: int = 1000,
                 policy: Optional[ReconnectPolicy] = None, catch_up_timeout: float = 10.0,
                 max_buffer: int = 10_000, healthy_after: float = 5.0, name: str = "",
                 expect_reorder: Optional[Callable[[], bool]] = None, max_ahead: int = 64) -> None:
        self.book = book
        self.reader = reader
        self.rules = rules
        self.depth = depth
        self.name = name or book.symbol
        self.catch_up_timeout = catch_up_timeout
        self.max_buffer = max_buffer
        self.healthy_after = healthy_after
        self.covered_bid: Optional[int] = None
        self.covered_ask: Optional[int] = None
        self.resyncs = 0
        self.snapshots = 0
        self.stale_snapshots = 0
        self.invalid_since: Optional[float] = time.monotonic()
        self.invalid_seconds = 0.0
        self.stopped: Optional[ExchangeAPIError] = None
        self.last_reason = "not synced yet"
        self._step = rules.step
        self._apply_sequenced = reader.apply_sequenced
        self._fetch = fetch
        self._on_update = on_update
        self._on_error = on_error
        self._policy = policy or _default_policy()
        self._live = False
        # Set while a snapshot is applied but the stream has not reached it.
        self._held_since: Optional[float] = None
        self._buffer: list[bytes] = []
        self._ahead: list[bytes] = []
        self._expect_reorder = expect_reorder
        self.max_ahead = max_ahead
        self._notified = -1
        self._valid_since = 0.0
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task[None]] = None
        self._catch_up_timer: Optional[asyncio.TimerHandle] = None

    # ------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start syncing (the first snapshot is fetched at once)."""
        if self._task is None:
            self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"fastws-book-{self.name}")
            self._task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: "asyncio.Task[None]") -> None:
        """A sync task that died of a bug leaves an invalid book and says why."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self._mark_invalid(f"sync failed: {exc!r}")
        error = ExchangeAPIError(500, f"{self.name}: the book's sync failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._on_error(error)

    async def stop(self) -> None:
        """Stop the sync task; the book becomes invalid."""
        task, self._task = self._task, None
        self._mark_invalid("stopped")
        # No asyncio.wait_for in the task (before 3.12 it can lose a
        # cancellation), and cancelled until done all the same.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)

    @property
    def running(self) -> bool:
        """True while the sync task runs."""
        return self._task is not None and not self._task.done()

    @property
    def live(self) -> bool:
        """True while diffs are applied as they come (the book is valid)."""
        return self._live

    @property
    def buffered(self) -> int:
        """Diffs waiting for a snapshot."""
        return len(self._buffer)

    def seconds_invalid(self) -> float:
        """Total seconds the book has been invalid, the current period included."""
        current = time.monotonic() - self.invalid_since if self.invalid_since is not None else 0.0
        return self.invalid_seconds + current

    # ------------------------------------------------------------ per frame
    def on_frame(self, data: Any) -> OrderBook:
        """A diff's raw bytes (a frame buffer, valid during the call): apply or buffer it.

        Returns the book whatever happened (the handover of a make-before-break
        rotation sees every frame); ``deliver`` calls the handler only when
        the book advanced.
        """
        book = self.book
        if not self._live:
            if self._held_since is not None:
                self._catch_up(data)
            elif self.stopped is None:
                if not self._buffer:
                    self._wake.set()            # the first diff: time to fetch the snapshot
                elif len(self._buffer) >= self.max_buffer:
                    del self._buffer[0]
                self._buffer.append(bytes(data))
            return book
        # Parse, check the ids (SequenceRules.continues), apply and check for a
        # crossed book in one compiled call: the per-message path.
        try:
            status = self._apply_sequenced(book, data, self._step)
        except ValueError as exc:
            self._bad_level(exc, data)
            return book
        if status == SEQ_APPLIED or status == SEQ_OLD:     # SEQ_OLD: old or a duplicate, dropped
            if self._ahead:
                self._drain_ahead()
        elif status == SEQ_CROSSED:
            self._crossed()
        else:
            self._not_continuing(data)
        return book

    def _not_continuing(self, data: Any) -> None:
        """A diff past the book's id + step: set aside during a make-before-break, else a gap."""
        if self._expect_reorder is not None and len(self._ahead) < self.max_ahead and self._expect_reorder():
            self._ahead.append(bytes(data))     # a replacement connection ahead of the old one
            return
        book = self.book
        first, last, _ = self.reader.stage_diff(book, data)     # parsed once already: it parses
        book.discard_staged()
        self._gap(book.update_id, first, last, data)

    def _drain_ahead(self) -> None:
        """Apply the diffs set aside during a make-before-break that now continue the book."""
        book = self.book
        pending, self._ahead = self._ahead, []
        for index, data in enumerate(pending):
            ids = self._stage_new(data)
            if ids is None:
                if not self._live:
                    return          # a bad level: resyncing
                continue            # old: dropped
            first, last, event_time = ids
            if first == book.update_id + self._step:
                book.commit_staged(last, event_time)
                if book.is_crossed():
                    self._crossed()
                    return
            else:
                book.discard_staged()
                self._ahead = pending[index:]
                return

    def deliver(self, book: OrderBook) -> None:
        """The route's handler: ``on_update(book)`` once per update that advanced a valid book."""
        if book.valid and book.update_id != self._notified:
            self._notified = book.update_id
            self._on_update(book)

    def _tell(self) -> None:
        """``on_update(book)`` outside the route (a sync completed, the book became invalid)."""
        self._notified = self.book.update_id if self.book.valid else -1
        try:
            self._on_update(self.book)
        except Exception as exc:    # the user's handler: reported, the sync goes on
            error = MessageHandlerError(f"{self.name}: book handler raised {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._on_error(error)

    def connection_lost(self, reason: str) -> None:
        """The connection carrying the diffs was lost: updates were missed, sync again."""
        if self._live or self._held_since is not None:
            self._restart(f"connection lost: {reason}")
        else:
            self._buffer.clear()

    # ------------------------------------------------------------ failures
    def _mark_invalid(self, reason: str) -> None:
        self._ahead.clear()
        self.book.invalidate()
        self._live = False
        self._held_since = None
        self._cancel_catch_up()
        self.last_reason = reason
        if self.invalid_since is None:
            self.invalid_since = time.monotonic()

    def _restart(self, reason: str, error: Optional[ExchangeAPIError] = None) -> None:
        """Invalidate, tell the handlers, and sync again."""
        was_valid = self._live
        self._mark_invalid(reason)
        self._buffer.clear()
        if was_valid and time.monotonic() - self._valid_since >= self.healthy_after:
            self._policy.reset()
        self.resyncs += 1
        if error is not None:
            self._on_error(error)
        self._wake.set()
        self._tell()

    def _gap(self, book_id: int, first: int, last: int, data: Any) -> None:
        expected = book_id + self.rules.step
        self._restart(f"gap: expected {expected}, got {first}..{last}", SequenceGapError(
            f"{self.name}: depth diffs missing (expected id {expected}, got {first}): resyncing the book",
            self.name, expected, first))

    def _crossed(self) -> None:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        self._restart(f"crossed: bid {bid} >= ask {ask}", InvalidMessageError(
            f"{self.name}: book crossed after update {self.book.update_id} (best bid {bid}, best ask {ask}): "
            "resyncing the book"))

    def _bad_level(self, exc: Exception, data: Any) -> None:
        error = InvalidMessageError(f"{self.name}: depth message does not parse: {exc}: resyncing the book",
                                    bytes(data)[:_PREVIEW])
        error.__cause__ = exc
        self._restart(f"bad message: {exc}", error)

    def _stage_new(self, data: Any) -> Optional[tuple[int, int, int]]:
        """Stage a diff newer than the book (off the per-message path): its ids.

        None for a diff wholly at or before the book's id (dropped) and after
        a level that does not parse (reported, the book resyncing).
        """
        try:
            ids = self.reader.stage_diff(self.book, data)
        except ValueError as exc:
            self._bad_level(exc, data)
            return None
        if ids[1] <= self.book.update_id:
            self.book.discard_staged()
            return None
        return ids

    # ------------------------------------------------------------ syncing
    def _catch_up(self, data: Any) -> None:
        """A snapshot is applied and ahead of the stream: drop diffs until one straddles it."""
        book = self.book
        ids = self._stage_new(data)
        if ids is None:
            return
        first, last, event_time = ids
        if self.rules.straddles(first, last, book.update_id):
            book.commit_staged(last, event_time)
            self._go_live()
        else:
            book.discard_staged()
            self.stale_snapshots += 1
            self._mark_invalid(f"snapshot {book.update_id} older than diff {first}")
            self._buffer.append(bytes(data))
            self._wake.set()

    def _go_live(self) -> None:
        book = self.book
        if book.is_crossed():
            self._crossed()
            return
        self._held_since = None
        self._cancel_catch_up()
        self._live = True
        book.valid = True
        self._valid_since = now = time.monotonic()
        if self.invalid_since is not None:
            self.invalid_seconds += now - self.invalid_since
            self.invalid_since = None

    def _install(self, snapshot: bytes) -> None:
        """Apply a snapshot and replay the buffered diffs on it (no await: atomic for the loop)."""
        book = self.book
        try:
            self.reader.apply_snapshot(book, snapshot)
        except ValueError as exc:
            self._mark_invalid(f"bad snapshot: {exc}")
            error = InvalidMessageError(f"{self.name}: snapshot does not parse: {exc}", snapshot[:_PREVIEW])
            error.__cause__ = exc
            self._on_error(error)
            self._wake.set()
            return
        book.valid = False
        self._record_cover(book)
        buffered, self._buffer = self._buffer, []
        self._held_since = time.monotonic()
        for index, data in enumerate(buffered):
            self._catch_up(data)
            if self._live:
                for rest in buffered[index + 1:]:
                    self.on_frame(rest)
                if self._live:
                    self._tell()
                return
            if self._held_since is None:         # stale, or a bad diff: keep what follows
                self._buffer.extend(buffered[index + 1:])
                return

    def _record_cover(self, book: OrderBook) -> None:
        bids, asks = book.bids_fixed(self.depth + 1), book.asks_fixed(self.depth + 1)
        self.covered_bid = bids[-1][0] if len(bids) >= self.depth else None
        self.covered_ask = asks[-1][0] if len(asks) >= self.depth else None

    def covered_bids(self, n: int = 10) -> list[tuple[float, float]]:
        """The top ``n`` bids within the snapshot's depth, as floats, best first."""
        levels = self.book.bids(n)
        if self.covered_bid is None or not self.book.price_scale:
            return levels
        floor = self.covered_bid / 10 ** (self.book.price_scale or 0)
        return [level for level in levels if level[0] >= floor]

    def covered_asks(self, n: int = 10) -> list[tuple[float, float]]:
        """The top ``n`` asks within the snapshot's depth, as floats, best first."""
        levels = self.book.asks(n)
        if self.covered_ask is None or not self.book.price_scale:
            return levels
        ceiling = self.covered_ask / 10 ** (self.book.price_scale or 0)
        return [level for level in levels if level[0] <= ceiling]

    async def _run(self) -> None:
        first = True
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._live or self._held_since is not None or not self._buffer:
                continue        # in sync, or waiting for the stream's first diff
            if not first:
                delay = self._policy.next_delay()
                if delay:
                    await asyncio.sleep(delay)
            first = False
            try:
                snapshot = await self._fetch()
            except asyncio.CancelledError:
                raise
            except BannedError as exc:
                self.stopped = exc
                self._mark_invalid(exc.message)
                self._buffer.clear()
                self._on_error(exc)
                self._tell()
                return
            except ExchangeAPIError as exc:
                self._failed_snapshot(exc)
                continue
            except Exception as exc:    # any other failure of the injected fetch: reported, retried
                error = ExchangeAPIError(500, f"{self.name}: snapshot failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                self._failed_snapshot(error)
                continue
            self.snapshots += 1
            self._install(snapshot)
            if self._held_since is not None:
                self._catch_up_timer = asyncio.get_running_loop().call_later(
                    self.catch_up_timeout, self._catch_up_expired)

    def _failed_snapshot(self, error: ExchangeAPIError) -> None:
        # A 429's Retry-After is kept by the fetcher (no request before it);
        # the backoff delay comes on top.
        self._mark_invalid(error.message)
        self._on_error(error)
        self._wake.set()

    def _catch_up_expired(self) -> None:
        """The stream did not reach a held snapshot in time: fetch again."""
        self._catch_up_timer = None
        if self._held_since is not None:
            self.stale_snapshots += 1
            self._mark_invalid(f"stream did not reach snapshot {self.book.update_id} within "
                               f"{self.catch_up_timeout} s")
            self._wake.set()

    def _cancel_catch_up(self) -> None:
        timer, self._catch_up_timer = self._catch_up_timer, None
        if timer is not None:
            timer.cancel()

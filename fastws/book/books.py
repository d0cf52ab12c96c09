"""The books one client keeps: a ``BookSync`` per symbol, one snapshot fetcher, their health.

``BookSet`` is the exchange-neutral part of an adapter's ``subscribe_books``:
the adapter gives it the snapshot fetcher (its REST limits), the level reader
(its wire format) and the sequence rules; it creates, stops and reports the
syncs. Symbols are keyed in upper case.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from fastws.book._book import JsonBookReader, OrderBook
from fastws.book.rest import SnapshotFetcher
from fastws.book.sync import BookSync, SequenceRules
from fastws.errors import ExchangeAPIError

__all__ = ["BookHandler", "BookSet"]

BookHandler = Callable[[OrderBook], Any]
"""``handler(book)``: called after each applied update and when a book becomes invalid."""


class BookSet:
    """The books of one client: their syncs, the snapshot fetcher, health.

    Args:
        exchange: Name used in messages (``"mexc"``).
        fetcher: Fetches the REST snapshots (owned: ``close()`` closes it).
        reader: Reads the diffs and snapshots into the books.
        report: Passes an error to the client's error handler.
        depth: Snapshot limit (levels per side).
        rules: How the exchange chains diffs.
        catch_up_timeout: Seconds a snapshot ahead of the stream waits for it.
        expect_reorder: True while a make-before-break overlap may deliver diffs out of order.
    """

    def __init__(self, exchange: str, fetcher: SnapshotFetcher, reader: JsonBookReader,
                 report: Callable[[ExchangeAPIError], None], *, depth: int,
                 rules: SequenceRules = SequenceRules(), catch_up_timeout: float = 10.0,
                 expect_reorder: Optional[Callable[[], bool]] = None) -> None:
        self.exchange = exchange
        self.depth = depth
        self.rules = rules
        self.catch_up_timeout = catch_up_timeout
        self.fetcher = fetcher
        self.reader = reader
        self.syncs: dict[str, BookSync] = {}
        self._report = report
        self._expect_reorder = expect_reorder

    def add(self, symbol: str, handler: BookHandler) -> BookSync:
        """A new sync for ``symbol`` (not started); an existing one keeps its handler."""
        key = symbol.upper()
        sync = self.syncs.get(key)
        if sync is None:
            async def fetch() -> bytes:
                return await self.fetcher.fetch(key, self.depth)
            sync = BookSync(OrderBook(key), self.reader, fetch, on_update=handler, on_error=self._report,
                            rules=self.rules, depth=self.depth, catch_up_timeout=self.catch_up_timeout,
                            name=f"{self.exchange} {key}", expect_reorder=self._expect_reorder)
            self.syncs[key] = sync
        return sync

    async def remove(self, symbol: str) -> None:
        """Stop and forget ``symbol``'s sync."""
        sync = self.syncs.pop(symbol.upper(), None)
        if sync is not None:
            await sync.stop()

    def connection_lost(self, reason: str) -> None:
        """A connection was lost: every book syncs again."""
        for sync in self.syncs.values():
            sync.connection_lost(reason)

    async def close(self) -> None:
        """Stop every sync and close the REST session."""
        for symbol in list(self.syncs):
            await self.remove(symbol)
        await self.fetcher.close()

    def book(self, symbol: str) -> Optional[OrderBook]:
        """The book of ``symbol``, or None."""
        sync = self.syncs.get(symbol.upper())
        return None if sync is None else sync.book

    def health(self) -> dict[str, dict[str, Any]]:
        """Per book: valid, resyncs, seconds invalid, last update id, levels per side, snapshots."""
        return {symbol: {
            "valid": bool(sync.book.valid),
            "resyncs": sync.resyncs,
            "seconds_invalid": sync.seconds_invalid(),
            "last_update_id": sync.book.update_id,
            "bid_levels": sync.book.bid_count,
            "ask_levels": sync.book.ask_count,
            "snapshots": sync.snapshots,
            "stale_snapshots": sync.stale_snapshots,
            "buffered": sync.buffered,
            "last_reason": None if sync.book.valid else sync.last_reason,
            "stopped": None if sync.stopped is None else str(sync.stopped),
        } for symbol, sync in self.syncs.items()}

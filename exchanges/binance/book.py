"""Binance local order books: ``<symbol>@depth@100ms`` diffs plus REST snapshots.

``BinanceBooks`` is what ``BinanceWebSocket.subscribe_books`` runs on: per
symbol a compiled ``OrderBook`` and a ``BookSync``; the diff stream's frames
take a route of their own whose decoder is the sync (levels read from the
frame's bytes into the book, no Python object per level); snapshots come
from ``GET /api/v3/depth`` through a ``SnapshotFetcher`` that keeps Binance's
request-weight budget.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from fastws.book import JsonBookReader, OrderBook
from fastws.book.rest import SnapshotFetcher
from fastws.book.sync import BookSync, SequenceRules
from fastws.errors import ExchangeAPIError

__all__ = ["BinanceBooks", "DEFAULT_BOOK_DEPTH", "REST_URL", "WEIGHT_PER_MINUTE", "depth_stream",
           "depth_weight"]

REST_URL = "https://api.binance.com"
"""Binance spot's public REST base URL."""

WEIGHT_PER_MINUTE = 6000
"""Request weight one IP may spend per minute."""

DEFAULT_BOOK_DEPTH = 1000
"""Snapshot levels per side asked for (weight 50: 120 snapshots a minute)."""

BookHandler = Callable[[OrderBook], Any]


def depth_weight(limit: int) -> int:
    """The request weight of ``GET /api/v3/depth`` with ``limit`` (1-100: 5, to 500: 25, to 1000: 50, 250)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def depth_stream(symbol: str) -> str:
    """The diff depth stream of ``symbol``: ``btcusdt@depth@100ms``."""
    return f"{symbol.lower()}@depth@100ms"


class BinanceBooks:
    """The books of one ``BinanceWebSocket``: syncs, the snapshot fetcher, health.

    Args:
        exchange: Name used in messages (``"binance"``).
        rest_url: REST base URL of the snapshots.
        report: Passes an error to the client's error handler.
        depth: Snapshot limit (levels per side).
        catch_up_timeout: Seconds a snapshot ahead of the stream waits for it.
        timeout: Seconds allowed for a snapshot request.
        expect_reorder: True while a make-before-break overlap may deliver diffs out of order.
    """

    def __init__(self, exchange: str, rest_url: str, report: Callable[[ExchangeAPIError], None], *,
                 depth: int = DEFAULT_BOOK_DEPTH, catch_up_timeout: float = 10.0, timeout: float = 10.0,
                 expect_reorder: Optional[Callable[[], bool]] = None) -> None:
        if not 1 <= depth <= 5000:
            raise ValueError(f"depth must be 1 to 5000 (Binance's limits), got {depth}")
        self.exchange = exchange
        self.depth = depth
        self.catch_up_timeout = catch_up_timeout
        self.fetcher = SnapshotFetcher(rest_url, depth_weight, weight_per_minute=WEIGHT_PER_MINUTE,
                                       timeout=timeout, name=exchange)
        self.reader = JsonBookReader()
        self.syncs: dict[str, BookSync] = {}
        self._report = report
        self._expect_reorder = expect_reorder
        self._started = time.monotonic()

    def add(self, symbol: str, handler: BookHandler) -> BookSync:
        """A new sync for ``symbol`` (not started); an existing one keeps its handler."""
        key = symbol.upper()
        sync = self.syncs.get(key)
        if sync is None:
            async def fetch() -> bytes:
                return await self.fetcher.fetch(key, self.depth)
            sync = BookSync(OrderBook(key), self.reader, fetch, on_update=handler, on_error=self._report,
                            rules=SequenceRules(), depth=self.depth, catch_up_timeout=self.catch_up_timeout,
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

"""Binance local order books: ``<symbol>@depth@100ms`` diffs plus REST snapshots.

``BinanceBooks`` is what ``BinanceWebSocket.subscribe_books`` runs on: per
symbol a compiled ``OrderBook`` and a ``BookSync``; the diff stream's frames
take a route of their own whose decoder is the sync (levels read from the
frame's bytes into the book, no Python object per level); snapshots come
from ``GET /api/v3/depth`` through a ``SnapshotFetcher`` that keeps Binance's
request-weight budget.
"""
from __future__ import annotations

from typing import Callable, Optional

from fastws.book import JsonBookReader
from fastws.book.books import BookHandler, BookSet
from fastws.book.rest import SnapshotFetcher
from fastws.book.sync import SequenceRules
from fastws.errors import ExchangeAPIError

__all__ = ["BinanceBooks", "BookHandler", "DEFAULT_BOOK_DEPTH", "REST_URL", "WEIGHT_PER_MINUTE", "depth_stream",
           "depth_weight"]

REST_URL = "https://api.binance.com"
"""Binance spot's public REST base URL."""

WEIGHT_PER_MINUTE = 6000
"""Request weight one IP may spend per minute."""

DEFAULT_BOOK_DEPTH = 1000
"""Snapshot levels per side asked for (weight 50: 120 snapshots a minute)."""


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


class BinanceBooks(BookSet):
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
        fetcher = SnapshotFetcher(rest_url, depth_weight, weight_per_minute=WEIGHT_PER_MINUTE,
                                  timeout=timeout, name=exchange)
        super().__init__(exchange, fetcher, JsonBookReader(), report, depth=depth, rules=SequenceRules(),
                         catch_up_timeout=catch_up_timeout, expect_reorder=expect_reorder)

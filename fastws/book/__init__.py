"""Compiled order books: exact fixed-point levels read straight from raw frames.

``OrderBook`` keeps one symbol's bids and asks as int64 fixed point (no float
rounding in the book); ``JsonBookReader`` (and ``apply_json_diff`` /
``apply_json_snapshot`` with the usual keys) parses JSON depth messages from
their raw bytes into a book with no Python object per level. Compiled readers
use the C API declared in ``fastws/book/_book.pxd``. ``BookSync`` keeps a book
in sync from a diff stream and REST snapshots (``SnapshotFetcher``, aiohttp);
``BookSet`` keeps a client's syncs (an adapter gives it its fetcher and reader).
"""
from fastws.book._book import (
    MAX_SCALE,
    JsonBookReader,
    LevelBuffer,
    OrderBook,
    apply_json_diff,
    apply_json_snapshot,
    parse_decimal,
)
from fastws.book.books import BookSet
from fastws.book.rest import BannedError, SnapshotFetcher, TooManyRequestsError, WeightBudget
from fastws.book.sync import BookSync, SequenceRules

__all__ = [
    "BannedError",
    "BookSet",
    "BookSync",
    "MAX_SCALE",
    "JsonBookReader",
    "LevelBuffer",
    "OrderBook",
    "SequenceRules",
    "SnapshotFetcher",
    "TooManyRequestsError",
    "WeightBudget",
    "apply_json_diff",
    "apply_json_snapshot",
    "parse_decimal",
]

"""Type stub of the compiled order book (fastws/book/_book.pyx)."""
from typing import Iterable, Optional, Union

_Buffer = Union[bytes, bytearray, memoryview]
_Text = Union[str, bytes]

MAX_SCALE: int
SEQ_OLD: int
SEQ_APPLIED: int
SEQ_AHEAD: int
SEQ_CROSSED: int

def parse_decimal(value: _Text, scale: int) -> int:
    """The fixed-point integer of a decimal string at ``scale`` decimals (exact)."""

class LevelBuffer:
    """The top levels of one side as C doubles ``[price, qty, ...]``, shape ``(n, 2)``."""
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class OrderBook:
    """One symbol's book: bids and asks as exact fixed-point levels."""
    @property
    def symbol(self) -> str: ...
    update_id: int
    exchange_time: int
    valid: bool
    def __init__(self, symbol: str, price_scale: Optional[int] = None, qty_scale: Optional[int] = None) -> None: ...
    def apply_snapshot(self, bids: Iterable[tuple[_Text, _Text]], asks: Iterable[tuple[_Text, _Text]],
                       update_id: int) -> None:
        """Replace the whole book: levels absent from the snapshot are gone."""
    def apply_diff(self, bids: Iterable[tuple[_Text, _Text]], asks: Iterable[tuple[_Text, _Text]],
                   update_id: int) -> None:
        """Apply absolute levels (qty 0 removes); all parsed before any is applied."""
    def apply_level(self, is_bid: bool, price: _Text, qty: _Text) -> None:
        """Apply one absolute level given as decimal strings."""
    def apply_level_fixed(self, is_bid: bool, price: int, qty: int) -> None:
        """Apply one absolute level given as fixed-point integers at the book's scales."""
    def commit_staged(self, update_id: int, exchange_time: Optional[int] = None) -> None:
        """Apply the levels a reader staged; the book's id becomes ``update_id``."""
    def discard_staged(self) -> None:
        """Forget the levels a reader staged."""
    def clear(self) -> None:
        """Drop every level; the book becomes invalid."""
    def invalidate(self) -> None:
        """Mark the book invalid (its levels stay readable)."""
    @property
    def price_scale(self) -> Optional[int]: ...
    @property
    def qty_scale(self) -> Optional[int]: ...
    @property
    def bid_count(self) -> int: ...
    @property
    def ask_count(self) -> int: ...
    def best_bid(self) -> Optional[tuple[float, float]]:
        """The highest bid as ``(price, qty)`` floats, or None."""
    def best_ask(self) -> Optional[tuple[float, float]]:
        """The lowest ask as ``(price, qty)`` floats, or None."""
    def bids(self, n: int = 10) -> list[tuple[float, float]]:
        """The top ``n`` bids as floats, best first."""
    def asks(self, n: int = 10) -> list[tuple[float, float]]:
        """The top ``n`` asks as floats, best first."""
    def bids_exact(self, n: int = 10) -> list[tuple[str, str]]:
        """The top ``n`` bids as exact decimal strings, best first."""
    def asks_exact(self, n: int = 10) -> list[tuple[str, str]]:
        """The top ``n`` asks as exact decimal strings, best first."""
    def bids_fixed(self, n: int = 10) -> list[tuple[int, int]]:
        """The top ``n`` bids as fixed-point integers, best first."""
    def asks_fixed(self, n: int = 10) -> list[tuple[int, int]]:
        """The top ``n`` asks as fixed-point integers, best first."""
    def bids_buffer(self, n: int = 10) -> LevelBuffer:
        """The top ``n`` bids as a buffer of doubles, best first."""
    def asks_buffer(self, n: int = 10) -> LevelBuffer:
        """The top ``n`` asks as a buffer of doubles, best first."""
    def is_crossed(self) -> bool:
        """True when both sides have levels and the best bid >= the best ask."""

class JsonBookReader:
    """Reads depth levels and ids from raw JSON bytes into an ``OrderBook``."""
    def __init__(self, bids: str = "b", asks: str = "a", first_id: str = "U", last_id: str = "u",
                 event_time: str = "E", snapshot_bids: str = "bids", snapshot_asks: str = "asks",
                 snapshot_id: str = "lastUpdateId") -> None: ...
    def stage_diff(self, book: OrderBook, data: _Buffer) -> tuple[int, int, int]:
        """Parse a diff and stage its levels; returns ``(first_id, last_id, event_time)``."""
    def apply_diff(self, book: OrderBook, data: _Buffer) -> tuple[int, int, int]:
        """Parse and apply a diff; returns ``(first_id, last_id, event_time)``."""
    def apply_sequenced(self, book: OrderBook, data: _Buffer, step: int = 1) -> int:
        """Apply a diff only if it continues the book: ``SEQ_APPLIED``, ``SEQ_CROSSED``, ``SEQ_OLD`` or ``SEQ_AHEAD``."""
    def apply_snapshot(self, book: OrderBook, data: _Buffer) -> int:
        """Replace the book with a snapshot; returns its update id."""

def apply_json_diff(book: OrderBook, data: _Buffer, reader: Optional[JsonBookReader] = None) -> tuple[int, int, int]:
    """Apply a JSON depth diff from raw bytes."""

def apply_json_snapshot(book: OrderBook, data: _Buffer, reader: Optional[JsonBookReader] = None) -> int:
    """Replace ``book`` with a JSON snapshot from raw bytes; returns its update id."""

"""Type stub of the compiled MEXC push decoder (exchanges/mexc/_fastpb.pyx)."""
from typing import Any, Callable, Optional, Union

from fastws._core import CompiledParser, FrameHandler, RouteTable
from fastws.book import JsonBookReader, OrderBook

_Buffer = Union[bytes, bytearray, memoryview]

class PushDecoder:
    """Decodes serialized MEXC pushes into MessageToDict-equal dicts."""
    def __init__(self, descriptor: Any, body_oneof: str = "body") -> None: ...
    @property
    def parse_errors(self) -> int:
        """Malformed pushes seen."""
    @property
    def last_error(self) -> Optional[str]:
        """Why the last malformed push was refused."""
    @property
    def send_time_ms(self) -> int:
        """The last push's ``sendTime`` (-1: absent)."""
    @property
    def first_version(self) -> int:
        """The last depth update's ``fromVersion`` (-1: absent)."""
    @property
    def last_version(self) -> int:
        """The last depth update's ``toVersion`` (-1: absent)."""
    def decode(self, data: Any) -> Optional[dict[str, Any]]:
        """Decode one push; ``None`` (and a counted parse error) when malformed."""

class PushParser(CompiledParser):
    """A MEXC connection's messages parsed in place by the frame core (pushes
    decoded, with their event time and depth versions; book channels to their
    books; text frames to ``on_control``)."""
    def __init__(self, decoder: PushDecoder, on_control: Callable[[memoryview], Any],
                 on_malformed: Callable[[Optional[str], bytes], BaseException],
                 books: Optional["BookRoutes"] = None) -> None: ...

class MexcBookReader(JsonBookReader):
    """Reads MEXC depth into an ``OrderBook``: pushes from protobuf bytes, snapshots from JSON."""
    @property
    def needed_scales(self) -> dict[str, tuple[int, int]]:
        """Per symbol, ``(price, quantity)`` decimals of levels that did not fit the book's scales."""
    def __init__(self) -> None: ...
    def stage_diff(self, book: OrderBook, data: _Buffer) -> tuple[int, int, int]:
        """Stage an aggregated depth push's levels; returns ``(fromVersion, toVersion, sendTime)``."""
    def apply_diff(self, book: OrderBook, data: _Buffer) -> tuple[int, int, int]:
        """Apply an aggregated depth push (no version check); returns ``(fromVersion, toVersion, sendTime)``."""
    def apply_limit(self, book: OrderBook, data: _Buffer) -> int:
        """Replace the book with a limit depth push; returns its ``version``."""
    def apply_snapshot(self, book: OrderBook, data: _Buffer) -> int:
        """Replace the book with a REST snapshot (JSON); returns its ``lastUpdateId``."""

class BookRoute:
    """One book channel: its pushes go to ``on_frame(buffer)``."""
    @property
    def channel(self) -> str: ...
    @property
    def on_frame(self) -> Callable[[Any], Any]: ...
    @property
    def message(self) -> dict[str, str]: ...
    def __init__(self, channel: str, on_frame: Callable[[Any], Any]) -> None: ...

class BookRoutes:
    """The channels whose pushes go to order books, shared by a client's connections."""
    def __init__(self) -> None: ...
    def add(self, channel: str, on_frame: Callable[[Any], Any]) -> None:
        """Send ``channel``'s pushes to ``on_frame(buffer)``."""
    def remove(self, channel: str) -> None:
        """Stop routing ``channel``."""
    def __len__(self) -> int: ...
    def __contains__(self, channel: object) -> bool: ...


def attach_routes(core: FrameHandler, routes: Optional[RouteTable]) -> None:
    """Give a live connection's core ``routes`` (from its next frame on)."""

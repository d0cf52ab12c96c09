"""Type stub of the compiled MEXC push decoder (exchanges/mexc/_fastpb.pyx)."""
from typing import Any, Callable, Optional

from fastws._core import CompiledParser

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
    decoded, with their event time and depth versions; text frames to ``on_control``)."""
    def __init__(self, decoder: PushDecoder, on_control: Callable[[memoryview], Any],
                 on_malformed: Callable[[Optional[str], bytes], BaseException]) -> None: ...

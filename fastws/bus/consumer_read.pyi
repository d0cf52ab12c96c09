"""Types of the compiled bus consumer loop (fastws/bus/consumer_read.pyx)."""
from typing import Any, Callable, Optional

class Subscription:
    """One subscribed stream as the loop needs it: its key and the message id prefix it expects."""

    @property
    def key(self) -> Any: ...
    @property
    def id_prefix(self) -> bytes: ...
    def __init__(self, key: Any, id_prefix: bytes) -> None: ...

class HmsgLoop:
    """Reads the messages of a NATS read buffer into a frame core (see the module)."""

    def __init__(self, subscriptions: dict[int, Subscription], feed: Callable[[bytes, int, Optional[Any]], bool],
                 on_refused: Callable[[Subscription, int, bytes, bytes], None],
                 on_control: Callable[[bytes], None], deduplicate: bool = True) -> None: ...
    def read(self, buf: bytes) -> int:
        """Handle every complete operation in ``buf``; return how many bytes were used."""

"""A token bucket for outgoing control messages."""
from __future__ import annotations

import asyncio
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most ``rate`` acquisitions per second, with a burst of ``capacity``.

    Exchanges disconnect (and ban) clients that send control messages too
    fast; every subscription or user message waits here first.

    Args:
        rate: Tokens added per second.
        capacity: Largest number of tokens held (the burst); default 1, so
            messages are evenly spaced and no one-second window holds more
            than ``rate`` of them.
    """

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()
        #: Acquisitions that had to wait, and the seconds they waited (for the metrics).
        self.waits = 0
        self.wait_seconds = 0.0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        """Wait until a token is available and take it (callers served in order)."""
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                self.waits += 1
                began = time.monotonic()
                try:
                    await asyncio.sleep((1.0 - self._tokens) / self.rate)
                finally:
                    self.wait_seconds += time.monotonic() - began
                self._refill()
            self._tokens -= 1.0

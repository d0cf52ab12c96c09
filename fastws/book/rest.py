"""REST depth snapshots over aiohttp, within an exchange's request-weight budget.

``SnapshotFetcher`` asks ``GET <base><path>?symbol=...&limit=...`` and returns
the body's raw bytes (the compiled reader parses them, no dict per level). It
keeps the exchange's rules, injected as numbers and a weight function:

- a sliding one-minute budget of request weight (Binance: 6000, a depth
  request weighing 5 to 250 by its limit): a request that would exceed it
  waits;
- HTTP 429: ``TooManyRequestsError`` (a ``RateLimitError`` with ``retry_after`` seconds from ``Retry-After``);
  no request leaves before that time has passed;
- HTTP 418 (the IP is banned): ``BannedError``; every later request fails the
  same way without reaching the exchange until the ban's end;
- a response slower than ``timeout``: ``ExchangeTimeoutError``.

The aiohttp session is created on the first request and closed by ``close()``.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Optional

from fastws.errors import ConnectionFailedError, ExchangeAPIError, ExchangeTimeoutError, RateLimitError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["BannedError", "SnapshotFetcher", "TooManyRequestsError", "WeightBudget"]

_MINUTE = 60.0
_ERROR_BODY_BYTES = 200


class BannedError(ExchangeAPIError):
    """The exchange banned this IP (HTTP 418, code 418): stop asking until ``retry_after``.

    Attributes:
        retry_after: Seconds the exchange said the ban lasts (None: not said).
    """

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(418, message)
        self.retry_after = retry_after


class TooManyRequestsError(RateLimitError):
    """The exchange answered HTTP 429 (code 429): no request before ``retry_after`` seconds.

    Attributes:
        retry_after: Seconds from ``Retry-After`` (None: not said; 1 s is waited).
    """

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WeightBudget:
    """Request weight spent in a sliding window, at most ``limit`` per ``window`` seconds.

    Args:
        limit: Weight allowed per window.
        window: Seconds of the window.
    """

    def __init__(self, limit: int, window: float = _MINUTE) -> None:
        self.limit = limit
        self.window = window
        self._spent: deque[tuple[float, int]] = deque()
        self._used = 0

    @property
    def used(self) -> int:
        """Weight spent within the current window."""
        self._expire(time.monotonic())
        return self._used

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.window:
            self._used -= self._spent.popleft()[1]

    def delay(self, weight: int) -> float:
        """Seconds until ``weight`` more fits the budget (0: now)."""
        now = time.monotonic()
        self._expire(now)
        if self._used + weight <= self.limit or not self._spent:
            return 0.0
        over = self._used + weight - self.limit
        for stamp, spent in self._spent:
            over -= spent
            if over <= 0:
                return stamp + self.window - now
        return self.window

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` fits, then count it."""
        while (wait := self.delay(weight)) > 0:
            await asyncio.sleep(wait)
        self._spent.append((time.monotonic(), weight))
        self._used += weight


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds of a ``Retry-After`` header (None: absent or not a number)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SnapshotFetcher:
    """Fetches depth snapshots from one REST endpoint, within its weight budget.

    Args:
        base_url: ``https://api.binance.com`` or a simulator's ``http://127.0.0.1:port``.
        weight_of: The request weight of a depth request with a given limit.
        path: The depth endpoint's path.
        weight_per_minute: Weight budget per minute.
        timeout: Seconds allowed for a whole request.
        name: Prefix of error messages (the exchange).
    """

    def __init__(self, base_url: str, weight_of: Callable[[int], int], *, path: str = "/api/v3/depth",
                 weight_per_minute: int = 6000, timeout: float = 10.0, name: str = "rest") -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.weight_of = weight_of
        self.budget = WeightBudget(weight_per_minute)
        self.timeout = timeout
        self.name = name
        self.requests = 0
        self.server_used_weight: Optional[int] = None
        self._session: Optional["aiohttp.ClientSession"] = None
        self._blocked_until = 0.0
        self._banned: Optional[BannedError] = None

    @property
    def closed(self) -> bool:
        """True when no session is open."""
        return self._session is None

    def _open(self) -> "aiohttp.ClientSession":
        import aiohttp      # on first use: importing fastws.book (or an adapter) stays light
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def fetch(self, symbol: str, limit: int) -> bytes:
        """The raw body of ``GET <path>?symbol=<symbol>&limit=<limit>``.

        Raises:
            BannedError: 418, now or earlier within the ban (nothing is sent then).
            RateLimitError: 429; ``retry_after`` holds the seconds asked for.
            ExchangeTimeoutError: no whole response within ``timeout``.
            ConnectionFailedError: another HTTP status (its code) or a network failure.
        """
        import aiohttp
        url = f"{self.base_url}{self.path}"
        if self._banned is not None and time.monotonic() < self._blocked_until:
            raise self._banned
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.budget.acquire(self.weight_of(limit))
        session = self._open()
        self.requests += 1
        try:
            async with session.get(url, params={"symbol": symbol, "limit": str(limit)}) as response:
                body = await response.read()
                used = response.headers.get("X-MBX-USED-WEIGHT-1M")
                if used is not None and used.isdigit():
                    self.server_used_weight = int(used)
                if response.status == 200:
                    return body
                retry_after = _retry_after(response.headers.get("Retry-After"))
                text = body[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
        except asyncio.TimeoutError:
            raise ExchangeTimeoutError(f"{self.name}: no depth snapshot of {symbol} within {self.timeout} s "
                                       f"from {url}") from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailedError(f"{self.name}: depth snapshot of {symbol} from {url} failed: "
                                        f"{type(exc).__name__}: {exc}") from exc
        return self._refused(response.status, retry_after, text, symbol)

    def _refused(self, status: int, retry_after: Optional[float], text: str, symbol: str) -> bytes:
        if status == 418:
            self._blocked_until = time.monotonic() + (retry_after or 120.0)
            self._banned = BannedError(f"{self.name}: this IP is banned from {self.base_url} (HTTP 418"
                                       f"{f', for {retry_after:g} s' if retry_after else ''}): the book of "
                                       f"{symbol} stops; {text}", retry_after)
            raise self._banned
        if status == 429:
            self._blocked_until = time.monotonic() + (retry_after if retry_after is not None else 1.0)
            raise TooManyRequestsError(f"{self.name}: request weight exceeded at {self.base_url} (HTTP 429), "
                                       f"retrying after {retry_after} s: {text}", retry_after)
        raise ConnectionFailedError(f"{self.name}: depth snapshot of {symbol}: HTTP {status}: {text}", code=status)

    async def close(self) -> None:
        """Close the session and its connector (safe to call twice)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

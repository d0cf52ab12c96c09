"""Reconnection policy: when to try again, and which failures are worth it."""
from __future__ import annotations

import random
from typing import Callable, Optional

from picows import WSInvalidURL

__all__ = ["ReconnectPolicy", "Reconnection", "handshake_status", "is_retryable"]


class ReconnectPolicy:
    """Delays between connection attempts.

    The first attempt after an unexpected drop is immediate; after that the
    delay is ``base × factor^n`` capped at ``cap``, spread by ``± jitter`` of
    itself. ``reset()`` starts over (called once a connection has been healthy
    for a while).

    Args:
        base: Delay before the second attempt, seconds.
        factor: Growth per further attempt.
        cap: Largest delay, seconds.
        jitter: Fraction of each delay drawn at random, 0 for none.
        rng: Source of randomness in [0, 1), replaceable in tests.
    """

    def __init__(self, base: float, factor: float, cap: float, jitter: float,
                 rng: Callable[[], float] = random.random) -> None:
        self._base = base
        self._factor = factor
        self._cap = cap
        self._jitter = jitter
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Attempts made since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        attempt = self._attempt
        self._attempt += 1
        if attempt == 0:
            return 0.0
        delay = min(self._cap, self._base * self._factor ** (attempt - 1))
        if self._jitter:
            delay *= 1.0 + self._jitter * (2.0 * self._rng() - 1.0)
        return min(self._cap, max(0.0, delay))

    def reset(self) -> None:
        """Forget past attempts: the next delay is 0 again."""
        self._attempt = 0


# Handshake answers in the 4xx range that another try may change: request
# timeout, too early, too many requests.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def handshake_status(exc: BaseException) -> Optional[int]:
    """The HTTP status of a refused WebSocket upgrade, or None."""
    status = getattr(getattr(exc, "response", None), "status", None)
    return int(status) if status is not None else None


def is_retryable(exc: BaseException) -> bool:
    """Say whether a failed connection attempt is worth repeating.

    A malformed URL, a bad argument, a certificate that does not verify
    (``ssl.SSLCertVerificationError`` is a ``ValueError``) or an upgrade
    answered 3xx (redirects are not followed) or 4xx (404 wrong path, 401/403
    refused) fails the same way every time; a refused, reset or timed-out connection, or an upgrade answered
    408, 425, 429 or 5xx (503 during a deployment), may not.
    """
    if isinstance(exc, (WSInvalidURL, ValueError, TypeError)):
        return False
    # An error that knows (fastws.errors.ProxyFailedError) says so itself.
    retryable = getattr(exc, "retryable", None)
    if isinstance(retryable, bool):
        return retryable
    status = handshake_status(exc)
    # 3xx too: redirects are not followed, so one fails the same way every time.
    return status is None or not (300 <= status < 500) or status in _RETRYABLE_4XX


class Reconnection:
    """Whether to try again after a failed attempt or a lost connection, and when.

    The supervisor asks it before each attempt (``next_delay``) and tells it
    what happened (``failed``, ``connected``, ``lost``, ``healthy``). It
    counts attempts since the last healthy period and gives up after
    ``max_attempts`` of them (0: never), or at once on a failure that
    retrying cannot fix (``is_retryable``).

    The first attempt of a supervisor is immediate, and so is the first
    retry after a connection that was up is lost; a refused first attempt is
    retried after ``ReconnectPolicy``'s base delay (the immediate retry is for
    drops, not refusals).

    Args:
        delays: The delays between attempts.
        max_attempts: Attempts allowed without a healthy period, 0 for no limit.
    """

    def __init__(self, delays: ReconnectPolicy, max_attempts: int) -> None:
        self._delays = delays
        self._max_attempts = max_attempts
        self._attempts = 0
        self._first = True

    @property
    def attempts(self) -> int:
        """Failed attempts and lost connections since the last healthy period."""
        return self._attempts

    def begin(self) -> None:
        """A supervisor starts: its first attempt is immediate."""
        self._first = True

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt."""
        return 0.0 if self._first else self._delays.next_delay()

    def failed(self, exc: BaseException) -> bool:
        """An attempt failed with ``exc``: return True to try again."""
        self._attempts += 1
        if not is_retryable(exc) or self._spent():
            return False
        if self._first:
            self._delays.next_delay()   # spend the immediate retry
            self._first = False
        return True

    def connected(self) -> None:
        """An attempt succeeded."""
        self._first = False

    def lost(self, delivered: bool = False) -> bool:
        """A connection was lost: return True to try again.

        Args:
            delivered: The connection subscribed and delivered data. Then it
                was a success, not a failed attempt: the count starts over
                and the next attempt is immediate. Only attempts that fail,
                and connections that die before delivering, grow the delay
                and count toward ``max_attempts``.
        """
        if delivered:
            self.healthy()
            return True
        self._attempts += 1
        return not self._spent()

    def healthy(self) -> None:
        """The connection has been up long enough: start counting afresh."""
        self._attempts = 0
        self._delays.reset()

    def replaced(self) -> None:
        """A connection was closed on purpose to be replaced: reconnect at once."""
        self._delays.reset()

    def _spent(self) -> bool:
        return bool(self._max_attempts) and self._attempts > self._max_attempts

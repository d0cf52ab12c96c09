"""Event-loop lag: how late the event loop runs a timer, one monitor per loop.

A market-data client that misses its pongs or sees a feed go stale is often
not let down by the exchange but by its own event loop, busy in a handler or
in other work. ``LoopLagMonitor`` tells the two apart: a ``call_later`` timer
that measures, each time it runs, how long after its due time it ran. That
lateness is the wait every callback of the loop had (reading the socket,
answering a ping). Samples over a sliding window give p50, p99 and the
maximum; ``overload_note`` turns a high one into the words a watchdog adds to
its reason.

One monitor serves every client on a loop (``acquire_monitor`` /
``release_monitor``): started with the first, stopped with the last. It costs
one timer wake-up per ``interval`` and nothing per message.
"""
from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import Optional

__all__ = ["LoopLagMonitor", "acquire_monitor", "overload_note", "release_monitor"]

# A lag this long (seconds), or a quarter of the timeout that fired if that is
# shorter, is named in a watchdog's reason.
_NAMED_LAG = 0.5
_NAMED_FRACTION = 0.25


class LoopLagMonitor:
    """Measures how late ``loop`` runs a timer due every ``interval`` seconds.

    Args:
        loop: The event loop to watch.
        interval: Seconds between two wake-ups.
        window: Seconds of samples kept for the percentiles.

    Attributes:
        users: Clients sharing this monitor (``acquire_monitor``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.1, window: float = 60.0) -> None:
        self.loop = loop
        self.interval = interval
        self.window = window
        self.users = 0
        # (time.monotonic() of the wake-up, lag in seconds), oldest first.
        self._samples: deque[tuple[float, float]] = deque()
        self._handle: Optional[asyncio.TimerHandle] = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        """True while the timer is scheduled."""
        return self._handle is not None

    def start(self) -> None:
        """Schedule the first wake-up (no-op when running)."""
        if self._handle is None:
            self._schedule(time.monotonic())

    def stop(self) -> None:
        """Cancel the timer; the samples stay readable."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        # The due time is kept on time.monotonic(): uvloop's loop.time() is
        # the time the loop iteration began, which would hide a lag caused
        # by a callback earlier in the same iteration.
        self._due = now + self.interval
        self._handle = self.loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        # A timer may run up to a clock tick early: that is no lag.
        self._samples.append((now, max(0.0, now - self._due)))
        horizon = now - self.window
        samples = self._samples
        while samples and samples[0][0] < horizon:
            samples.popleft()
        self._schedule(now)

    def current_lag(self) -> float:
        """Seconds the pending wake-up is overdue now (a lag still going on), 0 when on time."""
        if self._handle is None:
            return 0.0
        return max(0.0, time.monotonic() - self._due)

    def worst_since(self, seconds: float) -> float:
        """The largest lag (seconds) of the last ``seconds``, the one going on now included."""
        horizon = time.monotonic() - seconds
        worst = self.current_lag()
        for at, lag in reversed(self._samples):
            if at < horizon:
                break
            if lag > worst:
                worst = lag
        return worst

    def snapshot(self) -> dict[str, float]:
        """``p50_ms``, ``p99_ms``, ``max_ms`` of the samples in the window, ``window_s``, ``samples``.

        The lag going on now (a wake-up overdue) counts in ``max_ms``.
        Percentiles are nearest-rank; all 0.0 before the first sample.
        """
        horizon = time.monotonic() - self.window
        lags = sorted(lag for at, lag in self._samples if at >= horizon)
        ongoing = self.current_lag()
        if not lags:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": ongoing * 1e3, "window_s": float(self.window),
                    "samples": 0}
        return {"p50_ms": _rank(lags, 0.5) * 1e3, "p99_ms": _rank(lags, 0.99) * 1e3,
                "max_ms": max(lags[-1], ongoing) * 1e3, "window_s": float(self.window),
                "samples": len(lags)}


def _rank(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of the non-empty sorted ``ordered``."""
    index = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[index]


# One monitor per event loop; a loop that is gone takes its monitor with it.
_monitors: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLagMonitor]" = weakref.WeakKeyDictionary()


def acquire_monitor(interval: float = 0.1, window: float = 60.0) -> LoopLagMonitor:
    """The running loop's monitor, started if this is its first user.

    ``interval`` and ``window`` apply when the monitor is created (the first
    user's); later users share it as it is. Pair with ``release_monitor``.
    """
    loop = asyncio.get_running_loop()
    monitor = _monitors.get(loop)
    if monitor is None:
        monitor = _monitors[loop] = LoopLagMonitor(loop, interval, window)
    monitor.users += 1
    monitor.start()
    return monitor


def release_monitor(monitor: LoopLagMonitor) -> None:
    """One user fewer; the last one stops the monitor's timer."""
    monitor.users = max(0, monitor.users - 1)
    if monitor.users == 0:
        monitor.stop()
        if _monitors.get(monitor.loop) is monitor:
            del _monitors[monitor.loop]


def overload_note(monitor: Optional[LoopLagMonitor], timeout: float) -> str:
    """What a watchdog whose ``timeout`` (seconds) fired adds to its reason about the loop.

    Empty unless the loop lagged, within the last ``timeout`` seconds (now
    included), by half a second or a quarter of ``timeout``, whichever is
    shorter: then ``"; loop lag 850 ms: the event loop is overloaded, not
    necessarily the peer"``.
    """
    if monitor is None:
        return ""
    worst = monitor.worst_since(timeout + monitor.interval)
    if worst < min(_NAMED_LAG, _NAMED_FRACTION * timeout):
        return ""
    return f"; loop lag {worst * 1e3:.0f} ms: the event loop is overloaded, not necessarily the peer"

"""The core's counters summed over a client's connections, as a dict (``client.metrics``)."""
from __future__ import annotations

import time
from bisect import bisect_left
from itertools import accumulate
from typing import Any, Iterable, Optional, Sequence

from fastws._core import FrameHandler, latency_bucket_bounds

__all__ = ["ConnectionMetrics", "add_histograms", "latency_percentiles"]

# Counters summed across the connections of one client (a new FrameHandler per
# connection starts from zero).
_SUMMED = ("frames_received", "messages_received", "bytes_received", "messages_delivered", "control_messages",
           "parse_errors", "classify_errors", "handler_errors", "oversize_errors", "sequence_gap_errors",
           "messages_sent", "bytes_sent",
           "suspensions", "sequence_gaps", "missing_sequences", "untracked_messages", "overlap_dropped",
           "protocol_errors", "compressed_received", "inflated_bytes", "compressed_sent",
           "backlog_dropped", "backlog_abandoned", "deferrals", "redundant_dropped", "conflated",
           "policy_dropped")


def add_histograms(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Two latency histograms added bucket by bucket (either may be empty)."""
    if not a:
        return list(b)
    if not b:
        return list(a)
    return [x + y for x, y in zip(a, b)]


def latency_percentiles(histogram: Sequence[int],
                        quantiles: Iterable[float] = (0.5, 0.99, 0.999)) -> dict[str, Optional[float]]:
    """Estimate latency percentiles, in microseconds, from a core histogram.

    Each estimate is the midpoint of the bucket holding that quantile, so it is
    within about 12 % of the true value. Keys are ``p50``, ``p99``, ``p99.9``;
    values are ``None`` when nothing was recorded.
    """
    # Cumulative counts, then a binary search per quantile (both in C): the
    # health check calls this for every stream.
    running = list(accumulate(histogram))
    total = running[-1] if running else 0
    result: dict[str, Optional[float]] = {}
    for q in quantiles:
        key = "p" + format(q * 100, "g")
        if total == 0:
            result[key] = None
            continue
        # The first bucket whose cumulative count reaches the rank (a bucket
        # that holds a value: a rank of 0 means the first value).
        index = bisect_left(running, q * total or 1)
        low, high = latency_bucket_bounds(index)
        result[key] = (low + high) / 2 / 1000.0
    return result


class ConnectionMetrics:
    """Counters of one client across all its connections.

    The per-message counters live in the current connection's core; when a
    connection ends they are folded into the totals here, so a snapshot never
    goes backwards over a reconnect.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.reconnections = 0
        self.errors = 0
        self.connection_attempts = 0
        self.rotations = 0
        self.connected_since: Optional[float] = None
        self._totals: dict[str, int] = dict.fromkeys(_SUMMED, 0)
        self._histogram: list[int] = []

    def fold(self, core: FrameHandler) -> None:
        """Add a finished connection's counters to the totals."""
        counters = core.counters()
        for name in _SUMMED:
            self._totals[name] += counters[name]
        self._histogram = add_histograms(self._histogram, core.latency_histogram())

    def histogram(self, core: Optional[FrameHandler]) -> list[int]:
        """The latency histogram over every connection, the live one included."""
        if core is None:
            return list(self._histogram)
        return add_histograms(self._histogram, core.latency_histogram())

    def snapshot(self, core: Optional[FrameHandler]) -> dict[str, Any]:
        """Return every metric as a new dict, including the live connection's."""
        totals = dict(self._totals)
        histogram = self.histogram(core)
        if core is not None:
            counters = core.counters()
            for name in _SUMMED:
                totals[name] += counters[name]
        uptime = time.monotonic() - self.connected_since if self.connected_since is not None else 0.0
        return {
            **totals,
            "connections": self.connections,
            "reconnections": self.reconnections,
            "connection_attempts": self.connection_attempts,
            "rotations": self.rotations,
            "errors": self.errors,
            "connection_uptime": uptime,
            "latency_us": latency_percentiles(histogram),
        }

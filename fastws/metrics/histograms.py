"""The core's latency histograms as Prometheus histogram buckets.

The core counts latencies in log buckets (``latency_bucket_bounds``): bucket
``i`` holds the values ``low <= v < high``, four buckets per power of two.
Every power of two is a bound of the core's buckets, so the number of values
below it is exact: the export puts a Prometheus bucket (cumulative, ``le`` in
seconds) at each power of two of the core's unit within a range, and the rest
in ``+Inf``. The four sub-buckets of an octave are merged (a scrape of many
streams stays small); nothing is interpolated.

A value exactly on a bound (at the clock's resolution, 1 ns or 1 us) is in
the bucket above it, where Prometheus's ``le`` would put it in the one below.
"""
from __future__ import annotations

from itertools import accumulate
from typing import Callable, Sequence

from prometheus_client.utils import floatToGoString

from fastws._core import latency_bucket_bounds

__all__ = ["BucketLayout", "EVENT_LATENCY_LAYOUT", "HANDLER_LATENCY_LAYOUT", "sum_histograms"]

# How prometheus_client writes a bucket bound (its own histograms' format).
_format_bound: Callable[[float], str] = floatToGoString


class BucketLayout:
    """Which bounds of a core histogram become Prometheus buckets.

    Args:
        unit_seconds: The core histogram's unit in seconds (1e-9 for ns).
        lowest_power: The first bound is ``2 ** lowest_power`` units.
        highest_power: The last bound is ``2 ** highest_power`` units.
    """

    def __init__(self, unit_seconds: float, lowest_power: int, highest_power: int) -> None:
        if not 3 <= lowest_power <= highest_power:
            raise ValueError("powers must satisfy 3 <= lowest_power <= highest_power")
        self.unit_seconds = unit_seconds
        # Core bucket 4 * p is the first one at or above 2 ** p units: the
        # values below the bound are those of buckets [0, 4 * p).
        self._ends = [4 * power for power in range(lowest_power, highest_power + 1)]
        for end, power in zip(self._ends, range(lowest_power, highest_power + 1)):
            assert latency_bucket_bounds(end)[0] == 1 << power
        self.bounds_seconds = [(1 << power) * unit_seconds for power in range(lowest_power, highest_power + 1)]
        self._labels = [_format_bound(bound) for bound in self.bounds_seconds] + ["+Inf"]

    def buckets(self, counts: Sequence[int]) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs of a core histogram, ``+Inf`` last (the total)."""
        if not counts:
            return [(label, 0.0) for label in self._labels]
        running = list(accumulate(counts))
        last = len(running) - 1
        values = [running[min(end, len(running)) - 1] if end > 0 else 0 for end in self._ends]
        values.append(running[last])
        return list(zip(self._labels, values))


# The ranges hold what a Python handler and a market-data feed can take; each
# bucket is a line of every scrape (per stream for the event latency).
#: Receive to handler done, counted in nanoseconds: 512 ns to 2.1 s.
HANDLER_LATENCY_LAYOUT = BucketLayout(1e-9, 9, 31)
#: Exchange event time to receive, counted in microseconds (exchanges stamp
#: events in ms or us): 64 us to 4.2 s.
EVENT_LATENCY_LAYOUT = BucketLayout(1e-6, 6, 22)


def sum_histograms(histograms: Sequence[Sequence[int]]) -> list[int]:
    """Histograms of one layout added bucket by bucket (empty ones skipped)."""
    # Column sums in C: a thousand streams' histograms add up in a few ms.
    return [sum(column) for column in zip(*(h for h in histograms if h))]

"""The per-stream cadence watchdog: a stream gone silent while its connection delivers others.

An exchange sometimes stops one stream of a connection and goes on with the
rest: the connection-wide stale check never fires, and the book or the
trades of one symbol go quiet without a word. ``CadenceWatch`` is the policy
that tells such a stream from one that is legitimately quiet. It reads the
core's per-stream counters (message count, first and last receive time)
from the client's periodic watch, never per message, and says which streams
are overdue; the client resubscribes those alone.

A stream's expected interval is the larger of what the adapter documents
(``_expected_interval``: Binance's ``@depth@100ms`` pushes at most every
0.1 s, only when the book changed, so the documented figure is a lower bound)
and what its traffic shows: the mean interval between its messages on this
connection, known once it has ``min_messages``. A stream is overdue when it
has been silent for more than the largest of ``floor``, ``factor`` times its
expected interval and twice the longest silence it has recovered from by
itself, while the connection received other messages in the second half of
that silence. Until ``min_messages`` arrived it is not judged. Each
resubscribe in a row that brings no message doubles the allowance (up to
64 times): a stream the exchange has stopped for good (a halted symbol) is
not resubscribed every few seconds for ever.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

__all__ = ["CadenceWatch", "Overdue"]

# The allowance doubles per fruitless resubscribe, at most this many times.
_MAX_DOUBLINGS = 6


@dataclass
class _StreamWatch:
    """What the watchdog remembers of one stream."""

    given: Optional[float]
    resubscribes: int = 0
    # The connection (core) the counts below belong to.
    core: Any = None
    messages: int = 0
    last_receive_ns: int = 0
    learned: Optional[float] = None
    # Silence is measured from the later of the last message and the last resubscribe.
    quiet_from_ns: int = 0
    silence_seen: float = 0.0
    longest_silence: float = 0.0
    # Resubscribes in a row that brought no message: each doubles the allowance.
    fruitless: int = 0


@dataclass(frozen=True)
class Overdue:
    """A stream judged silent.

    Attributes:
        stream: The stream.
        silent: Seconds since its last message (or its last resubscribe).
        threshold: The silence it was allowed.
        expected: Its expected interval in seconds.
    """

    stream: str
    silent: float
    threshold: float
    expected: float


class CadenceWatch:
    """Judges the streams of one client by their cadence (see the module docstring).

    Args:
        factor: Silence allowed, in expected intervals.
        floor: Silence always allowed, in seconds.
        min_messages: Messages a stream must have delivered on the
            connection before it is judged.
        given: The adapter's expected interval of a stream, or None
            (``_expected_interval``); asked once per stream.
    """

    def __init__(self, factor: float, floor: float, min_messages: int,
                 given: Callable[[str], Optional[float]]) -> None:
        self.factor = factor
        self.floor = floor
        self.min_messages = min_messages
        self._given = given
        self._streams: dict[str, _StreamWatch] = {}

    def _watch_of(self, stream: str) -> _StreamWatch:
        watch = self._streams.get(stream)
        if watch is None:
            watch = self._streams[stream] = _StreamWatch(given=self._given(stream))
        return watch

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what is remembered of streams no longer subscribed (all but ``keep``)."""
        wanted = set(keep)
        for stream in [s for s in self._streams if s not in wanted]:
            del self._streams[stream]

    def check(self, core: Any, stats: Mapping[str, Any], streams: Iterable[str], now_ns: int) -> list[Overdue]:
        """Update what is known of ``streams`` from ``stats`` (the core's) and return the overdue ones.

        Args:
            core: The live connection's core (its ``last_receive_ns`` and
                ``connected_ns`` are read; the counts restart with a new one).
            stats: ``core.stream_stats()``.
            streams: The subscribed streams.
            now_ns: ``monotonic_time_ns()``.
        """
        overdue: list[Overdue] = []
        connection_last_ns = core.last_receive_ns
        floor_ns = self.floor * 1e9
        watches = self._streams
        # Plain comparisons rather than max(): this runs over every stream
        # (up to a thousand per connection) once a second.
        for stream in streams:
            watch = watches.get(stream)
            if watch is None:
                watch = self._watch_of(stream)
            if watch.core is not core:
                # A new connection: its counts start afresh; so does the silence.
                watch.core, watch.messages, watch.last_receive_ns = core, 0, 0
                if core.connected_ns > watch.quiet_from_ns:
                    watch.quiet_from_ns = core.connected_ns
                watch.silence_seen = 0.0
            stat = stats.get(stream)
            if stat is None:
                continue
            messages = stat.messages
            if messages != watch.messages:
                if watch.silence_seen > watch.longest_silence:
                    # A silence that ended by itself: a quiet stream may be that quiet.
                    watch.longest_silence = watch.silence_seen
                watch.silence_seen = 0.0
                watch.fruitless = 0
                watch.messages = messages
                last = watch.last_receive_ns = stat.last_receive_ns
                if last > watch.quiet_from_ns:
                    watch.quiet_from_ns = last
                if messages >= self.min_messages:
                    watch.learned = (last - stat.first_receive_ns) / (messages - 1) / 1e9
            if messages < self.min_messages:
                continue
            silent_ns = now_ns - watch.quiet_from_ns
            silent = silent_ns / 1e9
            if silent > watch.silence_seen:
                watch.silence_seen = silent
            if silent_ns <= floor_ns:
                continue        # never overdue within the floor
            expected = self._expected(watch)
            assert expected is not None     # learned once min_messages arrived
            threshold = max(self.floor, self.factor * expected, 2.0 * watch.longest_silence) \
                * 2 ** min(watch.fruitless, _MAX_DOUBLINGS)
            others = (connection_last_ns - watch.quiet_from_ns) / 1e9 >= silent / 2
            if silent > threshold and others:
                overdue.append(Overdue(stream, silent, threshold, expected))
        return overdue

    def resubscribed(self, stream: str, now_ns: int) -> None:
        """``stream`` was resubscribed at ``now_ns``: count it, and measure its silence afresh."""
        watch = self._watch_of(stream)
        watch.resubscribes += 1
        watch.fruitless += 1
        watch.quiet_from_ns = max(watch.quiet_from_ns, now_ns)
        # The silence that made it overdue did not end by itself: not learned.
        watch.silence_seen = 0.0

    def resubscribes(self, stream: str) -> int:
        """How many times ``stream`` was resubscribed alone."""
        watch = self._streams.get(stream)
        return 0 if watch is None else watch.resubscribes

    @staticmethod
    def _expected(watch: _StreamWatch) -> Optional[float]:
        return _expected_of(watch.given, watch.learned)

    def snapshot(self, streams: Iterable[str], now_ns: int,
                 stats: Optional[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per stream: ``expected_interval_s`` (None until known), ``silent_s``, ``resubscribes``.

        ``silent_s`` counts from the stream's last message or resubscribe, or
        from the start of the connection when none came yet; 0.0 while not
        connected (``stats`` None: nothing to be silent on). Reads ``stats``
        (the live core's) without changing what the watchdog learned.
        """
        result: dict[str, dict[str, Any]] = {}
        watches = self._streams
        for stream in streams:
            watch = watches.get(stream)
            if watch is None:
                watch = self._watch_of(stream)
            silent = 0.0
            expected = self._expected(watch)
            if stats is not None:
                since = watch.quiet_from_ns
                stat = stats.get(stream)
                if stat is not None:
                    if stat.last_receive_ns > since:
                        since = stat.last_receive_ns
                    if watch.learned is None and stat.messages >= self.min_messages:
                        expected = _expected_of(watch.given, (stat.last_receive_ns - stat.first_receive_ns)
                                                / (stat.messages - 1) / 1e9)
                if since:
                    silent = (now_ns - since) / 1e9
            result[stream] = {"expected_interval_s": None if expected is None else float(expected),
                              "silent_s": silent if silent > 0.0 else 0.0, "resubscribes": watch.resubscribes}
        return result


def _expected_of(given: Optional[float], learned: Optional[float]) -> Optional[float]:
    """The expected interval: the learned one, never below the documented one."""
    if learned is None:
        return given
    if given is None:
        return learned
    return given if given > learned else learned

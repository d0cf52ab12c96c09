"""Health: the state machine, gaps in the feed, error reporting, the health check.

Everything here is off the per-message path: the core counts per message and
calls in only for errors and sequence gaps.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Optional

from fastws._core import FrameHandler, monotonic_time_ns
from fastws.client._fields import ClientFields, StateListener
from fastws.client.cadence import CadenceWatch
from fastws.config import redact_proxy_url
from fastws.errors import (ExchangeAPIError, ExchangeTimeoutError, InvalidMessageError, MessageHandlerError,
                           SequenceGapError, SlowConsumerError)
from fastws.looplag import LoopLagMonitor, overload_note
from fastws.metrics import latency_percentiles
from fastws.types import ConnectionState, StreamType

__all__ = ["ConnectionGap", "HealthMixin", "SequenceGap", "GAPS_KEPT"]

# How many past gaps health_check() lists.
GAPS_KEPT = 100
# Seconds between two log lines about errors of the same kind.
_ERROR_LOG_INTERVAL = 1.0


@dataclass
class ConnectionGap:
    """A period in which the feed was down: messages in it were not received.

    Attributes:
        start: ``time.time()`` when the connection was lost.
        end: ``time.time()`` when it was back and resubscribed (``None`` while open).
        reason: Why it was lost (``"peer closed (1001)"``, ``"stale"``, ...).
    """

    start: float
    reason: str
    end: Optional[float] = None

    @property
    def duration(self) -> Optional[float]:
        """Seconds the gap lasted, ``None`` while it is open."""
        return None if self.end is None else self.end - self.start


@dataclass
class SequenceGap:
    """Messages of one stream known missing from its sequence numbers.

    Attributes:
        time: ``time.time()`` when the gap was seen.
        stream: The stream.
        expected: The sequence number that should have come next.
        received: The first sequence number that came instead.
        last: The last sequence number of the message that revealed the gap.
    """

    time: float
    stream: str
    expected: int
    received: int
    last: int

    @property
    def missing(self) -> int:
        """How many sequence numbers were skipped."""
        return self.received - self.expected


class HealthMixin(ClientFields):
    """State, gaps, errors and the health check of ``BaseWebSocketInterface``."""

    # The event loop's lag monitor, shared with the loop's other clients
    # (held from the supervisor's start to its end, kept for the health check).
    _lag_monitor: Optional[LoopLagMonitor]
    # The per-stream cadence watchdog (supervisor.py acts on it).
    _cadence: CadenceWatch

    # ------------------------------------------------------------- the state
    @property
    def state(self) -> ConnectionState:
        """The current ``ConnectionState``."""
        return self._state

    @property
    def is_connected(self) -> bool:
        """True while the state is CONNECTED."""
        return self._state is ConnectionState.CONNECTED

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(old, new, reason)`` on every state change.

        Also called with ``old == new == CONNECTING`` when a connection
        attempt has to wait (an exchange's connection-attempt budget is
        spent): ``reason`` then says why and for how long.
        """
        self._state_listeners.append(listener)

    def _announce_wait(self, seconds: float, reason: str) -> None:
        """Say that the next connection attempt waits ``seconds`` and why (for adapters).

        Called by an adapter's ``_before_connect`` before it sleeps: logged as
        a WARNING, passed to the state listeners, shown in ``health_check()``
        under ``waiting`` and in the error of a ``start(timeout=...)`` that
        runs out, until the attempt is made.
        """
        self._waiting = f"waiting {seconds:.1f} s before the next connection attempt: {reason}"
        self.logger.warning("%s", self._waiting,
                            extra={"exchange": self.exchange, "delay": seconds, "reason": reason})
        self._notify_listeners(self._state, self._state, self._waiting)

    async def wait_for_state(self, *states: ConnectionState,
                             timeout: Optional[float] = None) -> ConnectionState:
        """Wait until the state is one of ``states``; return it.

        Raises:
            ExchangeTimeoutError: not reached within ``timeout`` seconds.
        """
        if self._state in states:
            return self._state
        future: asyncio.Future[ConnectionState] = asyncio.get_running_loop().create_future()
        entry = (frozenset(states), future)
        self._state_waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ExchangeTimeoutError(
                f"{self.exchange}: state {', '.join(s.value for s in states)} not reached "
                f"within {timeout} s (now {self._state.value})") from None
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    def _set_state(self, new: ConnectionState, reason: Optional[str]) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self.logger.info("state %s -> %s%s", old.value, new.value, f" ({reason})" if reason else "",
                         extra={"exchange": self.exchange, "old_state": old.value,
                                "new_state": new.value, "reason": reason})
        self._notify_listeners(old, new, reason)
        for states, future in list(self._state_waiters):
            if new in states and not future.done():
                future.set_result(new)

    def _notify_listeners(self, old: ConnectionState, new: ConnectionState, reason: Optional[str]) -> None:
        for listener in list(self._state_listeners):
            try:
                listener(old, new, reason)
            except Exception:
                self.logger.exception("state listener raised", extra={"exchange": self.exchange})

    # ------------------------------------------------------------------ gaps
    @property
    def gaps(self) -> list[ConnectionGap]:
        """The most recent gaps in the feed, oldest first."""
        return list(self._gaps)

    @property
    def sequence_gaps(self) -> list[SequenceGap]:
        """The most recent sequence gaps (messages known missing), oldest first."""
        return list(self._sequence_gaps)

    def _open_gap_for(self, reason: str) -> None:
        """The feed went down: open a gap, unless one is open already."""
        if self._open_gap is None:
            self._open_gap = ConnectionGap(start=time.time(), reason=reason)
            self._gaps.append(self._open_gap)

    def _close_gap(self) -> None:
        if self._open_gap is not None:
            self._open_gap.end = time.time()
            self.logger.info("feed gap closed after %.3f s (%s)", self._open_gap.duration,
                             self._open_gap.reason,
                             extra={"exchange": self.exchange, "gap": self._open_gap.duration})
            self._open_gap = None

    def _keep_sequences(self, core: FrameHandler) -> None:
        """Carry a finished connection's last sequence numbers over to the next one."""
        for stream_id, stats in core.stream_stats().items():
            if stats.last_sequence >= 0 and stream_id in self._subscriptions:
                self._last_sequences[stream_id] = stats.last_sequence

    # ---------------------------------------------------------------- errors
    def _on_sequence_gap(self, stream: str, expected: int, received: int, last: int) -> None:
        """Called by the core when a stream's sequence numbers skip: record, log, report."""
        gap = SequenceGap(time=time.time(), stream=stream, expected=expected, received=received, last=last)
        self._sequence_gaps.append(gap)
        # Sequence numbers (update ids), not messages: one message may span many.
        error = SequenceGapError(f"{self.exchange}: {stream}: {gap.missing} update id(s) missing "
                                 f"(expected sequence {expected}, got {received})",
                                 stream, expected, received)
        self._log_error_rate_limited("sequence", error)
        self._emit_error(error)

    def _on_backlog(self, event: str, count: int, first_wall_ns: int, last_wall_ns: int) -> None:
        """Called by the core when its backlog ages past the warning, or is abandoned.

        ``"aging"``: a WARNING with the backlog's size and age (the handler is
        slower than the feed). ``"dropped"``: ``count`` messages received
        between the two wall-clock times were dropped; a gap ("slow
        consumer") with that exact count, and a ``SlowConsumerError``.
        """
        if event == "aging":
            age = (last_wall_ns - first_wall_ns) / 1e9
            self.logger.warning("handler behind the feed: %d message(s) waiting, the oldest for %.3f s",
                                count, age, extra={"exchange": self.exchange, "backlog": count, "age": age})
            return
        self._slow_consumer_gap(count, first_wall_ns / 1e9, last_wall_ns / 1e9,
                                f"past the backlog's bound of {self.config.max_backlog} messages / "
                                f"{self.config.max_backlog_bytes} bytes")

    def _slow_consumer_gap(self, count: int, start: float, end: float, why: str) -> None:
        """``count`` received messages were dropped before the handler saw them: a gap and an error."""
        reason = f"slow consumer: {count} message(s) received but dropped ({why})"
        self._gaps.append(ConnectionGap(start=start, reason=reason, end=end))
        self._metrics.errors += 1
        error = SlowConsumerError(f"{self.exchange}: {reason}", count)
        self._log_error_rate_limited("slow_consumer", error)
        self._emit_error(error)

    def _on_core_error(self, kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        """Called by the core for a parse, classify, handler or size error."""
        self._metrics.errors += 1
        error: ExchangeAPIError
        if isinstance(exc, ExchangeAPIError):
            error = exc
        elif kind == "handler":
            error = MessageHandlerError(f"{self.exchange}: message handler raised "
                                        f"{type(exc).__name__}: {exc}")
        else:
            error = InvalidMessageError(f"{self.exchange}: {kind} error: {type(exc).__name__}: {exc}",
                                        payload)
        if error is not exc:
            error.__cause__ = exc
        self._log_error_rate_limited(kind, error)
        self._emit_error(error)

    def _log_error_rate_limited(self, kind: str, error: ExchangeAPIError) -> None:
        now = time.monotonic()
        last = self._last_error_log.get(kind)
        if last is not None and now - last < _ERROR_LOG_INTERVAL:
            self._suppressed_errors[kind] = self._suppressed_errors.get(kind, 0) + 1
            return
        suppressed = self._suppressed_errors.pop(kind, 0)
        self._last_error_log[kind] = now
        self.logger.warning("%s error: %s%s", kind, error,
                            f" ({suppressed} more in the last second)" if suppressed else "",
                            extra={"exchange": self.exchange, "kind": kind, "suppressed": suppressed})

    def _emit_error(self, error: ExchangeAPIError) -> None:
        """Pass ``error`` to the user's error handler; its failures are logged only."""
        handler = self._error_handler
        if handler is None:
            return
        try:
            result = handler(error)
            if self._error_handler_async and result is not None:
                self._in_background(self._await_error_handler(result))
        except Exception:
            self.logger.exception("error handler raised", extra={"exchange": self.exchange})

    async def _await_error_handler(self, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception:
            self.logger.exception("error handler raised", extra={"exchange": self.exchange})

    async def _reported(self, request: Awaitable[None]) -> None:
        """Await ``request`` (in the background); an ``ExchangeAPIError`` reaches the error handler."""
        try:
            await request
        except ExchangeAPIError as exc:
            self._emit_error(exc)

    def _in_background(self, coro: Any, name: Optional[str] = None) -> None:
        """Run ``coro`` as a task the client owns: ``stop()`` cancels and awaits it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---------------------------------------------------------- health check
    @property
    def metrics(self) -> dict[str, Any]:
        """A snapshot of the client's metrics (a new dict)."""
        return self._metrics.snapshot(self._core)

    async def health_check(self) -> dict[str, Any]:
        """Return the connection's health as a dict.

        Keys: ``exchange``, ``proxy`` (credentials as ``***``, or ``None``),
        ``state``, ``is_connected``, ``subscriptions``,
        ``reconnect_attempts``, ``last_message_age`` (seconds, ``None`` before
        the first message), ``metrics``, plus ``pending_subscriptions``,
        ``streams``, ``gaps``, ``sequence_gaps``, ``waiting`` (why the next
        connection attempt waits, or ``None``), ``backlog`` (``messages``,
        ``bytes`` and ``oldest_age`` in seconds of the messages waiting for
        the handler) and ``slow_handler`` (``handler_seconds_per_second``
        since the previous check: near 1 when the handler cannot keep up;
        ``deferrals``), ``loop_lag`` (the event loop's lag: ``p50_ms``,
        ``p99_ms``, ``max_ms`` over the last ``window_s`` seconds,
        ``samples``) and ``cadence`` (per subscribed stream:
        ``expected_interval_s``, ``None`` until known; ``silent_s`` since its
        last message; ``resubscribes``, how often the cadence watchdog
        resubscribed it alone).

        Per stream (this connection): ``type``, ``messages``,
        ``messages_per_second`` (since the previous health check, or since
        the stream's first message), ``last_message_age``, and where the
        adapter reads them, ``event_latency_ms`` (exchange event time to
        local receive: ``p50``, ``p99``), ``last_sequence``,
        ``sequence_gaps`` and ``missing_sequences``.
        """
        core = self._core
        now_ns = monotonic_time_ns()
        last_age = None
        backlog_age = core.backlog_age_ns() if core is not None else 0
        backlog = {"messages": core.backlog_size if core is not None else 0,
                   "bytes": core.backlog_bytes if core is not None else 0,
                   "oldest_age": backlog_age / 1e9 if backlog_age else None}
        streams: dict[str, dict[str, Any]] = {}
        if core is not None and core.frames_received:
            last_age = (now_ns - core.last_receive_ns) / 1e9
            for stream_id, stats in core.stream_stats().items():
                streams[stream_id] = self._stream_health(stream_id, stats, now_ns)
        return {
            "exchange": self.exchange,
            "proxy": redact_proxy_url(self.config.proxy) if self.config.proxy is not None else None,
            "state": self._state.value,
            "is_connected": self.is_connected,
            "subscriptions": list(self._subscriptions),
            "pending_subscriptions": list(self._pending),
            "reconnect_attempts": self._reconnection.attempts,
            "waiting": self._waiting,
            "last_message_age": last_age,
            "streams": streams,
            "gaps": [{"start": g.start, "end": g.end, "reason": g.reason} for g in self._gaps],
            "sequence_gaps": [{"time": g.time, "stream": g.stream, "expected": g.expected,
                               "received": g.received, "missing": g.missing} for g in self._sequence_gaps],
            "metrics": self.metrics,
            "backlog": backlog,
            "slow_handler": self._handler_load(core, now_ns),
            "loop_lag": self._loop_lag(),
            "cadence": self._cadence_health(core, now_ns),
        }

    def _loop_lag(self) -> dict[str, float]:
        """The event loop's lag (``LoopLagMonitor.snapshot``); zeros before the client started."""
        if self._lag_monitor is None:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "window_s": float(self.config.loop_lag_window),
                    "samples": 0}
        return self._lag_monitor.snapshot()

    def _cadence_health(self, core: Optional[FrameHandler], now_ns: int) -> dict[str, dict[str, Any]]:
        """Per subscribed stream: its expected interval, how long it is silent, its resubscribes."""
        stats = core.stream_stats() if core is not None and self.is_connected else None
        return self._cadence.snapshot(self._subscriptions, now_ns, stats)

    def _lag_note(self, timeout: float) -> str:
        """What a watchdog whose ``timeout`` fired adds to its reason when the event loop lagged."""
        return overload_note(self._lag_monitor, timeout)

    def _handler_load(self, core: Optional[FrameHandler], now_ns: int) -> dict[str, Any]:
        """How much of the time the handler kept the core draining, since the previous health check.

        ``handler_seconds_per_second`` near 1 means the handler is slower than
        the feed (the backlog grows); ``deferrals`` counts read batches that
        ran out of their time slice.
        """
        if core is None:
            return {"handler_seconds_per_second": None, "deferrals": 0}
        previous = self._load_sample
        busy = core.drain_busy_ns
        if previous is None or previous[0] is not core:
            since, busy_before = core.connected_ns, 0
        else:
            since, busy_before = previous[1], previous[2]
        self._load_sample = (core, now_ns, busy)
        elapsed = now_ns - since
        return {"handler_seconds_per_second": (busy - busy_before) / elapsed if elapsed > 0 else None,
                "deferrals": core.deferrals}

    def _stream_health(self, stream_id: str, stats: Any, now_ns: int) -> dict[str, Any]:
        previous = self._rate_samples.get(stream_id)
        if previous is None or previous[0] > stats.messages or now_ns - previous[1] < 50_000_000:
            since, count = stats.first_receive_ns, stats.messages
        else:
            since, count = previous[1], stats.messages - previous[0]
        self._rate_samples[stream_id] = (stats.messages, now_ns)
        elapsed = (now_ns - since) / 1e9
        entry: dict[str, Any] = {
            "type": stats.stream_type.value if isinstance(stats.stream_type, StreamType)
            else str(stats.stream_type),
            "messages": stats.messages,
            "messages_per_second": count / elapsed if elapsed > 0 else None,
            "last_message_age": (now_ns - stats.last_receive_ns) / 1e9,
        }
        if stats.last_event_ns:
            # The core's histogram is in microseconds; the helper reports the
            # unit it is given divided by 1000.
            entry["event_latency_ms"] = latency_percentiles(stats.event_latency_histogram(), (0.5, 0.99))
            entry["clock_ahead"] = stats.clock_ahead
        if stats.last_sequence >= 0:
            entry["last_sequence"] = stats.last_sequence
            entry["sequence_gaps"] = stats.sequence_gaps
            entry["missing_sequences"] = stats.missing_sequences
        return entry

"""The supervisor: connect, watch, reconnect; the one connection attempt.

One task per client runs ``_supervise``: it makes connection attempts
(``_attempt``, the same one a make-before-break replacement makes), subscribes
each new connection, watches it (``_watch``: closed by the peer, stale, too
old, a replacement asked for) and reconnects as the ``Reconnection`` policy
says, until ``stop()`` or the policy gives up (FAILED).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Optional

from picows import WSCloseCode

from fastws._core import FrameHandler, Handover, monotonic_time_ns
from fastws.client.connection import Live
from fastws.client.proxy import through_proxy
from fastws.client.subscriptions import SubscriptionsMixin
from fastws.errors import ConnectionFailedError, ExchangeAPIError, ExchangeTimeoutError
from fastws.looplag import acquire_monitor, release_monitor
from fastws.types import ConnectionState

__all__ = ["SupervisorMixin"]


class SupervisorMixin(SubscriptionsMixin):
    """The connection life cycle of ``BaseWebSocketInterface``."""

    # Make before break (rotation.py): True once the live connection was replaced.
    _rotate: Callable[[str], Awaitable[bool]]

    async def _supervise(self) -> None:
        """Connect, watch, reconnect: the connection's whole life cycle.

        The event loop's lag monitor is held for as long as this runs.
        """
        cfg = self.config
        monitor = acquire_monitor(cfg.loop_lag_interval, cfg.loop_lag_window)
        self._lag_monitor = monitor
        try:
            await self._supervise_connections()
        finally:
            release_monitor(monitor)

    async def _supervise_connections(self) -> None:
        reconnection = self._reconnection
        reconnection.begin()
        while not self._stopping:
            delay = reconnection.next_delay()
            if delay:
                self.logger.info("reconnecting in %.3f s (attempt %d)", delay, reconnection.attempts,
                                 extra={"exchange": self.exchange, "delay": delay})
                await asyncio.sleep(delay)
            self._set_state(ConnectionState.CONNECTING, None)
            await self._before_connect()
            self._waiting = None
            try:
                await self._attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failed attempt is reported and retried or fatal
                error = self._report_failed_attempt(exc, "connection attempt failed: %s")
                if not reconnection.failed(exc):
                    self._fail(f"gave up after {reconnection.attempts} attempt(s): {error.message}")
                    return
                self._set_state(ConnectionState.RECONNECTING, error.message)
                continue
            reconnection.connected()
            # Taken before resubscribing: data may arrive with the acks.
            subscribed = self._delivery_mark()
            await self._on_connected()
            if self._stopping:
                return
            reason = await self._watch()
            # A connection that subscribed and then carried data was a
            # success, however it ended: only attempts that fail, and
            # connections that die before delivering, grow the delay and
            # count toward the limit.
            # What the peer sent before it went away still reaches the handler.
            await self._drain_backlog(self._core)
            delivered = subscribed is not None and self._delivered_since(subscribed)
            self._on_disconnected(reason)
            if self._stopping:
                return
            if not reconnection.lost(delivered):
                self._fail(f"connection lost {reconnection.attempts} times without a healthy period")
                return
            self._set_state(ConnectionState.RECONNECTING, reason)

    def _delivery_mark(self) -> Optional[tuple[FrameHandler, int]]:
        """The live core and its delivered count as it connects; None without subscriptions."""
        if self._core is None or not self._subscriptions:
            return None
        return self._core, self._core.messages_delivered

    def _delivered_since(self, mark: tuple[FrameHandler, int]) -> bool:
        """True if the live connection delivered data after ``mark`` (a replacement counts from 0)."""
        core = self._core
        if core is None:
            return False
        return core.messages_delivered > (mark[1] if core is mark[0] else 0)

    async def _attempt(self, handover: Optional[Handover] = None) -> None:
        """Make one connection attempt: for a (re)connection, or a replacement.

        Runs ``_connect`` within ``config.timeout`` (the caller has awaited
        ``_before_connect``); it must open a new connection, which becomes the
        live one. With ``handover`` the new core joins it as the new side of
        a make-before-break.

        Raises:
            Exception: the attempt failed; what it opened is closed (its
                counters still count) and the previous live connection, if
                any, is live again. A cancellation is raised as is.
        """
        previous = self._live()
        self._metrics.connection_attempts += 1
        self._handover_next = handover
        try:
            try:
                await asyncio.wait_for(self._connect(), self.config.timeout)
            finally:
                self._handover_next = None
            if self._ws is None or self._ws is previous[0]:
                raise ConnectionFailedError(f"{self.exchange}: _connect() returned without a connection")
        except Exception:   # a cancellation is not cleaned up here: stop() or _rotate does it
            await self._discard_attempt(previous, "connect failed" if handover is None else "replacement failed")
            raise

    async def _discard_attempt(self, previous: Live, reason: str) -> None:
        """Close what an attempt opened (its counters still count); ``previous`` is live again."""
        if self._ws is not previous[0] or self._core is not previous[1]:
            await self._close_transport(WSCloseCode.GOING_AWAY, reason)
            if self._core is not None:
                self._metrics.fold(self._core)
        self._put_back(previous)

    def _report_failed_attempt(self, exc: BaseException, message: str) -> ExchangeAPIError:
        """Count, report and log a failed attempt; return the error the handler got."""
        error = self._as_connection_error(exc)
        self._metrics.errors += 1
        self._emit_error(error)
        self.logger.warning(message, error, extra={"exchange": self.exchange, "url": self.config.url})
        return error

    def _count_connection(self, replacing: bool) -> None:
        """A new connection is live: count it."""
        metrics = self._metrics
        if metrics.connections:
            metrics.reconnections += 1
        metrics.connections += 1
        if replacing:
            metrics.rotations += 1
        metrics.connected_since = time.monotonic()

    def _as_connection_error(self, exc: BaseException) -> ExchangeAPIError:
        if isinstance(exc, ExchangeAPIError):
            return exc
        if isinstance(exc, asyncio.TimeoutError):
            error: ExchangeAPIError = ExchangeTimeoutError(
                f"{self.exchange}: no connection within {self.config.timeout} s to {self.config.url}"
                f"{through_proxy(self.config.proxy)}")
        else:
            error = ConnectionFailedError(f"{self.exchange}: cannot connect to {self.config.url}: "
                                          f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _on_supervisor_done(self, task: asyncio.Task[None]) -> None:
        """A supervisor that died of a bug must not leave a silent feed behind."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.logger.error("supervisor failed: %r", exc, exc_info=exc, extra={"exchange": self.exchange})
        if self._ws is not None and not self._ws.is_disconnected:
            self._ws.disconnect(graceful=False)
        self._fail(f"internal error in the supervisor: {type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        error = ConnectionFailedError(f"{self.exchange}: {reason}")
        self.logger.error("connection failed: %s", reason, extra={"exchange": self.exchange})
        self._emit_error(error)
        self._set_state(ConnectionState.FAILED, reason)

    async def _on_connected(self) -> None:
        self._count_connection(replacing=False)
        self._set_state(ConnectionState.CONNECTED, None)
        await self._resubscribe()
        if self._redundancy is not None:
            self._redundancy.path_restored(self)
        else:
            self._close_gap()

    def _on_disconnected(self, reason: str) -> None:
        self._cancel_handover_end()
        core = self._core
        if core is not None:
            self._report_refused_frame(core)
            self._metrics.fold(core)
            self._keep_sequences(core)
        self._core = None
        self._ws = None
        self._disconnected = None
        self._metrics.connected_since = None
        self._fail_acks(ConnectionFailedError(f"{self.exchange}: connection lost before the ack: {reason}"))
        if self._redundancy is not None:
            self._redundancy.path_lost(self, reason)
        else:
            self._open_gap_for(reason)
        level = logging.INFO if self._stopping else logging.WARNING
        self.logger.log(level, "disconnected: %s", reason, extra={"exchange": self.exchange, "reason": reason})

    def _report_refused_frame(self, core: FrameHandler) -> None:
        """A frame picows refused as too big (it closed with 1009 itself) is an error like any other."""
        handshake = self._ws.close_handshake if self._ws is not None else None
        sent = handshake.sent if handshake is not None else None
        if sent is not None and int(sent.code) == 1009 and core.oversize_errors == 0:
            core.report_oversize(f"a frame larger than max_frame_size ({self.config.max_frame_size} bytes): "
                                 "the connection was closed with 1009")

    def _cancel_handover_end(self) -> None:
        """End the grace period of the last replacement now (its timer is dropped)."""
        if self._handover_end is not None:
            self._handover_end.cancel()
            self._handover_end = None

    async def _watch(self) -> str:
        """Wait while connected (replacing the connection when due); return why it ended."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        connected_at = time.monotonic()
        healthy = False
        cadence_every = _cadence_check_interval(cfg.cadence_floor) if cfg.cadence_factor is not None else None
        next_cadence = connected_at + cadence_every if cadence_every is not None else None
        rotate_at = connected_at + cfg.max_connection_age if cfg.max_connection_age is not None else None
        while True:
            if self._stopping:
                return "client stop"
            core = self._core
            disconnected = self._disconnected
            assert core is not None and disconnected is not None
            wanted: asyncio.Future[str] = loop.create_future()
            self._rotation_wanted = wanted
            try:
                now = time.monotonic()
                deadlines = []
                if cfg.stale_timeout is not None:
                    last = core.last_receive_ns / 1e9
                    deadlines.append(last + cfg.stale_timeout - monotonic_time_ns() / 1e9)
                if rotate_at is not None:
                    deadlines.append(rotate_at - now)
                if not healthy:
                    deadlines.append(connected_at + cfg.healthy_after - now)
                if next_cadence is not None:
                    deadlines.append(next_cadence - now)
                timeout = max(0.0, min(deadlines)) if deadlines else None
                await asyncio.wait((disconnected, wanted), timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._rotation_wanted = None
                wanted.cancel()
            if disconnected.done():
                reason = self._close_reason()
                if self._pong_timed_out():
                    reason += self._lag_note(cfg.pong_timeout)
                return reason
            now = time.monotonic()
            if not healthy and now - connected_at >= cfg.healthy_after:
                healthy = True
                self._reconnection.healthy()
            if cfg.stale_timeout is not None and \
                    (monotonic_time_ns() - core.last_receive_ns) / 1e9 >= cfg.stale_timeout:
                reason = f"stale: no message for {cfg.stale_timeout} s" + self._lag_note(cfg.stale_timeout)
                await self._close_transport(WSCloseCode.GOING_AWAY, "stale", drain=True)
                return reason
            if next_cadence is not None and cadence_every is not None and now >= next_cadence:
                next_cadence = now + cadence_every
                self._check_cadence(core)
            replace = None
            if wanted.done() and not wanted.cancelled():
                replace = wanted.result()
            elif rotate_at is not None and now >= rotate_at:
                if self._redundancy is not None and not self._redundancy.may_replace(self):
                    # Paths come of age together: this one waits until another
                    # is back and subscribed, so that one always delivers.
                    rotate_at = now + _ROTATION_RETRY
                    continue
                replace = f"max_connection_age {cfg.max_connection_age} s reached"
            if replace is None:
                continue
            # With redundancy the other paths cover the replacement (redundancy.py).
            if cfg.make_before_break and self._redundancy is None and not self._stopping \
                    and await self._rotate(replace):
                connected_at = time.monotonic()
                rotate_at = connected_at + cfg.max_connection_age if cfg.max_connection_age is not None else None
                continue
            if self._ws is None or self._ws.is_disconnected:
                return self._close_reason()
            await self._close_transport(WSCloseCode.GOING_AWAY, replace[:100], drain=True)
            self._reconnection.replaced()
            return replace

    def _pong_timed_out(self) -> bool:
        """True if the live connection was closed by picows's keepalive: no pong in ``pong_timeout``."""
        handshake = self._ws.close_handshake if self._ws is not None else None
        if handshake is None or handshake.sent is None or handshake.recv_then_sent:
            return False
        return (handshake.sent.reason or "").startswith(_PICOWS_PONG_TIMEOUT)

    def _check_cadence(self, core: FrameHandler) -> None:
        """Resubscribe alone the streams the cadence watchdog finds silent (``CadenceWatch``).

        Each is reported as an ``ExchangeTimeoutError`` to the error handler
        and a WARNING, and counted (``health_check()["cadence"]``); those of
        one check are resubscribed together, without the streams that flow.
        """
        streams = list(self._subscriptions)
        cadence = self._cadence
        cadence.forget(streams)
        now_ns = monotonic_time_ns()
        silent = []
        for overdue in cadence.check(core, core.stream_stats(), streams, now_ns):
            stream = overdue.stream
            cadence.resubscribed(stream, now_ns)
            silent.append(stream)
            error = ExchangeTimeoutError(
                f"{self.exchange}: {stream} silent for {overdue.silent:.1f} s (expected every "
                f"{overdue.expected:.3g} s, {overdue.threshold:.1f} s allowed) while the connection delivers "
                f"other streams: resubscribed alone (resubscribe #{cadence.resubscribes(stream)})")
            self.logger.warning("%s", error.message, extra={"exchange": self.exchange, "stream": stream,
                                                            "silent": overdue.silent})
            self._emit_error(error)
        if not silent:
            return
        if self._redundancy is None:
            self._in_background(self._resubscribe_alone(silent), f"fastws-{self.exchange}-resubscribe")
            return
        # The paths of a redundant group share the streams' counts: a stream
        # silent there is silent on every path. The first watchdog to see it
        # reports it (once) and resubscribes it on each connected path; the
        # others count that as their resubscribe, so they do not act again.
        for path in self._redundancy.clients:
            if path is not self:
                for stream in silent:
                    path._cadence.resubscribed(stream, now_ns)
            if path.state is ConnectionState.CONNECTED:
                path._in_background(path._resubscribe_alone(silent), f"fastws-{self.exchange}-resubscribe")


# Seconds between two looks at whether a redundant path due for replacement
# may go (another path delivers meanwhile).
_ROTATION_RETRY = 0.05

# The reason picows gives in the close it sends when no pong came in time.
_PICOWS_PONG_TIMEOUT = "peer has not replied to ping"


def _cadence_check_interval(floor: float) -> float:
    """Seconds between two cadence checks: a stream is never judged sooner than the floor,
    so checking four times per floor acts within a quarter of it of being due."""
    return floor / 4

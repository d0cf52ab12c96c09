"""Make before break: replacing the live connection without a gap.

When the exchange announces it will close the connection, or the connection
reaches ``max_connection_age``, and ``make_before_break`` is on, the
supervisor opens and subscribes the replacement (the same ``_attempt`` as any
connection) while the old connection still delivers. Both cores share a
``Handover`` that lets each message through once; the old connection closes
when the new one has caught up on every stream.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from picows import WSCloseCode

from fastws._core import Handover
from fastws.client.health import ConnectionGap
from fastws.client.supervisor import SupervisorMixin
from fastws.errors import ConnectionFailedError

__all__ = ["RotationMixin"]

# Seconds the new connection keeps de-duplicating after a make-before-break,
# for the old connection's last messages still in flight on the new one.
_HANDOVER_GRACE = 1.0
# Seconds the two connections overlap at least once the new one is
# subscribed: messages sent on the old one just before the new subscription
# took effect may still be in flight (two TCP connections, possibly two
# servers, do not keep each other's order).
_MIN_OVERLAP = 0.1


class RotationMixin(SupervisorMixin):
    """Make before break for ``BaseWebSocketInterface``."""

    def _request_reconnect(self, reason: str) -> None:
        """Replace the live connection: the exchange announced it will close it.

        With ``make_before_break`` the supervisor opens and subscribes the
        replacement before closing this one (no gap); otherwise it closes the
        connection and reconnects. Safe to call from ``_parse_message``;
        ignored while a replacement is already under way.
        """
        if self._ws is None or self._ws.is_disconnected or self._stopping or self._rotating:
            return
        if self.config.make_before_break and self._redundancy is None:
            wanted = self._rotation_wanted
            if wanted is not None and not wanted.done():
                self.logger.info("replacing the connection: %s", reason,
                                 extra={"exchange": self.exchange, "reason": reason})
                wanted.set_result(reason)
            return
        self.logger.warning("reconnecting: %s", reason, extra={"exchange": self.exchange, "reason": reason})
        self._in_background(self._close_transport(WSCloseCode.GOING_AWAY, reason, drain=True))

    async def _rotate(self, reason: str) -> bool:
        """Make before break: replace the live connection without a gap.

        Opens the new connection and subscribes it while the old one still
        delivers; both cores share a ``Handover`` that lets each message
        through once. When the new connection has caught up on every stream
        (or after ``overlap_timeout``), the old one is closed. Returns False
        when the new connection could not be opened or subscribed: the old one
        is then still live and the caller falls back to close-and-reconnect.
        """
        old = self._live()
        old_ws, old_core = self._ws, self._core
        assert old_core is not None and self._disconnected is not None
        started = time.time()
        # The grace period of a previous replacement ends here: its timer must
        # not take this overlap's de-duplication away from the old core.
        self._cancel_handover_end()
        handover = Handover()
        old_core.begin_handover(handover, False)
        self._rotating = True
        self.logger.info("replacing the connection (make before break): %s", reason,
                         extra={"exchange": self.exchange, "reason": reason})
        finished = False
        try:
            await self._before_connect()
            await self._attempt(handover)
            if self._ws.is_disconnected:
                raise ConnectionFailedError(f"{self.exchange}: the replacement connection did not open")
            await self._resubscribe(replacing=True)
            handover.mark_subscribed()
            unaligned = await self._wait_aligned(handover, old_ws)
            finished = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # the new connection failed: the old one is still live
            self._report_failed_attempt(exc, "replacement connection failed, closing and reconnecting "
                                             "instead: %s")
            return False
        finally:
            self._rotating = False
            if not finished:
                await self._discard_attempt(old, "replacement failed")
                old_core.end_handover()
        # The new connection carries everything from here: the old one closes.
        self._close_replaced(old_ws, old_core)
        self._count_connection(replacing=True)
        new_core = self._core
        assert new_core is not None
        self._handover_end = asyncio.get_running_loop().call_later(_HANDOVER_GRACE, new_core.end_handover)
        if unaligned:
            # Messages of these streams seen first on the new connection
            # before it caught up may be missing: a gap, reported as one.
            gap = ConnectionGap(start=started, end=time.time(),
                                reason=f"make before break: {len(unaligned)} stream(s) not caught up "
                                       f"within {self.config.overlap_timeout} s: {', '.join(unaligned[:10])}")
            self._gaps.append(gap)
            self._emit_error(ConnectionFailedError(f"{self.exchange}: {gap.reason}"))
            self.logger.warning("%s", gap.reason, extra={"exchange": self.exchange})
        self.logger.info("connection replaced in %.3f s (%s)", time.time() - started, reason,
                         extra={"exchange": self.exchange, "reason": reason})
        return True

    async def _wait_aligned(self, handover: Handover, old_ws: Any) -> list[str]:
        """Wait until the new connection has caught up on every stream it has seen.

        Returns the streams not caught up when the overlap ends (timeout, or
        the old connection gone): the handover is finished either way.
        """
        now = time.monotonic()
        earliest = now + min(_MIN_OVERLAP, self.config.overlap_timeout)
        deadline = now + self.config.overlap_timeout
        while True:
            if self._ws is None or self._ws.is_disconnected:
                raise ConnectionFailedError(f"{self.exchange}: the replacement connection closed while "
                                            "catching up")
            now = time.monotonic()
            if (now >= earliest and not handover.unaligned_streams()) or \
                    old_ws.is_disconnected or now >= deadline:
                return list(handover.finish())
            await asyncio.sleep(0.005)
